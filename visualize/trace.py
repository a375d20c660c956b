"""Tensor -> Graph: walk a tensor's history without recursion and give every node a stable id.

The engine's graph is made of ``Function`` nodes; ``node.parents`` holds one edge per
input, ``(parent_node, output_index)``, or ``(tensor, None)`` for an input that needs
no gradient (data, a constant, a detached state). Leaves that require grad are
``AccumulateGrad`` nodes. ``trace`` visits all of them depth-first with an explicit
stack (a 100,000-op chain is fine) and numbers them in forward order: inputs first,
each node after its parents. Ids are built from that position and the node's name,
never from ``id()``, so the same program always gives the same ids.
"""
import re

from tinygrad_rnn.function import AccumulateGrad, Function
from tinygrad_rnn.tensor import Tensor

from .graph import Edge, Graph, Node


def host(array):
    """A host NumPy copy of a backend array (NumPy, array_api_strict or CuPy)."""
    import numpy as np
    if array is None or isinstance(array, np.ndarray):
        return array
    from tinygrad_rnn import backend as backends
    ns = getattr(array, "__array_namespace__", None)
    if ns is not None:
        xp = ns()
        for b in list(backends._instances.values()):
            if b.xp is xp:
                return b.to_numpy(array)
    return np.asarray(array)


def _safe_id(text, limit=24):
    return re.sub(r"[^A-Za-z0-9_]", "_", str(text))[:limit].strip("_") or "x"


def _doc_line(node):
    doc = type(node).__doc__ or ""
    return doc.strip().split("\n")[0]


def _root_edge(t, i):
    if not isinstance(t, Tensor):
        raise TypeError(f"expected a Tensor (or a list of Tensors) to draw, got {type(t).__name__} at position {i}")
    if not t.requires_grad:
        raise ValueError(
            f"nothing to draw: the tensor at position {i} (shape {t.shape}{', ' + repr(t.name) if t.name else ''}) "
            f"has no graph, because no input of the ops that made it requires grad (or it was made under "
            f"no_grad()); create parameters with requires_grad=True")
    return t._edge()


def primitive_edge(node, index):
    """The edge as drawn: a fused cell op's output (cell_ops.py) is made, in the picture, by the
    primitive op of its expansion that makes it; any other edge is itself."""
    if isinstance(node, Function):
        expansion = node.expand()
        if expansion is not None:
            out = expansion[1][index]
            return out._ctx, out._out_idx
    return node, index


def _walk(starts):
    """Every engine object reachable from ``starts``, each after its parents (iterative DFS).

    Objects are Functions, or Tensors for the inputs that need no gradient. A fused op is
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


def _is_parameter(t):
    from tinygrad_rnn.nn.module import Parameter
    return isinstance(t, Parameter)


def trace(roots, params=None):
    """The Graph of everything that ``roots`` (a Tensor or a list of them) was computed from.

    ``params``: optional {name: tensor} (e.g. ``dict(model.named_parameters())``) naming
    leaves that have no name of their own (torchviz's ``params=``)."""
    if isinstance(roots, Tensor):
        roots = [roots]
    roots = list(roots)
    if not roots:
        raise ValueError("nothing to draw: expected a Tensor or a non-empty list of Tensors, got an empty list")
    root_edges = [primitive_edge(*_root_edge(t, i)) for i, t in enumerate(roots)]
    names = {}
    if params is not None:
        items = params.items() if hasattr(params, "items") else params
        for name, p in items:
            if not isinstance(p, Tensor):
                raise TypeError(f"params: expected {{name: Tensor}}, got {type(p).__name__} for {name!r}")
            names[id(p)] = str(name)

    g = Graph()
    ids = {}            # id(engine object) -> node id (a lookup table only; never part of a name)
    order = _walk([node for node, _ in root_edges])
    for k, obj in enumerate(order):
        node = _make_node(k, obj, names)
        g.add(node)
        g.objects[node.id] = obj
        ids[id(obj)] = node.id
    for obj in order:
        if not isinstance(obj, Function):
            continue
        dst = ids[id(obj)]
        for slot, (parent, index) in enumerate(obj.parents):
            parent, index = primitive_edge(parent, index)
            src = g.nodes[ids[id(parent)]]
            if src.kind == "const":     # every use of a number gets its own small node
                src = _const_copy(g, src, dst, slot)
            kind = "cut" if src.kind == "cut" else "param" if src.kind in ("param", "leaf") else "data"
            g.connect(Edge(src.id, index or 0, dst, slot, kind))
    g.roots = [(ids[id(node)], index) for node, index in root_edges]
    for node_id, index in g.roots:
        g.nodes[node_id].info.setdefault("root_outputs", []).append(index)
    _drop_unused_consts(g)
    _join_cuts(g)
    _dead_leaves(g)
    g.lookup = ids
    return g


def _make_node(k, obj, names):
    if isinstance(obj, AccumulateGrad):
        t = obj.tensor
        name = names.get(id(t)) if t is not None else None
        name = name or obj.label or (t.name if t is not None else None)
        kind = "param" if (t is not None and (_is_parameter(t) or id(t) in names)) else "leaf"
        node = Node(f"p{k}_{_safe_id(name or 'leaf')}", kind, name=name, formula=obj.formula)
        node.info["dead"] = t is None        # its tensor is gone: _dead_leaves decides from its uses
        node.outputs = [{"shape": tuple(obj.out_shapes[0]), "name": name, "value": t.data if t is not None else None,
                         "grad": t.grad.data if (t is not None and t.grad is not None) else None}]
        return node
    if isinstance(obj, Function):
        out_names = obj.out_names or {}
        values = obj.values
        node = Node(f"n{k}_{obj.name}", "op", op=obj.name, scope=obj.scope, formula=obj.formula, doc=_doc_line(obj))
        node.outputs = [{"shape": tuple(s), "name": out_names.get(i), "value": values[i] if values else None,
                         "grad": None} for i, s in enumerate(obj.out_shapes)]
        node.info["freed"] = bool(obj.freed)
        return node
    # a Tensor that needs no gradient: data, a constant, or a detached state
    t = obj
    name = names.get(id(t)) or t.name
    if t._cut is not None:
        kind = "cut"
    elif t.numel() == 1 or t.dtype == "bool" or (name is None and _all_zero(t)):
        kind = "const"      # a number, a mask ("[t = true]"), a zero initial state: small, next to each use
    else:
        kind = "input"
    node = Node(f"d{k}_{_safe_id(name or kind)}", kind, name=name)
    node.outputs = [{"shape": tuple(t.shape), "name": name, "value": t.data, "grad": None}]
    if t._cut is not None:
        op, scope, cut_name = t._cut
        node.info["cut"] = {"op": op, "scope": tuple(scope), "name": cut_name}
    return node


def _all_zero(t, limit=100_000):
    if t.numel() > limit or t.dtype not in ("float32", "float64"):
        return False
    return not host(t.data).any()


def _dead_leaves(g):
    """A leaf whose tensor was garbage-collected (its module is gone) is a parameter if it is
    shared or named like one (weight, bias), else a plain leaf (an initial state)."""
    from .labels import PARAM
    out = {}
    for e in g.edges:
        out.setdefault(e.src, []).append(e)
    for node in g.nodes.values():
        if node.info.pop("dead", False):
            shared = len(out.get(node.id, ())) > 1
            node.kind = "param" if (shared or (node.name and PARAM.match(node.name))) else "leaf"


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
