"""The layering of README "Layout" holds: import-linter's contracts in setup.cfg (no exceptions
listed) pass, and they name every module of `voxlab/` and `eval/` (a new module must be given
its layer, or nothing would check it). An AST scan of the shipped modules finds no import cycle
(imports inside functions count) and few, explained, imports inside functions."""
import ast
import configparser
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _contract() -> configparser.SectionProxy:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg["importlinter:contract:layers"]


def test_import_contracts_are_kept():
    assert "ignore_imports" not in _contract()
    lint = Path(sys.executable).parent / "lint-imports"
    out = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_every_module_of_the_shared_packages_has_a_layer():
    named = set(re.split(r"[\s|:]+", _contract()["layers"].strip()))
    for package in ("voxlab", "eval"):
        for child in sorted((ROOT / package).iterdir()):
            is_module = child.suffix == ".py" or (child / "__init__.py").is_file()
            if is_module and child.name != "__init__.py":
                assert f"{package}.{child.stem}" in named, f"{package}/{child.name} has no layer in setup.cfg"


def _project_modules(roots: list[str]) -> dict[str, Path]:
    """Dotted name -> file of every module of the shipped packages (a package by its __init__)."""
    out = {}
    for root in roots:
        for path in sorted((ROOT / root).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]):
    """(statement, project modules it imports, names it takes, inside a function) of each import
    statement of a module. `from X import Y` imports X, and X.Y too when that is a module."""
    def known(dotted: str) -> str | None:
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]

    def walk(node, in_function: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                targets = {known(a.name) for a in child.names}
                yield child, targets - {None}, [], in_function
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package[:len(package) - child.level + 1] + ([base] if base else []))
                taken = [a.name for a in child.names]
                targets = {known(base)} | {f"{base}.{t}" for t in taken if f"{base}.{t}" in modules}
                yield child, targets - {None}, [t for t in taken if f"{base}.{t}" not in modules], in_function
            yield from walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                         ast.Lambda)))

    return walk(ast.parse(path.read_text(encoding="utf-8"), str(path)), False)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


MAX_IMPORTS_IN_FUNCTIONS = 30


def test_no_module_cycles_and_few_imports_inside_functions():
    """Over every shipped module, imports inside functions included: no import cycle; a project
    import inside a function only where its comment says why (a heavy optional dependency or a
    command kept off the start-up path), at most MAX_IMPORTS_IN_FUNCTIONS of them; no private
    name imported from another module."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    modules = _project_modules(cfg["importlinter"]["root_packages"].split())
    graph: dict[str, set[str]] = {name: set() for name in modules}
    inner, unexplained, private = [], [], []
    for name, path in modules.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        for stmt, targets, taken, in_function in _imports(name, path, modules):
            graph[name] |= targets - {name}
            where = f"{path.relative_to(ROOT)}:{stmt.lineno}"
            private += [f"{where}: {t}" for t in taken if t.startswith("_") and targets]
            if not (targets and in_function):
                continue
            inner.append(where)
            first = stmt.lineno - 1  # the block of imports it belongs to, and the line above it
            while first > 0 and lines[first - 1].lstrip().startswith(("from ", "import ")):
                first -= 1
            last = stmt.end_lineno
            while last < len(lines) and lines[last].lstrip().startswith(("from ", "import ")):
                last += 1
            if not any("#" in line for line in lines[max(first - 1, 0):last]):
                unexplained.append(where)
    assert not _cycles(graph), f"import cycles: {_cycles(graph)}"
    assert not private, f"private names imported across modules: {private}"
    assert not unexplained, f"project imports inside functions with no comment saying why: {unexplained}"
    assert len(inner) <= MAX_IMPORTS_IN_FUNCTIONS, f"{len(inner)} project imports inside functions: {inner}"
