"""The import table of DESIGN.md ("Import direction and deployment footprint"), enforced on the source.

Every .py module of the package's source folders is parsed (pyproject's wheel.packages maps each folder
to its package), and every import is checked, including imports inside functions, since those run
too: the table must hold at all times, not only at import time. A failure lists each offending edge as
`path:line imports X (rule)`.
"""

from __future__ import annotations

import ast
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------------------------- the table
# Which modules form which layer. The CLIs are the package's top; "core" is every other module
# of the package root (fusionrt/*.py, fusionrt/bundle/, the native extension).
CLI_MODULES = ("fusionrt.cli", "fusionrt.realtime_cli", "fusionrt.demo")
LAYER_PREFIXES = (  # the first prefix that matches names the layer
    ("fusionrt.study", "study"),
    ("fusionrt.export", "export"),
    ("fusionrt.calibration", "calibration"),
    ("fusionrt.runtime", "runtime"),
    ("fusionrt.models", "models"),
    ("fusionrt", "core"),
)

# Layer -> the layers it may import (itself included). Acyclic by construction (checked below).
ALLOWED = {
    "cli": {"cli", "study", "export", "calibration", "runtime", "models", "core"},  # anything
    "study": {"study", "export", "calibration", "runtime", "models", "core"},  # anything but the CLIs
    "export": {"export", "models", "calibration", "runtime", "core"},  # calibration: the one FP16 conversion
    "calibration": {"calibration", "runtime", "core"},  # runtime: evaluation runs the bundle
    "runtime": {"runtime", "core"},
    "models": {"models", "core"},
    "core": {"core"},
}

# Third-party packages outside the base install (what running a bundle needs) -> the layers that may
# import them. Everything not listed here (stdlib, numpy, onnxruntime, cv2, soundfile, tokenizers,
# yaml, scipy, and optional backends such as tensorrt or sounddevice) is not restricted by this table.
TRAINING = {"models", "export", "study", "cli"}  # the `export` extra: what training and export need
RESTRICTED = {
    "torch": TRAINING,
    "transformers": TRAINING,
    "safetensors": TRAINING,
    "onnxscript": TRAINING,
    # DESIGN: "the built-in digits data (fusionrt.data) is NumPy; the test:// sources must work in the
    # runtime-only install (no torch, no scikit-learn)", so core may not import it either.
    "sklearn": TRAINING,
    "onnx": TRAINING | {"calibration"},  # the `quantize` extra: graph surgery when quantizing
    "matplotlib": {"calibration", "study", "cli"},  # the `quantize` extra: charts
}


@dataclass(frozen=True)
class Exemption:
    """One named exception: `module` (or, with `prefix`, every module under it) may import `imports`
    (package names or fusionrt modules), and with `lazy` only inside a function."""

    module: str
    imports: tuple[str, ...]
    why: str
    prefix: bool = False
    lazy: bool = True

    def covers(self, importer: str, imported: str) -> bool:
        here = importer == self.module or (self.prefix and importer.startswith(self.module + "."))
        return here and any(imported == name or imported.startswith(name + ".") for name in self.imports)


EXCEPTIONS = (
    # The runtime's `torch` reference backend (--backend torch) runs the bundle's PyTorch reference:
    # it needs torch and the model classes, imported inside its open function.
    Exemption("fusionrt.runtime.torch_engine", ("torch", "fusionrt.models"), "the torch reference backend"),
    # `fusionrt bench` counts MACs from the ONNX graph and draws its charts: onnx and matplotlib,
    # imported inside those reporting functions, so a runtime-only install still benchmarks.
    Exemption("fusionrt.runtime.bench", ("onnx", "matplotlib"), "bench reporting", prefix=True),
)


# ------------------------------------------------------------------------------------ the parse
@dataclass(frozen=True)
class Edge:
    path: str  # relative to the repository root
    line: int
    importer: str  # the importing module
    imported: str  # a fusionrt module, or a third-party top-level package
    lazy: bool  # inside a function

    def where(self) -> str:
        return f"{self.path}:{self.line} imports {self.imported}"


