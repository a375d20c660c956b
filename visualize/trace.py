"""Stage 1, trace: a tensor's history -> a Graph of plain nodes and edges with stable ids.

The only stage that reads the engine's objects (with record.py, which runs backward on
them). The engine's graph is made of ``Function`` nodes; ``node.parents`` holds one edge
per input, ``(parent_node, output_index)``, or ``(tensor, None)`` for an input that needs
no gradient (data, a constant, a detached state). Leaves that require grad are
``AccumulateGrad`` nodes. ``trace`` visits all of them depth-first with an explicit stack
(a 100,000-op chain is fine) and numbers them in forward order: inputs first, each node
after its parents. Ids are built from that position and the node's name, never from
``id()``, so the same program always gives the same ids.
"""
import numpy as np

from tinygrad_rnn import backend as backends
from tinygrad_rnn.function import AccumulateGrad, Function
from tinygrad_rnn.tensor import Tensor

from .graph import Edge, Graph, Node
from .names import looks_like_parameter, safe_id


def host(array):
    """A host NumPy copy of a backend array (NumPy, array_api_strict or CuPy)."""
    if array is None or isinstance(array, np.ndarray):
        return array
    ns = getattr(array, "__array_namespace__", None)
    if ns is not None:
        try:
            return backends.backend_of(ns()).to_numpy(array)
        except RuntimeError:        # an array of a namespace no backend computes with
            pass
    return np.asarray(array)


class Traced(Graph):
    """The traced graph, and how its nodes relate to the engine's objects (never drawn):
    ``objects``: node id -> Function or Tensor; ``lookup``: id(engine object) -> node id."""

    def __init__(self):
        super().__init__()
        self.objects = {}
        self.lookup = {}


def graph_edge(t):
    """How the engine's graph refers to tensor ``t`` as an op input: (node, output index), or
    (t, None) for a tensor that needs no gradient."""
    return t._edge()


def primitive_edge(node, index):
    """An edge of the engine's graph as drawn: an output of a fused op (a layer's
    ``Recurrence``, a cell step of tinygrad_rnn/cell_ops.py) is the output of the op that makes
    it in the op's expansion, which the picture draws instead of the fused op, down to a
    primitive op (a layer expands into its steps, each step into its ops); any other edge is itself."""
    while isinstance(node, Function):
        expansion = node.expand()
        if expansion is None:
            break
        out = expansion[1][index]
        node, index = out._ctx, out._out_idx
    return node, index


def engine_edge(t, position=0):
    """How the engine's graph refers to tensor ``t`` as an op input: (node, output index).
    Raises with what to do when ``t`` has no graph."""
    if not isinstance(t, Tensor):
        raise TypeError(f"expected a Tensor (or a list of Tensors) to draw, got {type(t).__name__} at "
                        f"position {position}")
    if not t.requires_grad:
        raise ValueError(
            f"nothing to draw: the tensor at position {position} (shape {t.shape}"
            f"{', ' + repr(t.name) if t.name else ''}) has no graph, because no input of the ops that made it "
            f"requires grad (or it was made under no_grad()); create parameters with requires_grad=True")
    return graph_edge(t)


def find(g, t):
    """(node id, output index) of tensor ``t`` in the traced graph ``g``, or None."""
    if t.requires_grad:
        obj, index = primitive_edge(*graph_edge(t))
        node_id = g.lookup.get(id(obj))
    else:
        node_id, index = g.lookup.get(id(t)), 0
    return (node_id, index) if node_id in g.nodes else None


def leaf_node(g, t):
    """The node id of leaf tensor ``t`` in the traced graph ``g`` (None if no op of ``g`` read it)."""
    obj = t._accum
    return g.lookup.get(id(obj)) if obj is not None else None


def trace(roots, params=None):
    """The Graph of everything that ``roots`` (a Tensor or a list of them) was computed from.

    ``params``: optional {name: tensor} (e.g. ``dict(model.named_parameters())``) naming
    leaves that have no name of their own (torchviz's ``params=``)."""
    if isinstance(roots, Tensor):
        roots = [roots]
    roots = list(roots)
    if not roots:
        raise ValueError("nothing to draw: expected a Tensor or a non-empty list of Tensors, got an empty list")
    root_edges = [primitive_edge(*engine_edge(t, i)) for i, t in enumerate(roots)]
    names = _param_names(params)
    g = Traced()
    order = _walk([node for node, _ in root_edges])
    for k, obj in enumerate(order):
        node = _make_node(k, obj, names)
        g.add(node)
        g.objects[node.id] = obj
        g.lookup[id(obj)] = node.id
    _connect(g, order)
    g.roots = [(g.lookup[id(node)], index) for node, index in root_edges]
    for node_id, index in g.roots:
        g.nodes[node_id].info.setdefault("root_outputs", []).append(index)
    _drop_unused_consts(g)
    _join_cuts(g)
    _dead_leaves(g)
    _saved_bytes(g)
    return g


