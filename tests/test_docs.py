"""The documentation cannot rot: its code runs, its links resolve, its API
reference is complete.

Code blocks
-----------
Every fenced ```` ```python ```` block of ``README.md``, ``CONTRIBUTING.md``
and ``docs/**/*.md`` runs, under the suite's ``KERAS_BACKEND`` (so
``python -m tests`` runs them under all three backends).  A page is one
script: its blocks run in order in one fresh namespace, in a temporary
working directory in which ``examples/`` is the repository's (so
``examples/data/...`` paths work and whatever a block writes is thrown
away).  Blocks fenced as ``bash``, ``text`` or anything else
are not run: shell commands and printed output must not be fenced as python.

A block may be preceded (on the line just before its fence) by one marker,
an HTML comment that the rendered page does not show::

    <!-- docs-test: file NAME -->
        written to NAME in the page's directory (a module that later
        blocks or scripts import), not run;
    <!-- docs-test: script BACKEND -->
        run as a script of its own, in a subprocess without KERAS_BACKEND
        (it chooses its backend and devices itself, before Keras is
        imported), once: in the suite's run under BACKEND;
    <!-- docs-test: backends NAME [NAME ...]: REASON -->
        run only under these backends;
    <!-- docs-test: skip REASON -->
        never run (keep these rare: code that cannot run here at all).

A block that needs an optional package (``nir``, ``onnxruntime``, ...)
skips its page with the reason, or fails under ``python -m tests``, through
``harness.optional_import``.

Links and the API reference
---------------------------
Every relative link of those pages points at an existing file, and every
public name of ``keras_spiking`` and of its public modules has an entry in
``docs/api/`` (an ``auto...`` directive naming it, or the same object under
another name).  The Sphinx build itself (``tox -e docs``) fails on any
unresolved reference.
"""

import ast
import importlib
import inspect
import os
import pathlib
import pkgutil
import re
import signal
import subprocess
import sys
import types

import keras
import pytest

import keras_spiking
from tests import harness

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md"] + sorted(
    path
    for path in DOCS.rglob("*.md")
    if path.relative_to(DOCS).parts[0][0] not in "_."  # not _build, _generated
)
BACKENDS = ("tensorflow", "torch", "jax")
SCRIPT_TIMEOUT = 300

# Packages outside the default install that pages use (the test extra has them)
OPTIONAL = ("nir", "onnx", "onnxruntime", "tf2onnx", "jax2onnx", "matplotlib")

FENCE = re.compile(r"^(`{3,})\s*([\w+-]*)[^\n]*$")
MARKER = re.compile(r"^<!--\s*docs-test:\s*(.*?)\s*-->\s*$")


class Block:
    def __init__(self, page, line, code, marker):
        self.page, self.line, self.code = page, line, code
        self.action, self.argument = "run", None
        if marker is None:
            return
        words = marker.split(None, 1)
        kind, rest = words[0], words[1] if len(words) > 1 else ""
        where = f"{page.relative_to(ROOT)}:{line}"
        if kind == "skip" and rest:
            self.action, self.argument = "skip", rest
        elif kind == "file" and re.fullmatch(r"\w+\.py", rest):
            self.action, self.argument = "file", rest
        elif kind == "script" and rest in BACKENDS:
            self.action, self.argument = "script", rest
        elif kind == "backends" and ":" in rest:
            names, reason = rest.split(":", 1)
            names = names.split()
            if not names or set(names) - set(BACKENDS) or not reason.strip():
                raise ValueError(f"{where}: bad marker {marker!r}")
            self.action, self.argument = "backends", names
        else:
            raise ValueError(
                f"{where}: unknown docs-test marker {marker!r}; expected 'skip "
                "REASON', 'file NAME.py', 'script BACKEND' or 'backends NAME "
                "...: REASON'"
            )


