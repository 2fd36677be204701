"""The benchmarks and the documentation's tools, checked on the source: modules run with ``-m``, no ``sys.path``.

Every benchmark runs as ``python -m benchmarks.<name>`` and every documentation tool as
``python -m docs._tools.<name>`` from the repository root; they import each other through
their packages, so none edits ``sys.path``. These tests read the code with :mod:`ast` and
import nothing.
"""

import ast
import glob
import os
import sys
from typing import List

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(ROOT, "benchmarks")
TOOLS = os.path.join(ROOT, "docs", "_tools")
SHARED = ("__init__.py", "_harness.py", "_setting_rules.py", "_detector_tables.py")
"""The modules of ``benchmarks/`` that are not benchmarks."""
BY_PATH = "cifar10_models.py"
"""The one benchmark that must also run by path (``python benchmarks/cifar10_models.py``)."""


def _sources(folder: str) -> List[str]:
    return sorted(glob.glob(os.path.join(folder, "*.py")))


def _tree(path: str) -> ast.Module:
    with open(path, encoding="utf-8") as stream:
        return ast.parse(stream.read(), path)


def _scripts() -> List[str]:
    return [path for path in _sources(BENCHMARKS) if os.path.basename(path) not in SHARED]


def _imported_modules(tree: ast.Module) -> List[str]:
    """Every module an import statement names; a relative import as its dots and name (``.x``)."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append("." * node.level + (node.module or ""))
    return names


def test_benchmarks_and_docs_tools_are_packages():
    assert os.path.isfile(os.path.join(BENCHMARKS, "__init__.py"))
    assert os.path.isfile(os.path.join(BENCHMARKS, "_harness.py"))
    assert os.path.isfile(os.path.join(ROOT, "docs", "__init__.py"))
    assert os.path.isfile(os.path.join(TOOLS, "__init__.py"))


@pytest.mark.parametrize("folder", [BENCHMARKS, TOOLS], ids=["benchmarks", "docs/_tools"])
def test_no_sys_path_edits(folder):
    offenders = []
    for path in _sources(folder):
        for node in ast.walk(_tree(path)):
            uses = isinstance(node, ast.Attribute) and node.attr == "path"
            uses = uses and isinstance(node.value, ast.Name) and node.value.id == "sys"
            imports = isinstance(node, ast.ImportFrom) and node.module == "sys"
            imports = imports and any(alias.name == "path" for alias in node.names)
            if uses or imports:
                offenders.append(f"{os.path.relpath(path, ROOT)}:{node.lineno}")
    assert not offenders, f"import through the package (python -m ...), not sys.path: {offenders}"


@pytest.mark.parametrize("folder", [BENCHMARKS, TOOLS], ids=["benchmarks", "docs/_tools"])
def test_siblings_are_imported_through_the_package(folder):
    # ``import cifar10_models`` only works when the script's folder is on sys.path.
    siblings = {os.path.splitext(os.path.basename(path))[0] for path in _sources(folder)} - {"__init__"}
    offenders = []
    for path in _sources(folder):
        for name in _imported_modules(_tree(path)):
            if name.split(".")[0] in siblings:
                offenders.append(f"{os.path.relpath(path, ROOT)}: {name}")
    assert not offenders, f"import siblings as benchmarks.<name> or docs._tools.<name>: {offenders}"


def _main_function(tree: ast.Module):
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "main":
            return node
    return None


def _runs_main(tree: ast.Module) -> bool:
    """Whether the module ends with ``if __name__ == "__main__": raise SystemExit(main())``."""
    last = tree.body[-1]
    if not (isinstance(last, ast.If) and isinstance(last.test, ast.Compare)):
        return False
    if ast.unparse(last.test) not in ("__name__ == '__main__'", '__name__ == "__main__"'):
        return False
    body = last.body
    return len(body) == 1 and isinstance(body[0], ast.Raise) and ast.unparse(body[0]) == "raise SystemExit(main())"


@pytest.mark.parametrize("path", _scripts(), ids=os.path.basename)
def test_every_benchmark_has_main_argv_returning_an_exit_code(path):
    tree = _tree(path)
    main = _main_function(tree)
    assert main is not None, "def main(argv: Optional[Sequence[str]] = None) -> int is missing"
    arguments = [arg.arg for arg in main.args.args]
    assert arguments == ["argv"], f"main takes argv only, got {arguments}"
    assert main.args.defaults and ast.unparse(main.args.defaults[0]) == "None", "argv defaults to None"
    assert main.returns is not None and ast.unparse(main.returns) == "int", "main returns the exit code (int)"
    assert _runs_main(tree), 'end with: if __name__ == "__main__": raise SystemExit(main())'


@pytest.mark.skipif(not hasattr(sys, "stdlib_module_names"), reason="needs sys.stdlib_module_names (3.10+)")
def test_cifar10_models_runs_by_path():
    # Long trainings call ``python benchmarks/cifar10_models.py``: there, neither the harness
    # nor a sibling can be imported, so the script reaches only the standard library, torch
    # and the package.
    allowed = set(sys.stdlib_module_names) | {"torch", "captum_classpattern"}
    names = _imported_modules(_tree(os.path.join(BENCHMARKS, BY_PATH)))
    offenders = [name for name in names if name.startswith(".") or name.split(".")[0] not in allowed]
    assert not offenders, f"{BY_PATH} must run by path; it imports {offenders}"