def _param_names(params):
    names = {}
    if params is not None:
        items = params.items() if hasattr(params, "items") else params
        for name, p in items:
            if not isinstance(p, Tensor):
                raise TypeError(f"params: expected {{name: Tensor}}, got {type(p).__name__} for {name!r}")
            names[id(p)] = str(name)
    return names


def _walk(starts):
    """Every engine object reachable from ``starts``, each after its parents (iterative DFS).

    Objects are Functions, or Tensors for the inputs that need no gradient. A fused cell op is
    never reached: every edge into it is followed to the primitive op that makes the output."""
    order, seen = [], set()
    stack = [(obj, False) for obj in reversed(starts)]
    while stack:
        obj, expanded = stack.pop()
        if expanded:
            order.append(obj)
            continue
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        stack.append((obj, True))
        if isinstance(obj, Function):
            for parent, index in reversed(obj.parents):
                parent = primitive_edge(parent, index)[0]
                if id(parent) not in seen:
                    stack.append((parent, False))
    return order


def _connect(g, order):
    for obj in order:
        if not isinstance(obj, Function):
            continue
        dst = g.lookup[id(obj)]
        for slot, (parent, index) in enumerate(obj.parents):
            parent, index = primitive_edge(parent, index)
            src = g.nodes[g.lookup[id(parent)]]
            if src.kind == "const":     # every use of a number gets its own small node
                src = _const_copy(g, src, dst, slot)
            kind = "cut" if src.kind == "cut" else "param" if src.kind in ("param", "leaf") else "data"
            g.connect(Edge(src.id, index or 0, dst, slot, kind))


def _doc_line(node):
    doc = type(node).__doc__ or ""
    return doc.strip().split("\n")[0]


def _make_node(k, obj, names):
    if isinstance(obj, AccumulateGrad):
        return _leaf_node(k, obj, names)
    if isinstance(obj, Function):
        out_names = obj.out_names or {}
        values = obj.values
        node = Node(f"n{k}_{obj.name}", "op", op=obj.name, scope=obj.scope, formula=obj.formula, doc=_doc_line(obj))
        node.outputs = [{"shape": tuple(s), "name": out_names.get(i), "value": values[i] if values else None,
                         "grad": None} for i, s in enumerate(obj.out_shapes)]
        node.info["freed"] = bool(obj.freed)
        return node
    return _data_node(k, obj, names)


def _leaf_node(k, obj, names):
    t = obj.tensor
    name = names.get(id(t)) if t is not None else None
    name = name or obj.label or (t.name if t is not None else None)
    kind = "param" if (t is not None and (_is_parameter(t) or id(t) in names)) else "leaf"
    node = Node(f"p{k}_{safe_id(name or 'leaf')}", kind, name=name, formula=obj.formula)
    node.info["dead"] = t is None        # its tensor is gone: _dead_leaves decides from its uses
    node.outputs = [{"shape": tuple(obj.out_shapes[0]), "name": name, "value": t.data if t is not None else None,
                     "grad": t.grad.data if (t is not None and t.grad is not None) else None}]
    return node


def _data_node(k, t, names):
    """A Tensor that needs no gradient: data, a constant, or a detached state."""
    name = names.get(id(t)) or t.name
    if t._cut is not None:
        kind = "cut"
    elif t.numel() == 1 or t.dtype == "bool" or (name is None and _all_zero(t)):
        kind = "const"      # a number, a mask ("[t = true]"), a zero initial state: small, next to each use
    else:
        kind = "input"
    node = Node(f"d{k}_{safe_id(name or kind)}", kind, name=name)
    node.outputs = [{"shape": tuple(t.shape), "name": name, "value": t.data, "grad": None}]
    if t._cut is not None:
        op, scope, cut_name = t._cut
        node.info["cut"] = {"op": op, "scope": tuple(scope), "name": cut_name}
    return node