def code_blocks(page):
    """The page's ```python blocks, each with the marker just above it."""
    lines = page.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, language = match.groups()
        end = i + 1
        while end < len(lines) and not lines[end].startswith(fence):
            end += 1
        if end == len(lines):
            raise ValueError(f"{page}:{i + 1}: unclosed code fence")
        if language == "python":
            marker = MARKER.match(lines[i - 1]) if i > 0 else None
            code = "\n".join(lines[i + 1 : end]) + "\n"
            blocks.append(Block(page, i + 2, code, marker and marker.group(1)))
        elif i > 0 and MARKER.match(lines[i - 1]):
            raise ValueError(f"{page}:{i}: a docs-test marker above a non-python block")
        i = end + 1
    return blocks


def _page_id(page):
    return str(page.relative_to(ROOT))


PYTHON_PAGES = [page for page in PAGES if code_blocks(page)]


def test_pages_with_code_are_found():
    assert ROOT / "README.md" in PYTHON_PAGES
    assert len(PYTHON_PAGES) >= 8, [_page_id(page) for page in PYTHON_PAGES]


def _require_optional(blocks, page):
    for block in blocks:
        for name in re.findall(r"^\s*(?:import|from)\s+(\w+)", block.code, re.M):
            if name in OPTIONAL:
                harness.optional_import(name, f"{_page_id(page)} (imports {name})")


def _run_script(block, workdir):
    path = workdir / f"script_{block.line}.py"
    path.write_text(block.code)
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env.update(OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="2")
    # a session of its own, so that a timeout ends the processes it started
    process = subprocess.Popen(
        [sys.executable, path.name],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=SCRIPT_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(
            f"{_page_id(block.page)}:{block.line} ran over {SCRIPT_TIMEOUT} s "
            f"as a script:\n{output[-6000:]}"
        )
    assert process.returncode == 0, (
        f"{_page_id(block.page)}:{block.line} failed as a script:\n{output[-6000:]}"
    )


@pytest.fixture
def _restore_package_state():
    """Pages register devices and counters and may change the default ``dt``:
    the package's registries are as before for the tests that follow."""
    from keras_spiking.model_energy import counters, devices

    saved_devices = dict(devices.DEVICES)
    saved_registry = {key: dict(value) for key, value in counters.REGISTRY.items()}
    saved_dt = keras_spiking.default.dt
    yield
    devices.DEVICES.clear()
    devices.DEVICES.update(saved_devices)
    for key, value in saved_registry.items():
        counters.REGISTRY[key].clear()
        counters.REGISTRY[key].update(value)
    keras_spiking.default.dt = saved_dt


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=_page_id)
@pytest.mark.usefixtures("_restore_package_state")
def test_code_blocks_run(page, tmp_path, monkeypatch):
    backend = keras.backend.backend()
    blocks = code_blocks(page)
    _require_optional(blocks, page)
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # modules written by "file"
    namespace = {"__name__": "__docs__"}
    ran = 0
    try:
        for block in blocks:
            if block.action == "skip":
                continue
            if block.action == "backends" and backend not in block.argument:
                continue
            if block.action == "file":
                (tmp_path / block.argument).write_text(block.code)
                continue
            if block.action == "script":
                if backend == block.argument:
                    _run_script(block, tmp_path)
                    ran += 1
                continue
            where = f"{_page_id(page)}:{block.line}"
            try:
                exec(compile(block.code, where, "exec"), namespace)  # noqa: S102
            except ModuleNotFoundError as error:
                top = (error.name or "").split(".")[0]
                if top in OPTIONAL:
                    harness.optional_import(top, f"{where} (needs {top})")
                raise
            ran += 1
    finally:
        for name in list(sys.modules):
            module = sys.modules[name]
            if getattr(module, "__file__", None) and str(tmp_path) in module.__file__:
                del sys.modules[name]
    if ran == 0:
        pytest.skip(f"no block of {_page_id(page)} runs under {backend}")


# ---------------------------------------------------------------- links

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)|<img[^>]*src=\"([^\"]+)\"")


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_relative_links_resolve(page):
    text = page.read_text()
    # links inside code are not links
    text = re.sub(r"^(`{3,}).*?^\1", "", text, flags=re.S | re.M)
    text = re.sub(r"`[^`\n]*`", "", text)
    broken = []
    for match in LINK.finditer(text):
        target = match.group(1) or match.group(2)
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = target.split("#")[0]
        if not (page.parent / path).exists():
            broken.append(target)
    assert not broken, f"{_page_id(page)}: links to missing files {broken}"


