"""Distributed-training scripts, each run in a subprocess of its own by
``tests/test_distributed.py``."""
