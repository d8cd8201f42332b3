"""Test suite; a package so that test modules can share ``tests.harness`` and
``tests.references`` under a plain ``pytest`` run (as tox runs it)."""