def _is_parameter(t):
    from tinygrad_rnn.nn.module import Parameter
    return isinstance(t, Parameter)


def _all_zero(t, limit=100_000):
    if t.numel() > limit or t.dtype not in ("float32", "float64"):
        return False
    return not host(t.data).any()


def _dead_leaves(g):
    """A leaf whose tensor was garbage-collected (its module is gone) is a parameter if it is
    shared or named like one (weight, bias), else a plain leaf (an initial state). Its numbers
    live on where an op that read it saved them (a linear keeps its weight for backward)."""
    out = {}
    for e in g.edges:
        out.setdefault(e.src, []).append(e)
    for node in g.nodes.values():
        if node.info.pop("dead", False):
            uses = out.get(node.id, ())
            node.kind = "param" if (len(uses) > 1 or looks_like_parameter(node.name)) else "leaf"
            for e in uses:
                saved = g.objects[e.dst].saved
                if e.slot == 1 and g.objects[e.dst].name == "linear" and saved:   # Linear saves (x, W)
                    node.outputs[0]["value"] = saved[1]
                    break


def _const_copy(g, const, dst, slot):
    copy = Node(f"{const.id}_for_{dst}_{slot}", "const", name=const.name)
    copy.outputs = const.outputs
    copy.info["copy_of"] = const.id
    g.add(copy)
    return copy


def _drop_unused_consts(g):
    used = {e.src for e in g.edges}
    for node_id in [n for n, node in g.nodes.items() if node.kind == "const" and n not in used]:
        del g.nodes[node_id]
    # keep forward order: copies were appended at the end; move each right before its consumer
    order = list(g.nodes.values())
    consumer = {e.src: e.dst for e in g.edges if g.nodes[e.src].kind == "const"}
    placed = []
    pending = {}
    for node in order:
        if node.kind == "const" and node.id in consumer:
            pending.setdefault(consumer[node.id], []).append(node)
    for node in order:
        if node.kind == "const" and node.id in consumer:
            continue
        placed.extend(pending.get(node.id, ()))
        placed.append(node)
    g.nodes = {n.id: n for n in placed}


def _join_cuts(g):
    """A detached tensor whose origin (op and scope) is also drawn: one dashed edge from the origin.

    ``h.detach()`` remembers where it was cut (``_cut = (op, scope, name)``). When the
    graph also holds that op (two truncated-BPTT chunks drawn together), the cut is drawn
    from the op itself, so the picture shows exactly where the gradient stops."""
    by_place = {}
    for node in g.nodes.values():
        if node.kind == "op":
            by_place.setdefault((node.op, node.scope), []).append(node)
    for node in list(g.nodes.values()):
        cut = node.info.get("cut")
        if node.kind != "cut" or cut is None:
            continue
        origins = by_place.get((cut["op"], cut["scope"]), [])
        if len(origins) != 1:
            continue
        origin = origins[0]
        index = 0
        for i, out in enumerate(origin.outputs):
            if out["name"] is not None and out["name"] == cut["name"]:
                index = i
        for e in g.edges:
            if e.src == node.id:
                e.src, e.src_index = origin.id, index
                e.info["cut_from"] = node.id
        del g.nodes[node.id]


def _saved_bytes(g):
    """``info["saved_bytes"]`` of each op that saved arrays for backward: their bytes, each array
    counted once, at its first saver. The parameters' own arrays are not counted: they exist
    whether or not a graph keeps them."""
    seen = set()
    for node_id, obj in g.objects.items():
        t = getattr(obj, "tensor", None)
        if t is not None and node_id in g.nodes and g.nodes[node_id].kind in ("param", "leaf"):
            seen.add(id(t.data))
    for node_id, obj in g.objects.items():
        saved = getattr(obj, "saved", None)
        if node_id not in g.nodes or not saved:
            continue
        total = 0
        for a in saved:
            if a is None or not hasattr(a, "shape") or id(a) in seen:
                continue
            seen.add(id(a))
            total += _nbytes(a)
        g.nodes[node_id].info["saved_bytes"] = total


def _nbytes(a):
    n = 1
    for s in a.shape:
        n *= int(s)
    name = str(a.dtype)
    size = 8 if "64" in name else 4 if "32" in name else 2 if "16" in name else 1
    return n * size
