"""The house rules, checked on the source: one-way imports, public facades, small modules and signatures.

The package is organised by domain (``attr``, ``metrics``, ``backdoor``, ...), each subpackage a
public ``__init__`` over private modules. These tests read the code with :mod:`ast` (nothing is
imported for them except to list public names), so a violation names the file and line.
"""

import ast
import dataclasses
import importlib
import inspect
import os
from typing import Dict, List, Set, Tuple

import pytest

import captum_classpattern

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE_DIR = os.path.join(ROOT, "captum_classpattern")
MAX_MODULE_LINES = 500
MAX_PARAMETERS = 10
MAX_FIELDS = 15
# 15, not 14, since the warp probe got its own batch: ScanSettings holds three searches (the
# patterns, the blend probe, the warp probe), and folding one probe's batch into another's
# field would make records written before unreadable as they ran.
# Shared by every subpackage and importing none: the helpers and the version string.
BOTTOM_LAYER = ("_utils", "_version")


def _modules() -> Dict[str, str]:
    """Dotted module name -> file path, for every module of the package."""
    found = {}
    for folder, _, files in os.walk(PACKAGE_DIR):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
            found[dotted.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _package_of(module: str, path: str) -> str:
    return module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]


def _imports(module: str, path: str) -> List[Tuple[ast.ImportFrom, str, bool]]:
    """(node, imported module, inside a function) for every relative or package import of a module."""
    tree = ast.parse(open(path).read(), path)
    inside: Set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inside.update(id(sub) for sub in ast.walk(node) if sub is not node)
    result = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(module, path).split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "captum_classpattern":
                target = node.module
            else:
                continue
            if node.module is None:  # "from . import attr": each name is a module
                for alias in node.names:
                    result.append((node, f"{target}.{alias.name}", id(node) in inside))
            else:
                result.append((node, target, id(node) in inside))
    return result


def _subpackage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_function_level_imports_of_the_package():
    offenders = [
        f"{os.path.relpath(MODULES[m], ROOT)}:{node.lineno}"
        for m in MODULES
        for node, _, nested in _imports(m, MODULES[m])
        if nested
    ]
    assert not offenders, f"import package modules at module level, not inside functions: {offenders}"