# ------------------------------------------------------ the API reference

# Modules with no API page, and why: the implementation, described in
# docs/design.md; their names are not for users.
INTERNAL = {
    "keras_spiking.backend": "backend shims behind backend-neutral functions",
    "keras_spiking.kernels": "the time-stepping maths the layers call",
    "keras_spiking.kernels.lif": "the LIF neurons' time-stepping maths",
    "keras_spiking.seeded_uniform": "the seeded initial voltages",
    "keras_spiking.model_energy.as_built": "built-in counters (ModelEnergy)",
    "keras_spiking.model_energy.converted": "built-in counters (ModelEnergy)",
    "keras_spiking.model_energy.core": "ModelEnergy (documented at the top level)",
    "keras_spiking.model_energy.counters": "the registry of ModelEnergy.register_layer",
    "keras_spiking.model_energy.graph": "ModelEnergy's walk over the model",
    "keras_spiking.model_energy.modes": "ModelEnergy's two estimates",
    "keras_spiking.model_energy.table": "ModelEnergy's summary table",
    "keras_spiking.model_energy.timeaxis": "ModelEnergy's time-axis analysis",
}

DIRECTIVE = re.compile(
    r"^\.\. (?:auto(?:module|class|function|data|exception|attribute)|py:module)"
    r"::\s+([\w.]+)",
    re.M,
)


def public_modules():
    """keras_spiking and every submodule without a leading underscore."""
    names = ["keras_spiking"]
    for info in pkgutil.walk_packages(keras_spiking.__path__, "keras_spiking."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        if any(info.name == m or info.name.startswith(m + ".") for m in INTERNAL):
            continue
        names.append(info.name)
    return names


def public_names(module):
    """``__all__``, or else the names the module itself defines (functions,
    classes, assignments; not imports) without a leading underscore."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    tree = ast.parse(inspect.getsource(module))
    names = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names += [t.id for t in targets if isinstance(t, ast.Name)]
    return [name for name in dict.fromkeys(names) if not name.startswith("_")]


# Values documented by name only: equal values are not the same entry
PLAIN = (str, bytes, int, float, bool, tuple, frozenset, type(None))


def documented():
    """Dotted names with an API entry, and the ids of their objects."""
    names = set()
    for page in (DOCS / "api").glob("*.rst"):
        names.update(DIRECTIVE.findall(page.read_text()))
    objects = set()
    for name in names:
        module_name, _, attribute = name.rpartition(".")
        try:
            target = importlib.import_module(name)
        except ImportError:
            target = getattr(importlib.import_module(module_name), attribute, None)
        if target is not None and not isinstance(target, PLAIN):
            objects.add(id(target))
    return names, objects


def test_every_public_name_has_an_api_entry():
    harness.optional_import("nir", "the API reference of keras_spiking.nir")
    names, objects = documented()
    missing = []
    for module_name in public_modules():
        module = importlib.import_module(module_name)
        if module_name not in names:
            missing.append(module_name)
        for name in public_names(module):
            value = getattr(module, name)
            if f"{module_name}.{name}" in names:
                continue
            if isinstance(value, types.ModuleType):
                if value.__name__ not in names:
                    missing.append(f"{module_name}.{name}")
            elif isinstance(value, PLAIN) or id(value) not in objects:
                missing.append(f"{module_name}.{name}")
    assert not missing, f"public names without an entry in docs/api/: {missing}"


def test_api_reference_names_exist():
    harness.optional_import("nir", "the API reference of keras_spiking.nir")
    names, _ = documented()
    missing = []
    for name in names:
        module_name, _, attribute = name.rpartition(".")
        try:
            importlib.import_module(name)
        except ImportError:
            module = importlib.import_module(module_name)
            if not hasattr(module, attribute):
                missing.append(name)
    assert not missing, f"docs/api/ documents names that do not exist: {missing}"
