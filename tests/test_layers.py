"""The layering of the two packages, read from the source (no import is run): gan_zoo stands alone, no module takes a
private name from another, the module graph has no cycle, no file is over 800 lines. The layering rules (issue 17),
kept by a test so that a change that breaks them fails CI instead of drifting in."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gan_zoo", "latentwalk")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for every import in the file, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, None, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.append((sub, None, node.lineno) if sub in MODULES else (base, a.name, node.lineno))
    return found


def _internal(target: str) -> str | None:
    """The project module an import refers to (a submodule import resolves to the deepest known module)."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def test_the_scan_sees_both_packages_and_their_imports():
    assert "gan_zoo.invert" in MODULES and "latentwalk.pipeline" in MODULES
    edges = {(_internal(t), n) for t, n, _ in _imports("latentwalk.invert", MODULES["latentwalk.invert"])}
    assert ("gan_zoo.invert", "Projector") in edges  # a module that the scan must see importing gan_zoo


def test_gan_zoo_imports_nothing_from_latentwalk():
    offenders = [
        f"{MODULES[m].relative_to(ROOT)}:{line} imports {t}"
        for m in MODULES
        if m.split(".")[0] == "gan_zoo"
        for t, _, line in _imports(m, MODULES[m])
        if t.split(".")[0] == "latentwalk"
    ]
    assert not offenders, "gan_zoo must stand alone:\n" + "\n".join(offenders)


def test_no_module_imports_a_private_name_of_another():
    offenders = [
        f"{MODULES[m].relative_to(ROOT)}:{line} takes {t}.{n}"
        for m in MODULES
        for t, n, line in _imports(m, MODULES[m])
        if n and n.startswith("_") and not n.startswith("__") and _internal(t) not in (None, m)
    ]
    assert not offenders, "make the name public or move the code:\n" + "\n".join(offenders)


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (node -> dependencies) as a closed list of nodes, or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep) :] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_and_accepts_a_tree():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_module_graph_has_no_cycle():
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for m, path in MODULES.items():
        for t, _, _ in _imports(m, path):
            dep = _internal(t)
            if dep and dep != m and not m.startswith(dep + "."):  # a package's own __init__ is not a cycle
                graph[m].add(dep)
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_changed_keys_names_what_differs_at_any_depth_and_ignores_tuple_vs_list():
    from gan_zoo.io import changed_keys

    old = {"a": 1, "w": (0.1, 1.0), "config": {"steps": 10, "lr": 0.1}, "gone": 2}
    new = {"a": 1, "w": [0.1, 1.0], "config": {"steps": 13, "lr": 0.1}, "chunk": 64}
    assert changed_keys(old, new) == ["chunk", "config.steps", "gone"]
    assert changed_keys(old, new, ignore=["chunk", "gone"]) == ["config.steps"]
    assert changed_keys(old, old) == []
    assert changed_keys({"c": {"x": None}}, {"c": {}}) == ["c.x"]  # absent is not the same as None
    assert changed_keys({"n": float("nan")}, {"n": float("nan")}) == []


def test_no_source_file_is_over_800_lines():
    long = {str(p.relative_to(ROOT)): n for p in MODULES.values() if (n := len(p.read_text().splitlines())) > 800}
    assert not long, f"split these modules: {long}"


def _code_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from ``def`` to the end, less the docstring (which may say at length why the function is long)."""
    total = fn.end_lineno - fn.lineno + 1
    first = fn.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        total -= first.end_lineno - first.lineno + 1
    return total


def test_no_function_has_over_80_lines_of_code():
    long = {}
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _code_lines(node) > 80:
                long[f"{name}.{node.name}"] = _code_lines(node)
    assert not long, f"split these functions: {long}"
