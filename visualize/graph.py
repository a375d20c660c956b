"""Node, Edge, Graph: the plain data that every picture is made from.

``trace.py`` fills a Graph from a tensor's history, ``unroll.py`` and ``bptt.py``
annotate and regroup it, ``render.py`` turns it into DOT. Nothing here knows
about Graphviz or the engine.

Node ids are strings made from graph position and names (never ``id()``), so one
program always gives the same ids, and the same DOT text.
"""


class Node:
    """One box of the picture: an op, a leaf tensor, or a group of them (a cell, a layer).

    ``kind``: "op", "param" (a named leaf that requires grad), "leaf" (another leaf
    that requires grad, e.g. h_0), "input" (data), "const" (a number), "cut" (a
    detached tensor), "group" (collapsed ops), "ellipsis", or a drawing-only kind.
    ``outputs``: one dict per output, {"shape", "name", "value", "grad"} (host arrays
    or None). ``t``/``row``/``part`` place it in the unrolled layout (unroll.py).
    """

    __slots__ = ("id", "kind", "op", "name", "scope", "outputs", "formula", "doc", "t", "row", "part",
                 "members", "info", "style", "lines", "tooltip", "cluster", "pos")

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
        self.info = {}          # annotations: gradient norms, flags, bytes, ...
        self.style = None       # a role name from style.py, chosen by the layout
        self.lines = None       # label rows for the renderer: list of (text, font) pairs
        self.tooltip = ""
        self.cluster = None     # the cluster id this node is drawn in
        self.pos = None         # (x, y) in points, set by layout.py

    def __repr__(self):
        return f"<Node {self.id} {self.kind}{' ' + self.op if self.op else ''}>"


class Edge:
    """Data flows from output ``src_index`` of ``src`` into input slot ``slot`` of ``dst``.

    ``kind``: "data", "param", "state" (hidden/cell state, t -> t+1), "cut" (a
    detach() point: no gradient flows), "accum" (a scalar carried across time).
    ``grads``: {source key: host gradient array} of the gradient flowing back along
    the edge (several keys once edges are merged by collapsing)."""

    __slots__ = ("src", "src_index", "dst", "slot", "kind", "grads", "info", "style", "label", "attrs")

    def __init__(self, src, src_index, dst, slot, kind="data"):
        self.src, self.src_index, self.dst, self.slot, self.kind = src, src_index, dst, slot, kind
        self.grads = None
        self.info = {}
        self.style = None
        self.label = ""
        self.attrs = {}

    def __repr__(self):
        return f"<Edge {self.src}[{self.src_index}] -> {self.dst}[{self.slot}] {self.kind}>"


class Cluster:
    """A box around nodes (one timestep of one layer, the legend, ...)."""

    __slots__ = ("id", "label", "style", "parent", "order", "tooltip", "bb")

    def __init__(self, id, label, style="time", parent=None, order=0, tooltip=""):
        self.id, self.label, self.style, self.parent, self.order, self.tooltip = id, label, style, parent, order, tooltip
        self.bb = None          # (x0, y0, x1, y1) in points, set by layout.py


class Graph:
    """Nodes in forward order (inputs first), edges, and what the drawing adds:
    clusters, notes and a legend shown in the picture."""

    def __init__(self):
        self.nodes = {}          # id -> Node, in forward (topological) order
        self.edges = []
        self.roots = []          # (node id, output index) of the traced tensors
        self.clusters = {}       # id -> Cluster
        self.notes = []          # sentences shown under the picture (collapsing, elision, ...)
        self.legend = []         # (kind, payload) entries drawn by render.py
        self.title = ""
        self.attrs = {}          # graph attributes for the renderer (rankdir, ...)
        self.objects = {}        # traced node id -> engine object (Function or Tensor); never drawn
        self.lookup = {}         # id(engine object) -> node id: a lookup table, never used in names
        # set by the drawing steps (draw.py, layout.py), declared here so every Graph has them
        self.member_graph = None      # a collapsed graph: the traced graph its boxes stand for
        self.group_of = {}            # traced node id -> id of the box it was collapsed into
        self.parents_of_cache = None  # {node id: [edges into it]}, filled once the graph stops changing
        self.member_out_counts = {}   # traced node id -> number of edges out of it
        self.member_edges_out = {}    # box id -> traced edges leaving the box
        self.state_norms = {}         # (row, t) -> [(state name, ||dL/dstate|| or None)]
        self.scale = None             # the picture's GradScale (edge colours and widths)
        self.highlight_summary = None # (sources, targets, {param: reads}, number of ops) of a highlight
        self.saved_bytes = None       # traced node id -> bytes saved for backward (memory=True)
        self.layout_done = False      # positions computed (render with neato -n2)

    def add(self, node):
        self.nodes[node.id] = node
        return node

    def connect(self, edge):
        self.edges.append(edge)
        return edge

    def parents_of(self):
        """{node id: [edges into it]} (``parents_of_cache`` keeps one, once the graph is final)."""
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
        into = self.parents_of()
        seen, stack = set(ids), list(ids)
        while stack:
            for e in into.get(stack.pop(), ()):
                if e.src not in seen:
                    seen.add(e.src)
                    stack.append(e.src)
        return seen

    def descendants(self, ids):
        """Every node reachable from one of ``ids`` (including ``ids``)."""
        out = self.children_of()
        seen, stack = set(ids), list(ids)
        while stack:
            for e in out.get(stack.pop(), ()):
                if e.dst not in seen:
                    seen.add(e.dst)
                    stack.append(e.dst)
        return seen

    def __len__(self):
        return len(self.nodes)

    def __repr__(self):
        return f"<Graph {len(self.nodes)} nodes, {len(self.edges)} edges>"