def source_folders() -> dict[str, Path]:
    """Package name -> source folder, as pyproject's [tool.scikit-build.wheel.packages] maps them."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = pyproject["tool"]["scikit-build"]["wheel"]["packages"]
    return {target.replace("/", "."): ROOT / folder for target, folder in packages.items()}


def modules() -> dict[str, Path]:
    """Module name -> file, for every .py file of every mapped folder (a nested mapping wins)."""
    found: dict[str, Path] = {}
    for package, folder in sorted(source_folders().items(), key=lambda item: len(item[0])):
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def layer_of(module: str) -> str | None:
    """The layer of a fusionrt module; None for anything else (stdlib or third party)."""
    if module in CLI_MODULES:
        return "cli"
    for prefix, layer in LAYER_PREFIXES:
        if module == prefix or module.startswith(prefix + "."):
            return layer
    return None


class _Imports(ast.NodeVisitor):
    """Collects (line, absolute module name, inside a function) for every import statement and every
    importlib.import_module / __import__ call with a literal name."""

    def __init__(self, module: str, is_package: bool, known: set[str]):
        self.package = module if is_package else module.rpartition(".")[0]
        self.known, self.depth, self.found = known, 0, []

    def _function(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def _add(self, line: int, name: str) -> None:
        self.found.append((line, name, self.depth > 0))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node.lineno, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            package = self.package.split(".")
            package = package[: len(package) - node.level + 1]
            base = ".".join([*package, base] if base else package)
        for alias in node.names:  # `from fusionrt import data` imports the module fusionrt.data
            sub = f"{base}.{alias.name}"
            self._add(node.lineno, sub if sub in self.known else base)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            if isinstance(node.args[0].value, str) and not node.args[0].value.startswith("."):
                self._add(node.lineno, node.args[0].value)
        self.generic_visit(node)


def edges() -> list[Edge]:
    """Every import of every module: fusionrt modules by name, others by top-level package."""
    found = modules()
    known = set(found)
    result: dict[tuple, Edge] = {}  # one edge per (file, line, imported): `from x import a, b` is one
    for module, path in found.items():
        visitor = _Imports(module, path.name == "__init__.py", known)
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        for line, name, lazy in visitor.found:
            imported = name if layer_of(name) else name.split(".")[0]
            edge = Edge(str(path.relative_to(ROOT)), line, module, imported, lazy)
            result.setdefault((edge.path, edge.line, edge.imported), edge)
    return list(result.values())


def _exception_for(edge: Edge) -> Exemption | None:
    for exception in EXCEPTIONS:
        if exception.covers(edge.importer, edge.imported) and (edge.lazy or not exception.lazy):
            return exception
    return None


def violations(all_edges: list[Edge]) -> list[str]:
    """Each edge the table forbids, with the rule it breaks."""
    bad = []
    for edge in all_edges:
        source, target = layer_of(edge.importer), layer_of(edge.imported)
        if target is not None:
            if target in ALLOWED[source] or _exception_for(edge):
                continue
            rule = f"{source} may import {', '.join(sorted(ALLOWED[source]))}; not {target}"
        elif edge.imported in RESTRICTED:
            allowed = RESTRICTED[edge.imported]
            if source in allowed or _exception_for(edge):
                continue
            rule = f"{edge.imported} is for {', '.join(sorted(allowed))} only; not {source}"
        else:
            continue
        bad.append(f"{edge.where()} ({rule}{', inside a function' if edge.lazy else ''})")
    return bad


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


# ------------------------------------------------------------------------------------ the tests
def test_the_table_covers_every_source_folder_and_is_acyclic():
    assert set(source_folders()) == {"fusionrt", "fusionrt.export", "fusionrt.runtime", "fusionrt.calibration",
                                     "fusionrt.study"}, "a new stage folder needs its row in ALLOWED"  # fmt: skip
    found = modules()
    assert {layer_of(m) for m in found} == set(ALLOWED)
    assert all(m in found for m in CLI_MODULES)
    assert all(e.module in found for e in EXCEPTIONS), "an exception names a module that no longer exists"
    assert _cycle({layer: allowed - {layer} for layer, allowed in ALLOWED.items()}) is None


def test_every_import_follows_the_table():
    bad = violations(edges())
    assert not bad, f"{len(bad)} import(s) break DESIGN.md's import table:\n" + "\n".join(bad)


def test_the_runtime_never_imports_torch_or_transformers_outside_the_named_exceptions():
    bad = [
        edge.where() + (" (inside a function)" if edge.lazy else "")
        for edge in edges()
        if layer_of(edge.importer) == "runtime"
        and edge.imported in ("torch", "transformers")
        and not _exception_for(edge)
    ]
    assert not bad, "the runtime must run a bundle without torch or transformers:\n" + "\n".join(bad)


def test_no_cycle_between_top_level_stages():
    graph: dict[str, set[str]] = {}
    examples: dict[tuple[str, str], str] = {}
    for edge in edges():
        source, target = layer_of(edge.importer), layer_of(edge.imported)
        if target is not None and target != source:
            graph.setdefault(source, set()).add(target)
            examples.setdefault((source, target), edge.where())
    cycle = _cycle(graph)
    assert cycle is None, "stages import each other in a circle: " + " -> ".join(cycle) + "\n" + "\n".join(
        examples[pair] for pair in zip(cycle, cycle[1:])
    )


def test_no_cycle_between_modules():
    """No two modules import each other, even through function-level imports (the circle the study's
    two modules had); a package's __init__ counts as the module named like the package."""
    graph: dict[str, set[str]] = {}
    examples: dict[tuple[str, str], str] = {}
    for edge in edges():
        if layer_of(edge.imported) is not None and edge.imported != edge.importer:
            graph.setdefault(edge.importer, set()).add(edge.imported)
            examples.setdefault((edge.importer, edge.imported), edge.where())
    cycle = _cycle(graph)
    assert cycle is None, "modules import each other in a circle: " + " -> ".join(cycle) + "\n" + "\n".join(
        examples[pair] for pair in zip(cycle, cycle[1:])
    )


