"""Reading the DOT text of a picture back: nodes, edges, clusters and their attributes.

The DOT of an unrolled picture carries every position (``pos``, cluster ``bb``), so tests
can check the layout itself. A helper module of the tests (not a test file).
"""
import re


def _read_value(text, i):
    if text[i] == '"':
        j = i + 1
        while text[j] != '"':
            j += 2 if text[j] == "\\" else 1
        return text[i + 1:j], j + 1
    if text[i] == "<":
        depth, j = 0, i
        while True:
            if text[j] == "<":
                depth += 1
            elif text[j] == ">":
                depth -= 1
                if depth == 0:
                    return text[i:j + 1], j + 1
            j += 1
    j = i
    while j < len(text) and text[j] not in " ]":
        j += 1
    return text[i:j], j


def parse_attrs(text):
    attrs, i = {}, 0
    while i < len(text):
        if text[i] in " \t,":
            i += 1
            continue
        eq = text.index("=", i)
        key = text[i:eq].strip()
        value, i = _read_value(text, eq + 1)
        attrs[key] = value
    return attrs


def parse_dot(source):
    """{"nodes": {id: attrs}, "edges": [(a, b, attrs)], "clusters": {name: {"attrs", "nodes"}}, "graph": attrs}."""
    nodes, edges, clusters, graph = {}, [], {}, {}
    stack = []
    for line in source.split("\n"):
        s = line.strip()
        m = re.match(r"subgraph (cluster_\w+) \{$", s)
        if m:
            stack.append(m.group(1))
            clusters[m.group(1)] = {"attrs": {}, "nodes": []}
            continue
        if s == "{":
            stack.append(None)
            continue
        if s == "}":
            if stack:
                stack.pop()
            continue
        if s.startswith("graph [") and s.endswith("]"):
            target = clusters[stack[-1]]["attrs"] if stack and stack[-1] else graph
            target.update(parse_attrs(s[len("graph ["):-1]))
            continue
        m = re.match(r"^(\S+) -> (\S+)(?: \[(.*)\])?$", s)
        if m:
            edges.append((m.group(1), m.group(2), parse_attrs(m.group(3) or "")))
            continue
        m = re.match(r"^(\w+) \[(.*)\]$", s)
        if m and m.group(1) not in ("graph", "node", "edge"):
            nodes[m.group(1)] = parse_attrs(m.group(2))
            if stack and stack[-1]:
                clusters[stack[-1]]["nodes"].append(m.group(1))
    return {"nodes": nodes, "edges": edges, "clusters": clusters, "graph": graph}


def pos(attrs):
    x, y = attrs["pos"].rstrip("!").split(",")
    return float(x), float(y)


def bb(attrs):
    return tuple(float(v) for v in attrs["bb"].split(","))


def node_with(dot, text):
    """Ids of the nodes whose label contains ``text``."""
    return [n for n, a in dot["nodes"].items() if text in a.get("label", "")]


def time_clusters(dot):
    """[(t, cluster name)] of the timestep clusters, in the order of their t."""
    out = []
    for name, c in dot["clusters"].items():
        m = re.search(r"t = (-?\d+)", c["attrs"].get("label", ""))
        if m:
            out.append((int(m.group(1)), name))
    return sorted(out)


def visible_edges(dot):
    return [e for e in dot["edges"] if e[2].get("style") != "invis"]