def test_imports_have_no_cycles():
    graph = {m: {target for _, target, _ in _imports(m, MODULES[m]) if target in MODULES} for m in MODULES}
    # A package's __init__ importing its own children is how a facade works, not a cycle.
    for module, targets in graph.items():
        graph[module] = {t for t in targets if not t.startswith(module + ".") or module == "captum_classpattern"}
        graph[module] = {t for t in graph[module] if not module.startswith(t + ".")}
    state: Dict[str, int] = {}
    cycles = []

    def visit(node: str, trail: List[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(trail[trail.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not cycles, f"import cycles: {cycles}"


def test_subpackages_import_each_other_through_their_facades():
    offenders = []
    for module, path in MODULES.items():
        here = _subpackage(module)
        for node, target, _ in _imports(module, path):
            there = _subpackage(target)
            if not there or there == here or there in BOTTOM_LAYER or here == "":
                continue
            facade = f"captum_classpattern.{there}"
            private_names = [a.name for a in node.names if a.name.startswith("_")]
            if target != facade or private_names:
                offenders.append(f"{os.path.relpath(path, ROOT)}:{node.lineno} imports {target} {private_names}")
    assert not offenders, f"import other subpackages' public names from their __init__: {offenders}"


def test_subpackage_dependencies_flow_one_way():
    edges: Dict[str, Set[str]] = {}
    for module, path in MODULES.items():
        here = _subpackage(module)
        for _, target, _ in _imports(module, path):
            there = _subpackage(target)
            if here and there and there != here:
                edges.setdefault(here, set()).add(there)
    assert not set(BOTTOM_LAYER) & set(edges), "_utils and _version are the bottom layer: they import no subpackage"
    state: Dict[str, int] = {}

    def acyclic(node: str) -> bool:
        state[node] = 1
        for nxt in edges.get(node, ()):
            if state.get(nxt) == 1 or (nxt not in state and not acyclic(nxt)):
                return False
        state[node] = 2
        return True

    assert all(acyclic(n) for n in sorted(edges) if n not in state), f"subpackage dependency cycle in {edges}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_small(module):
    with open(MODULES[module]) as stream:
        lines = sum(1 for _ in stream)
    assert lines <= MAX_MODULE_LINES, f"{module} has {lines} lines; split it by idea (limit {MAX_MODULE_LINES})"


def _public_callables():
    seen = set()
    names = [("captum_classpattern", n) for n in captum_classpattern.__all__]
    for sub in captum_classpattern.__all__:
        obj = getattr(captum_classpattern, sub)
        if inspect.ismodule(obj):
            names += [(obj.__name__, n) for n in obj.__all__]
    for module_name, name in names:
        obj = getattr(importlib.import_module(module_name), name)
        if inspect.ismodule(obj) or id(obj) in seen:
            continue
        seen.add(id(obj))
        if inspect.isfunction(obj):
            yield f"{module_name}.{name}", obj
        elif inspect.isclass(obj):
            yield f"{module_name}.{name}", obj
            for attr, member in vars(obj).items():
                if not attr.startswith("_") and inspect.isfunction(member):
                    yield f"{module_name}.{name}.{attr}", member


def _parameter_counts():
    """(qualified name, parameters, whether it is a dataclass's constructor) of every public callable."""
    for qualified, obj in _public_callables():
        try:
            parameters = [p for p in inspect.signature(obj).parameters.values() if p.name not in ("self", "cls")]
        except (TypeError, ValueError):
            continue
        yield qualified, len(parameters), dataclasses.is_dataclass(obj)


def test_public_signatures_take_a_settings_object_instead_of_many_parameters():
    wide = [f"{name} ({count})" for name, count, record in _parameter_counts() if not record and count > MAX_PARAMETERS]
    assert not wide, f"public signatures over {MAX_PARAMETERS} parameters: {wide}"


def test_records_keep_few_fields():
    # A settings object or a result is a dataclass: its constructor lists its fields.
    wide = [f"{name} ({count})" for name, count, record in _parameter_counts() if record and count > MAX_FIELDS]
    assert not wide, f"settings or records over {MAX_FIELDS} fields: {wide}"


def test_every_subpackage_is_a_facade_with_all():
    for sub in captum_classpattern.__all__:
        obj = getattr(captum_classpattern, sub)
        if not inspect.ismodule(obj):
            continue
        assert obj.__all__, f"{obj.__name__} lists its public names in __all__"
        for name in obj.__all__:
            assert not name.startswith("_") and hasattr(obj, name), f"{obj.__name__}.{name}"


@pytest.mark.parametrize("folder", ["examples", "benchmarks", "docs"])
def test_examples_benchmarks_and_docs_use_public_api_only(folder):
    offenders = []
    for base, _, files in os.walk(os.path.join(ROOT, folder)):
        if "_build" in base:
            continue
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(base, name)
            for node in ast.walk(ast.parse(open(path).read(), path)):
                modules = []
                if isinstance(node, ast.ImportFrom) and node.module:
                    modules = [node.module]
                    if node.module.startswith("captum_classpattern"):
                        modules += [f"{node.module}.{a.name}" for a in node.names]
                elif isinstance(node, ast.Import):
                    modules = [a.name for a in node.names]
                for dotted in modules:
                    parts = dotted.split(".")
                    if parts[0] == "captum_classpattern" and any(p.startswith("_") for p in parts[1:]):
                        offenders.append(f"{os.path.relpath(path, ROOT)}:{node.lineno} {dotted}")
    assert not offenders, f"use public names only: {offenders}"


_SIGN_CALLS = ("sign", "sign_", "sgn", "sgn_")


def _signed_steps(path: str) -> List[int]:
    """Lines of a module that take the sign of a tensor (``x.sign()``, ``torch.sign(x)``, ...): a signed step."""
    lines = []
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _SIGN_CALLS:
            lines.append(node.lineno)
    return lines


# Signed-step loops that are not pattern searches, each with the reason it has its own loop.
OWN_LOOPS = {
    # It learns k x k displacement fields, not the maps and pasted values attr's loop steps.
    "captum_classpattern.backdoor._warp_probe",
}


def test_one_search_loop_signed_steps_live_in_attr_only():
    # Every pattern search runs attr's loop with an objective (attr.search_patterns); a
    # second signed-gradient loop elsewhere would drift from it.
    offenders = [
        f"{os.path.relpath(path, ROOT)}:{line}"
        for module, path in MODULES.items()
        if _subpackage(module) != "attr" and module not in OWN_LOOPS
        for line in _signed_steps(path)
    ]
    assert not offenders, f"signed-gradient updates outside attr (use attr.search_patterns): {offenders}"


def test_the_search_internals_stay_private():
    attr = importlib.import_module("captum_classpattern.attr")
    internals = {"make_search_set", "StepBatch", "TensorSearchSet", "canvas_mean_cross_entropy", "MapOptimizer"}
    assert not internals & set(attr.__all__), f"search internals made public: {internals & set(attr.__all__)}"