def test_the_checker_sees_lazy_relative_and_from_imports():
    code = (
        "import torch\n"
        "from . import stages\n"
        "def f():\n"
        "    from fusionrt import models\n"
        "    importlib.import_module('matplotlib.pyplot')\n"
    )
    visitor = _Imports("fusionrt.runtime.engine", False, {"fusionrt.runtime.stages", "fusionrt.models"})
    visitor.visit(ast.parse(code))
    assert visitor.found == [
        (1, "torch", False),
        (2, "fusionrt.runtime.stages", False),
        (4, "fusionrt.models", True),
        (5, "matplotlib.pyplot", True),
    ]
    fake = [Edge("runtime/engine.py", 1, "fusionrt.runtime.engine", "torch", False),
            Edge("runtime/torch_engine.py", 9, "fusionrt.runtime.torch_engine", "torch", False),
            Edge("runtime/torch_engine.py", 12, "fusionrt.runtime.torch_engine", "fusionrt.models.multimodal", True),
            Edge("runtime/bench/peak.py", 3, "fusionrt.runtime.bench.peak", "onnx", True),
            Edge("fusionrt/bundle/format.py", 5, "fusionrt.bundle.format", "fusionrt.runtime", True)]  # fmt: skip
    assert violations(fake) == [
        "runtime/engine.py:1 imports torch (torch is for cli, export, models, study only; not runtime)",
        # the exception holds inside functions only
        "runtime/torch_engine.py:9 imports torch (torch is for cli, export, models, study only; not runtime)",
        "fusionrt/bundle/format.py:5 imports fusionrt.runtime (core may import core; not runtime, inside a function)",
    ]
    assert _cycle({"fusionrt.study": {"fusionrt.study.report"}, "fusionrt.study.report": {"fusionrt.study"}}) == [
        "fusionrt.study", "fusionrt.study.report", "fusionrt.study",
    ]  # fmt: skip
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
