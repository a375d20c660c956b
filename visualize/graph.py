"""Node, Edge, Graph: the plain data that every stage of the pipeline passes on.

Nothing here knows about Graphviz or the engine. Node ids are strings made from graph
position and names (never ``id()``), so one program always gives the same ids, and the
same DOT text.
"""


class Node:
    """One box of the picture: an op, a leaf tensor, or a group of them (a cell, a layer).

    ``kind``: "op", "param" (a named leaf that requires grad), "leaf" (another leaf
    that requires grad, e.g. h_0), "input" (data), "const" (a number), "cut" (a
    detached tensor), "group" (collapsed ops), "ellipsis" (steps not drawn), or
    "tensor" (an op's output, in draw_graph's picture).
    ``outputs``: one dict per output, {"shape", "name", "value", "grad"}: host or backend
    arrays, or None ("grad" is a leaf's ``.grad`` when it was traced).
    ``t``/``row``/``part``: where the unrolled layout puts it (unroll.py); ``members``: the
    ids of the traced nodes a box stands for; ``info``: facts of the stage that made it.
    """

    __slots__ = ("id", "kind", "op", "name", "scope", "outputs", "formula", "doc", "t", "row", "part",
                 "members", "info")

    def __init__(self, id, kind, op=None, name=None, scope=(), outputs=None, formula="", doc=""):
        self.id = id
        self.kind = kind
        self.op = op
        self.name = name
        self.scope = tuple(scope)
        self.outputs = outputs if outputs is not None else []
        self.formula = formula
        self.doc = doc
        self.t = None
        self.row = None
        self.part = None
        self.members = [id]     # ids of the traced nodes this box stands for
        self.info = {}

    def copy(self):
        """The same node, with its own ``info`` and ``members`` (its outputs are shared: read only)."""
        new = Node(self.id, self.kind, self.op, self.name, self.scope, self.outputs, self.formula, self.doc)
        new.t, new.row, new.part = self.t, self.row, self.part
        new.members = list(self.members)
        new.info = dict(self.info)
        return new

    def __repr__(self):
        return f"<Node {self.id} {self.kind}{' ' + self.op if self.op else ''}>"


class Edge:
    """Data flows from output ``src_index`` of ``src`` into input slot ``slot`` of ``dst``.

    ``kind``: "data", "param", "state" (hidden/cell state, t -> t+1), "cut" (a
    detach() point: no gradient flows), "accum" (a scalar carried across time).
    ``origin``: the key (src, src_index, dst, slot) of the traced edge it stands for,
    which is how a recorded gradient finds it; ``info["members"]``: the edges a merged
    edge of a collapsed graph stands for."""

    __slots__ = ("src", "src_index", "dst", "slot", "kind", "origin", "info")

    def __init__(self, src, src_index, dst, slot, kind="data"):
        self.src, self.src_index, self.dst, self.slot, self.kind = src, src_index, dst, slot, kind
        self.origin = None
        self.info = {}

    @property
    def key(self):
        return (self.src, self.src_index, self.dst, self.slot)

    def copy(self):
        new = Edge(self.src, self.src_index, self.dst, self.slot, self.kind)
        new.origin = self.origin if self.origin is not None else self.key
        new.info = dict(self.info)
        return new

    def __repr__(self):
        return f"<Edge {self.src}[{self.src_index}] -> {self.dst}[{self.slot}] {self.kind}>"


class Graph:
    """Nodes in forward order (inputs first), edges, the traced roots, and notes for the reader."""

    def __init__(self):
        self.nodes = {}          # id -> Node, in forward (topological) order
        self.edges = []
        self.roots = []          # (node id, output index) of the traced tensors
        self.notes = []          # sentences shown under the picture (collapsing, elision, ...)

    def add(self, node):
        self.nodes[node.id] = node
        return node

    def connect(self, edge):
        self.edges.append(edge)
        return edge

    def parents_of(self):
        """{node id: [edges into it]}."""
        into = {n: [] for n in self.nodes}
        for e in self.edges:
            into.setdefault(e.dst, []).append(e)
        return into

    def children_of(self):
        """{node id: [edges out of it]}."""
        out = {n: [] for n in self.nodes}
        for e in self.edges:
            out.setdefault(e.src, []).append(e)
        return out

    def ancestors(self, ids):
        """Every node from which one of ``ids`` can be reached (including ``ids``)."""
        return reach(ids, self.parents_of(), "src")

    def descendants(self, ids):
        """Every node reachable from one of ``ids`` (including ``ids``)."""
        return reach(ids, self.children_of(), "dst")

    def __len__(self):
        return len(self.nodes)

    def __repr__(self):
        return f"<Graph {len(self.nodes)} nodes, {len(self.edges)} edges>"


def reach(ids, table, end):
    """Every node id reachable from ``ids`` along the edges in ``table`` ({id: [edge]}), following
    each edge to its ``end`` ("src" or "dst"); iterative."""
    seen, stack = set(ids), list(ids)
    while stack:
        for e in table.get(stack.pop(), ()):
            n = getattr(e, end)
            if n not in seen:
                seen.add(n)
                stack.append(n)
    return seen
