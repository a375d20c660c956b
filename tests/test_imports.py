"""The import graph is one-directional. No module of the engine or of visualize imports, even
lazily inside a function, a module that imports it back; importing a submodule of another
package counts as importing that package (its __init__ runs). visualize imports tinygrad_rnn,
never the reverse."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(name):
    return (ROOT / Path(*name.split(".")) / "__init__.py").exists()


def imports(path, known):
    """The project modules ``path`` imports: ``from X import y`` is X.y when that is a module, else X;
    importing into another package adds that package's __init__."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        for target in targets:
            if target not in known or target == me:
                continue
            found.add(target)
            parts = target.split(".")
            for k in range(1, len(parts)):           # the packages it passes through, outside our own
                outer = ".".join(parts[:k])
                if is_package(outer) and not (me + ".").startswith(outer + "."):
                    found.add(outer)
    return found


def graph():
    files = [p for d in ("tinygrad_rnn", "visualize") for p in (ROOT / d).rglob("*.py")]
    known = {module_name(p) for p in files}
    return {module_name(p): imports(p, known) for p in files}


def cycle(g):
    """One import cycle as a list of modules, or None (iterative depth-first search)."""
    state = {}
    for start in sorted(g):
        if start in state:
            continue
        stack = [(start, iter(sorted(g[start])))]
        state[start] = "open"
        path = [start]
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                state[node] = "done"
            elif state.get(child) == "open":
                return path[path.index(child):] + [child]
            elif child not in state:
                state[child] = "open"
                path.append(child)
                stack.append((child, iter(sorted(g.get(child, ())))))
    return None


def test_the_engine_imports_no_module_that_imports_it_back():
    g = {m: deps for m, deps in graph().items() if m.startswith("tinygrad_rnn")}
    assert cycle(g) is None, " -> ".join(cycle(g))


def test_the_engine_never_imports_visualize():
    bad = {m: d for m, d in graph().items() if m.startswith("tinygrad_rnn") and any(x.startswith("visualize") for x in d)}
    assert not bad


def test_the_cycle_finder_finds_a_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


def test_visualize_imports_no_module_that_imports_it_back():
    g = {m: deps for m, deps in graph().items() if m.startswith("visualize")}
    assert cycle(g) is None, " -> ".join(cycle(g))
