"""The pictures: ``draw_graph`` (the op graph) and ``draw_bptt`` (the graph unrolled through time).

Both trace the tensor's history (trace.py), optionally run one recorded backward pass
(bptt.py), place nodes by their scopes (unroll.py), write the labels (labels.py),
arrange clusters and heights (this file), and hand the result to render.py. Each
returns a ``graphviz.Digraph``: ``.source`` is the DOT text, Jupyter displays it,
``.render("name", format="png")`` writes a file (or ``visualize.save(dg, "x.svg")``).
"""
import re

import numpy as np

from tinygrad_rnn.autograd import GraphFreedError
from tinygrad_rnn.tensor import Tensor

from . import labels as L
from . import style as S
from .bptt import array_norm, norm, record
from .graph import Cluster, Edge, Graph, Node
from .layout import layout, spline, text_width
from .render import to_digraph
from .trace import host, trace
from .unroll import LEVELS, STATE_NAME, collapse, place

DEFAULT_MAX_NODES = 400


def _roots(loss):
    if isinstance(loss, Tensor):
        return [loss]
    if isinstance(loss, (list, tuple)):
        return list(loss)
    raise TypeError(f"expected a Tensor or a list of Tensors, got {type(loss).__name__}")


# ================================================================================ draw_bptt
def draw_bptt(loss, level="op", gradients=False, highlight=None, timesteps=None, show_values=False,
              formulas=False, params=None, max_nodes=DEFAULT_MAX_NODES, memory=False, keep_grads=False,
              highlight_from=None, edge_labels=True, title=None):
    """The graph of ``loss`` laid out through time, like the unrolled figures of the lecture.

    Time runs left to right, one cluster per timestep (per layer and direction); inputs
    at the bottom, losses at the top; state edges run from t to t+1 (right to left for
    a reverse direction); each shared parameter is drawn once, with one edge per use.

    level: "op" (every primitive op), "cell" (one box per cell call: the notes'
        "representational shortcut"), "layer" (one box per layer and direction).
    gradients: run ``loss.backward(retain_graph=True)`` with recording and draw the
        gradient on every edge (colour and width on a log scale, numbers on the edges,
        arrows pointing backward; an edge without gradient has no arrowhead), ||dL/dh_t||
        per timestep, and each shared weight's gradient as the sum of its per-use terms
        ("W_hh += 0.58" on each use). The leaves' ``.grad`` are restored afterwards
        (``keep_grads=True`` keeps them, as after a plain backward).
    highlight: a Tensor, a parameter name ("rnn.weight_hh_l0" or "W_hh"), a tensor name
        ("h_0", "L_4"), or "h_<t>"/"c_<t>" (the state made at step t, in every row):
        every path from the loss (or ``highlight_from``) to it gets a vermillion underlay
        (the edges keep their own colours) and its boxes a vermillion border.
    timesteps: show only some steps: k (the first and last k), (first, last), or a list of t.
    show_values, formulas: numbers of tensors (intermediates need ``tg.retain_values()``)
        and each op's local derivative.
    params: {name: tensor} to name leaves. memory: bytes saved for backward per step.
    max_nodes: above it, collapse to a coarser level, then elide timesteps (said in the picture).
    """
    roots = _roots(loss)
    g = trace(roots, params)
    rec = record(g, roots, keep_grads) if gradients else None
    rows = place(g)
    opts = dict(show_values=show_values, gradients=gradients, formulas=formulas, memory=memory,
                edge_labels=edge_labels, level=level)
    dg = build(g, rows, opts, level, timesteps, max_nodes, highlight, highlight_from)
    if rec is not None:
        dg.notes.extend(rec.notes)
    dg.title = title if title is not None else ""
    dg.legend = legend(dg, opts)
    out = to_digraph(dg)
    out.graph = dg
    out.recording = rec
    return out


def build(g, rows, opts, level="op", timesteps=None, max_nodes=DEFAULT_MAX_NODES, highlight=None,
          highlight_from=None):
    """Collapse, label, highlight and lay out a traced graph (everything but the legend and DOT)."""
    dg = fit(g, rows, level, timesteps, max_nodes)
    if any(node.op == "loop" for node in g.nodes.values()):
        dg.notes.append("a layer made with replay=True runs its whole time loop as one node (loop): "
                        "make it with replay=False (the default) to draw every timestep")
    elif not rows:
        dg.notes.append("no timestep scopes (tg.scope(\"t=<t>\")) in this graph: drawn without the time layout")
    annotate(dg, rows, opts)
    if highlight is not None:
        mark_paths(dg, highlight, highlight_from)
    arrange(dg, rows, opts)
    return dg


def fit(g, rows, level, timesteps, max_nodes):
    """Collapse at ``level``; above ``max_nodes``, try coarser levels and fewer timesteps."""
    if level not in LEVELS:
        raise ValueError(f"level: expected one of {', '.join(repr(x) for x in LEVELS)}, got {level!r}")
    if not isinstance(max_nodes, int) or max_nodes < 10:
        raise ValueError(f"max_nodes: expected an int >= 10, got {max_nodes!r}")
    start = LEVELS.index(level) if rows else 0
    n_op = None
    for lv in (LEVELS[start:] if rows else ["op"]):
        dg = collapse(g, rows, lv if rows else "op", timesteps)
        n_op = n_op or len(dg)
        if len(dg) <= max_nodes:
            if rows and lv != level:
                dg.notes.append(f"{n_op} nodes at level \u201c{level}\u201d exceed max_nodes={max_nodes}: "
                                f"drawn at level \u201c{lv}\u201d")
            return dg
        if lv == "op" and rows and level == "op":
            continue
        k = _fitting_steps(dg, rows, max_nodes)
        if k is not None:
            dg2 = collapse(g, rows, lv, k if timesteps is None else _narrow(timesteps, k))
            if len(dg2) <= max_nodes:
                if lv != level:
                    dg2.notes.append(f"{n_op} nodes at level \u201c{level}\u201d exceed max_nodes={max_nodes}: "
                                     f"drawn at level \u201c{lv}\u201d")
                dg2.notes.append(f"only the first and last {k} timesteps are drawn (max_nodes={max_nodes})")
                return dg2
    return _truncate(dg, max_nodes, n_op)


MAX_END_STEPS = 6      # automatic elision shows at most this many steps at each end


def _fitting_steps(dg, rows, max_nodes):
    """How many steps to show at each end so that the picture fits ``max_nodes``: at most
    MAX_END_STEPS (a picture of 2 x 195 steps is no more readable than one of 2 x 6)."""
    times = max((len(r.times) for r in rows), default=0)
    if times <= 3:
        return None
    timed = sum(1 for n in dg.nodes.values() if n.t is not None)
    fixed = len(dg) - timed
    per_step = timed / times
    k = int((max_nodes - fixed - 2 * len(rows)) / (2 * per_step)) if per_step else 0
    if k < 1:
        return None
    return min(k, times // 2 - 1, MAX_END_STEPS)


def _narrow(timesteps, k):
    if isinstance(timesteps, int):
        return min(timesteps, k)
    return k


def _truncate(dg, max_nodes, n_total):
    """Last resort for graphs without time structure: the nodes nearest the output, and a note."""
    keep = list(dg.nodes)[-(max_nodes - 1):]
    keep_set = set(keep)
    dropped = [n for n in dg.nodes if n not in keep_set]
    out = Graph()
    out.__dict__.update({k: v for k, v in dg.__dict__.items() if k not in ("nodes", "edges")})
    out.notes = list(dg.notes)
    etc = Node("etc_earlier", "ellipsis", name=f"{len(dropped)} earlier nodes")
    etc.part = "ellipsis"
    etc.members = []
    etc.info["dropped"] = len(dropped)
    out.add(etc)
    for n in keep:
        out.add(dg.nodes[n])
    seen = set()
    for e in dg.edges:
        if e.dst not in keep_set:
            continue
        if e.src not in keep_set:
            if e.dst in seen:
                continue
            seen.add(e.dst)
            m = Edge("etc_earlier", 0, e.dst, e.slot, "data")
            m.grads = e.grads
            m.info = dict(e.info)
            out.connect(m)
        else:
            out.connect(e)
    out.notes.append(f"{n_total} nodes exceed max_nodes={max_nodes} and have no timesteps to fold: "
                     f"only the {len(keep)} nodes nearest the output are drawn")
    return out


# ================================================================================ annotate
def state_outputs(g):
    """{(row, t): [(name, node id, output index)]}: the hidden (and cell) state of each step.

    Named outputs first ("h", "c", "h_3"); otherwise the outputs carried to another step."""
    found = {}
    for node in g.nodes.values():
        if node.kind != "op" or node.t is None:
            continue
        for i, out in enumerate(node.outputs):
            if out["name"] and STATE_NAME.match(out["name"]):
                found.setdefault((node.row, node.t), []).append((out["name"], node.id, i))
    for e in g.edges:
        if e.kind != "state":
            continue
        node = g.nodes[e.src]
        if node.kind != "op" or (node.row, node.t) in found and any(
                nid == node.id and i == e.src_index for _, nid, i in found[(node.row, node.t)]):
            continue
        key = (node.row, node.t)
        if key in found and any(n[0] for n in found[key] if STATE_NAME.match(n[0] or "")):
            continue
        found.setdefault(key, []).append((node.outputs[e.src_index]["name"] or "h", node.id, e.src_index))
    for key in found:       # h before c
        found[key].sort(key=lambda x: (not x[0].startswith("h"), x[0]))
        uniq, seen = [], set()
        for item in found[key]:
            if (item[1], item[2]) not in seen:
                seen.add((item[1], item[2]))
                uniq.append(item)
        found[key] = uniq
    return found


def annotate(dg, rows, opts):
    """Labels, roles and tooltips of every node; per-step gradient norms for the clusters."""
    mg = dg.member_graph
    if mg.parents_of_cache is None:
        mg.parents_of_cache = mg.parents_of()
    states = state_outputs(mg)
    dg.state_norms = {}
    for key, items in states.items():
        vals = []
        for name, nid, i in items:
            grad = mg.nodes[nid].outputs[i].get("grad")
            vals.append((name, array_norm(grad) if grad is not None else None))
        dg.state_norms[key] = vals
    out_edges = dg.children_of()
    root_ids = {r for r, _ in dg.roots}
    dg.member_out_counts = {}
    dg.member_edges_out = {}
    group_of = dg.group_of
    for e in mg.edges:
        dg.member_out_counts[e.src] = dg.member_out_counts.get(e.src, 0) + 1
        gs, gd = group_of.get(e.src, e.src), group_of.get(e.dst, e.dst)
        if gs != gd:
            dg.member_edges_out.setdefault(gs, []).append(e)
    saved = _saved_bytes(mg) if opts.get("memory") else None
    for node in dg.nodes.values():
        if node.kind == "note":         # drawn by the layout (a row's label): nothing to annotate
            continue
        if node.kind == "op":
            node.lines = L.op_lines(node, mg, opts)
            node.style = _op_role(node, root_ids)
            where = "/".join(node.scope) or "top level"
            node.tooltip = f"{node.op} at {where}\n{node.doc}\nlocal derivative: {node.formula}"
        elif node.kind in ("param", "leaf", "input", "const", "cut"):
            if node.kind in ("param", "leaf"):
                _param_terms(node, dg, out_edges)
            node.lines = L.leaf_lines(node, mg, opts)
            node.style = node.kind
            node.tooltip = f"{node.kind}: {node.name or ''} {L.shape_text(node.outputs[0]['shape']) if node.outputs else ''}"
        else:
            _group_info(node, mg, dg, opts, states, root_ids, saved)
            node.lines = L.group_lines(node, mg, opts)
            node.style = {"cell": "cell", "readout": "readout", "pre": "projection", "post": "group",
                          "layer": "layer", "ellipsis": "ellipsis"}.get(node.part, "cell" if node.t is not None else "group")
            if node.info.get("has_root"):
                node.style = "root"
            node.tooltip = f"{len(node.members)} nodes: {L._op_summary([mg.nodes[m].op for m in node.members if mg.nodes[m].kind == 'op'], 20)}"
    if saved is not None:
        dg.saved_bytes = saved


def _op_role(node, root_ids):
    if node.id in root_ids:
        return "root"
    out = node.outputs[0] if len(node.outputs) == 1 else None
    if out is not None and out["shape"] == () and out["name"] and re.match(r"^(L|loss)", out["name"], re.I):
        return "loss"
    return "op"


def _param_terms(node, dg, out_edges):
    """Per-use gradient terms of a leaf: one per edge out of it (per timestep at cell level)."""
    terms, uses_t, order = [], [], []
    n_uses = sum(dg.member_out_counts.get(m, 0) for m in node.members)
    for e in out_edges.get(node.id, ()):
        dst = dg.nodes[e.dst]
        ts = dst.info.get("elided") or ([dst.t] if dst.t is not None else [])
        uses_t.extend((dst.row, t) for t in ts)
        if len(ts) == 1:
            label = f"t={ts[0]}"
        elif ts:
            label = f"t={ts[0]}\u2026{ts[-1]}"
        elif dst.part == "pre":
            label = "all steps"
        else:
            label = L.short(dst.op or dst.name or dst.id, 12)
        terms.append((label, norm(e.grads) if e.grads else None))
        order.append((ts[0] if ts else float("inf"), len(order)))       # terms listed by time
    node.info["terms"] = [term for _, term in sorted(zip(order, terms), key=lambda x: x[0])]
    node.info["uses_t"] = sorted({t for _, t in uses_t})
    node.info["uses_steps"] = len(set(uses_t))     # distinct (row, t): chunks and layers count apart
    node.info["uses"] = n_uses


def _group_info(node, mg, dg, opts, states, root_ids, saved):
    mg_roots = set(mg.roots)
    outs, grads, values = [], [], []
    mchildren = {}
    for e in dg.member_edges_out.get(node.id, ()):
        mchildren.setdefault((e.src, e.src_index), []).append(e)
    for m in node.members:
        n = mg.nodes[m]
        for i, out in enumerate(n.outputs):
            if (m, i) in mchildren or (m, i) in mg_roots:
                name = out["name"]
                if name:
                    outs.append(name)
                    if out.get("grad") is not None:
                        grads.append((name, array_norm(out["grad"])))
                    if out.get("value") is not None:
                        values.append((name, out["value"]))
        if any(r == m for r, _ in mg.roots):
            node.info["has_root"] = True
    if not grads and opts.get("gradients"):
        total = {}
        for (m, i), edges in mchildren.items():
            g = mg.nodes[m].outputs[i].get("grad")
            if g is not None:
                total[(m, i)] = g
        if total:
            grads.append(("outputs", norm(total)))
    node.info["out_names"] = outs[:4]
    node.info["out_grads"] = grads[:4]
    node.info["out_values"] = values[:3]
    if node.part == "layer" or node.kind == "ellipsis":
        ts = sorted({mg.nodes[m].t for m in node.members if mg.nodes[m].t is not None})
        row = next((mg.nodes[m].row for m in node.members if mg.nodes[m].t is not None), None)
        vals = []
        for t in ts:
            items = dg.state_norms.get((row, t))
            vals.append((t, items[0][1] if items else None))
        scale = S.GradScale([v for _, v in vals])
        node.info["state_values"] = vals
        node.info["state_norms"] = [(scale.colour(v), v) for _, v in vals]
    if saved is not None:
        node.info["saved_bytes"] = sum(saved.get(m, 0) for m in node.members)


def _saved_bytes(mg):
    """Bytes of the arrays each op saved for backward (each array counted once, at its first saver;
    the parameters' own arrays are not counted: they exist whether or not a graph keeps them)."""
    out, seen = {}, set()
    for node_id, obj in mg.objects.items():
        t = getattr(obj, "tensor", None)
        if t is not None and mg.nodes.get(node_id) is not None and mg.nodes[node_id].kind in ("param", "leaf"):
            seen.add(id(t.data))
    for node_id, obj in mg.objects.items():
        saved = getattr(obj, "saved", None)
        if node_id not in mg.nodes or not saved:
            continue
        total = 0
        for a in saved:
            if a is None or not hasattr(a, "shape") or id(a) in seen:
                continue
            seen.add(id(a))
            total += _nbytes(a)
        out[node_id] = total
    return out


def _nbytes(a):
    n = 1
    for s in a.shape:
        n *= int(s)
    name = str(a.dtype)
    size = 8 if "64" in name else 4 if "32" in name else 2 if "16" in name else 1
    return n * size


# ================================================================================ highlight
def resolve(g, spec):
    """The (node id, output index) pairs a highlight spec names, in the traced graph ``g``."""
    specs = spec if isinstance(spec, (list, tuple)) else [spec]
    found = []
    for s in specs:
        if isinstance(s, Tensor):
            if s.requires_grad:
                obj, idx = s._edge()
                nid = g.lookup.get(id(obj))
            else:
                nid, idx = g.lookup.get(id(s)), 0
            if nid is None or nid not in g.nodes:
                raise ValueError(f"highlight: the tensor{' ' + repr(s.name) if s.name else ''} of shape {s.shape} "
                                 f"is not part of this graph")
            found.append((nid, idx))
            continue
        if not isinstance(s, str):
            raise TypeError(f"highlight: expected a Tensor, a parameter or tensor name, or 'h_<t>', got {type(s).__name__}")
        hits = []
        for node in g.nodes.values():
            for i, out in enumerate(node.outputs):
                name = out["name"] or node.name
                if name is not None and (name == s or (node.kind in ("param", "leaf") and L.alias(name) == s)):
                    hits.append((node.id, i))
        if not hits:
            m = re.match(r"^(h|c)_\{?(-?\d+)\}?$", s)
            if m:
                t = int(m.group(2))
                for node in g.nodes.values():
                    if node.kind == "op" and node.t == t:
                        for i, out in enumerate(node.outputs):
                            if out["name"] == m.group(1):
                                hits.append((node.id, i))
        if not hits:
            names = sorted({(out["name"] or n.name) for n in g.nodes.values() for out in n.outputs
                            if (out["name"] or n.name) and n.kind != "const"})
            raise ValueError(f"highlight: nothing in the graph is called {s!r}; names in it: "
                             f"{', '.join(repr(x) for x in names[:30])}{' ...' if len(names) > 30 else ''}")
        found.extend(hits)
    return found


def gradient_paths(g, targets, sources):
    """Node ids and edges on every gradient path from ``sources`` down to ``targets``."""
    grad_edges = [e for e in g.edges if e.kind != "cut" and g.nodes[e.src].kind not in ("input", "const", "cut")]
    out, into = {}, {}
    for e in grad_edges:
        out.setdefault(e.src, []).append(e)
        into.setdefault(e.dst, []).append(e)

    def reach(starts, table, end):
        seen, stack = set(starts), list(starts)
        while stack:
            for e in table.get(stack.pop(), ()):
                n = getattr(e, end)
                if n not in seen:
                    seen.add(n)
                    stack.append(n)
        return seen
    down = reach([n for n, _ in targets], out, "dst")
    up = reach([n for n, _ in sources], into, "src")
    nodes = down & up
    edges = [e for e in grad_edges if e.src in nodes and e.dst in nodes]
    return nodes, edges


def mark_paths(dg, spec, spec_from=None):
    mg = dg.member_graph
    targets = resolve(mg, spec)
    sources = resolve(mg, spec_from) if spec_from is not None else list(mg.roots)
    nodes, edges = gradient_paths(mg, targets, sources)
    if not nodes:
        dg.notes.append("highlight: no gradient path leads from the loss to the chosen tensor")
    group_of = dg.group_of
    hl_nodes = {group_of.get(n, n) for n in nodes}
    hl_edges = {id(e) for e in edges}
    for node in dg.nodes.values():
        if node.id in hl_nodes:
            node.info["highlight"] = True
            node.info["border"] = S.HIGHLIGHT
    for e in dg.edges:
        if any(id(m) in hl_edges for m in e.info.get("members", [e])):
            e.info["highlight"] = True
    # how many highlighted ops read each parameter (the W_hh count of the lecture's question)
    reads = {}
    for e in mg.edges:
        src = mg.nodes[e.src]
        if src.kind in ("param", "leaf") and e.dst in nodes:
            reads[src.name or src.id] = reads.get(src.name or src.id, 0) + 1
    target_names = ", ".join(_pretty_target(mg, n, i) for n, i in targets)
    source_names = ", ".join(_pretty_target(mg, n, i) for n, i in sources)
    dg.highlight_summary = (source_names, target_names, reads, len([n for n in nodes if mg.nodes[n].kind == "op"]))


def _pretty_target(g, nid, i):
    node = g.nodes[nid]
    out = node.outputs[i] if i < len(node.outputs) else {}
    name = out.get("name") or node.name or node.op or nid
    return f"{name} (t={node.t})" if node.t is not None and not re.search(r"\d", name) else name


# ================================================================================ arrange
def arrange(dg, rows, opts):
    """Clusters (one per shown timestep and row), positions (layout.py), edge styles."""
    gradients = opts.get("gradients")
    row_index = {r.key: i for i, r in enumerate(rows)}
    groups = {}
    for node in dg.nodes.values():
        if node.t is not None and node.row in row_index and node.kind != "ellipsis":
            groups.setdefault((row_index[node.row], node.t), []).append(node)
    for (ri, t), nodes in sorted(groups.items()):
        cid = f"cluster_r{ri}_t{t if t >= 0 else 'm' + str(-t)}"
        dg.clusters[cid] = Cluster(cid, [], "reverse" if rows[ri].reverse else "time", order=(ri, t))
        for n in nodes:
            n.cluster = cid
    cluster_labels(dg, rows, opts)
    if rows:
        layout(dg, rows, opts)
    _edge_styles(dg, opts)


def cluster_labels(dg, rows, opts):
    """Each timestep's label: t, then ||dL/dh_t|| (and ||dL/dc_t||), then the bytes it keeps for backward."""
    members = {}
    for node in dg.nodes.values():
        if node.cluster is not None:
            members.setdefault(node.cluster, []).append(node)
    saved = dg.saved_bytes or {}
    for cid, c in dg.clusters.items():
        if not isinstance(c.order, tuple) or c.order[0] < 0:
            continue
        ri, t = c.order
        lines = [(f"t = {t}", "big")]
        if rows[ri].part_name:                       # a truncated-BPTT chunk: which one
            lines.append((rows[ri].part_name, "small"))
        if opts.get("gradients"):
            for name, n in dg.state_norms.get((rows[ri].key, t), [])[:2]:
                base = re.sub(r"_?\{?-?\d+\}?$", "", name) or name
                if n is not None:
                    lines.append((f"\u2016\u2202L/\u2202{base}_{t}\u2016 = {S.fmt(n)}", "grad"))
                elif opts.get("stepping"):
                    lines.append((f"{base}_{t}: not reached yet", "small"))
                else:
                    lines.append((f"no gradient reaches {base}_{t}", "small"))
        if opts.get("memory"):
            total = 0
            for n in members.get(cid, ()):
                total += (n.info.get("saved_bytes") or 0) if n.kind == "group" else saved.get(n.id, 0)
            lines.append((f"saved for backward: {S.fmt_bytes(total)}", "small"))
        c.label = lines


def _edge_styles(dg, opts):
    """Colour, width, arrow and number of every edge.

    With gradients, an edge that carries a gradient points backward (dL/d its source flows
    against the data) and is coloured and sized by its norm; an edge that carries none has
    no arrowhead. In a step-through frame an edge whose gradient is still to come points
    backward too, in light grey, so no arrow turns round from one frame to the next."""
    gradients = opts.get("gradients")
    norms = [norm(e.grads) for e in dg.edges if e.grads]
    scale = opts.get("scale") or S.GradScale(norms)
    dg.scale = scale
    parallel = {}
    for e in dg.edges:
        if e.kind == "state":
            parallel[(e.src, e.dst)] = parallel.get((e.src, e.dst), 0) + 1
    for e in dg.edges:
        colour, width, style = S.EDGE.get(e.kind, S.EDGE["data"])
        attrs = {"color": colour, "penwidth": width, "style": style}
        e.label = ""
        # an LSTM's h and c run side by side: each says which it is
        name = e.info.get("state_name") if parallel.get((e.src, e.dst), 0) > 1 else None
        if e.kind == "cut":
            e.label = "detach() \u2702"
            attrs["fontcolor"] = "#444444"
        elif name and not gradients:
            e.label = name
        back = False
        if gradients and e.kind != "cut":
            if e.grads:
                n = norm(e.grads)
                back = True
                attrs["color"] = scale.colour(n)
                attrs["penwidth"] = scale.width(n)
                if n == 0:
                    attrs["style"] = "dotted"
                if opts.get("edge_labels", True):
                    e.label = _edge_number(dg, e, n, name)
                    attrs["fontcolor"] = "#222222"
                e.info["norm"] = n
            elif e.info.get("carries"):
                back = True
                attrs["color"] = S.PENDING
                attrs["penwidth"] = 1.0
            else:
                attrs["color"] = S.ZERO_GRAD
                attrs["penwidth"] = 1.0
        if e.info.get("highlight"):
            attrs["penwidth"] = max(float(attrs["penwidth"]), 1.5)
        if gradients and e.kind != "cut":
            attrs["dir"] = "back" if back else "none"
        route = e.info.get("route")
        if route:
            head = not gradients or e.kind == "cut"
            attrs["pos"] = spline(route, arrow_head=head, arrow_tail=back)
            if e.label:
                x, y = e.info["lp"]
                if e.info.get("lp_anchor") == "left":     # the point is where the text starts
                    x += text_width(e.label, "small") / 2
                attrs["lp"] = "%.1f,%.1f" % (x, y)
        e.attrs = attrs


def _edge_number(dg, e, n, state_name=None):
    """The number on an edge: "W_hh += 0.581" on a parameter's use (its term of dL/dW_hh),
    "c 0.012" on one of two parallel state edges, else just the norm."""
    if e.kind == "param":
        src = dg.nodes[e.src]
        return f"{L.alias(src.name) or src.name or 'param'} += {S.fmt(n)}"
    if state_name:
        return f"{state_name} {S.fmt(n)}"
    return S.fmt(n)


# ================================================================================ legend
def legend(dg, opts):
    items = []
    roles = {n.style for n in dg.nodes.values()}
    kinds = {e.kind for e in dg.edges}
    explain = [
        ("root", "L", "the loss (what backward starts from)"),
        ("loss", "L_t", "a per-step loss"),
        ("param", "W", "parameter: drawn once, one edge per use"),
        ("leaf", "h_0", "leaf that requires grad (e.g. the initial state)"),
        ("input", "x_t", "data (no gradient)"),
        ("const", "0", "a constant: a number, a mask, zeros (drawn at each use)"),
        ("op", "op", "one primitive op (hover: its local derivative)"),
        ("cell", "cell", "one cell call at one step (collapsed ops)"),
        ("readout", "output", "the step's output and loss (collapsed)"),
        ("projection", "W_ih x", "input projection for all steps (one matmul)"),
        ("layer", "layer", "one layer over all steps (collapsed)"),
        ("cut", "\u2702", "detached tensor: truncated BPTT stops here"),
        ("ellipsis", "\u22ef", "timesteps not drawn"),
    ]
    for role, text, words in explain:
        if role in roles:
            items.append(("box", role, text, words))
    gradients = opts.get("gradients")
    if "state" in kinds and not gradients:
        items.append(("line", S.EDGE["state"][0], 2, False, "state h_{t-1} \u2192 h_t between steps (an LSTM's c_t "
                      "beside it; a reverse layer's run right to left)", "forward"))
    if "param" in kinds and not gradients:
        items.append(("line", S.EDGE["param"][0], 1, False, "a parameter's use at one step (under each row, one lane "
                      "per parameter)", "forward"))
    if "cut" in kinds:
        items.append(("line", S.EDGE["cut"][0], 1, True, "detach(): no gradient crosses (truncated BPTT)", "forward"))
    if gradients:
        items.append(("small", "Arrows point backward: each edge carries the gradient of the tensor it starts from, "
                               "coloured and sized by its \u2016\u00b7\u2016 on a log scale:"))
        for colour, width, lo, hi in dg.scale.bins():
            items.append(("swatch", colour, width, f"{S.fmt(lo)} \u2013 {S.fmt(hi)}"))
        if "state" in kinds:
            cells = any(e.info.get("state_name") == "c" for e in dg.edges if e.kind == "state")
            items.append(("small", f"edges between steps carry the state {'h_t and c_t' if cells else 'h_t'}: "
                                   f"backward, \u2202L/\u2202h_t flows along them from step t+1 back to step t"))
        if "param" in kinds:
            items.append(("small", "lanes under each row: a shared parameter, one edge per use; \u201cW_hh += 0.58\u201d "
                                   "is that use's term, and \u2202L/\u2202W_hh is the sum of the terms"))
        items.append(("line", S.ZERO_GRAD, 1, False, "no arrowhead: no gradient flows there (data, constants)", "none"))
        if opts.get("stepping"):
            items.append(("line", S.PENDING, 1, False, "light grey: backward has not sent this gradient yet", "back"))
    summary = dg.highlight_summary
    if summary:
        src, dst, reads, n_ops = summary
        items.append(("line", S.HIGHLIGHT, 4, False, f"vermillion underlay: every gradient path from {src} to {dst} "
                                                      f"({n_ops} ops)", "none"))
        for name, k in sorted(reads.items()):
            items.append(("small", f"  ops on these paths that read {name}: {k}"))
    if opts.get("show_values"):
        missing = any(n.kind == "op" and n.outputs and n.outputs[0].get("value") is None for n in dg.nodes.values())
        if missing:
            items.append(("small", "values of intermediate tensors: build the graph inside `with tg.retain_values():`"))
    if opts.get("memory") and dg.saved_bytes is not None:
        total = sum(dg.saved_bytes.values())
        items.append(("small", f"arrays saved for backward: {S.fmt_bytes(total)} in all "
                               f"(freed by backward; detach() keeps earlier chunks out of the graph)"))
    return items


# ================================================================================ draw_graph
def draw_graph(tensor, show_values=True, show_grads=False, formulas=False, params=None,
               max_nodes=DEFAULT_MAX_NODES, title=None):
    """The op graph that produced ``tensor`` (micrograd's draw_dot / torchviz, with more in each box).

    Op nodes (grey, small: the op and, with ``formulas=True``, its local derivative; the
    derivative is always the SVG tooltip) alternate with tensor nodes (name, shape, and
    numbers: a scalar or tiny tensor shows its values). Parameters, inputs, constants and
    the loss are styled apart; a legend explains them.

    show_values: numbers of tensors. Leaves always have them; intermediates only if the
        graph was built inside ``with tg.retain_values():`` (the legend says so).
    show_grads: run one recorded backward (``.grad`` is left as it was) and show each
        tensor's gradient norm; if the graph was already freed, leaf ``.grad`` is shown.
    params: {name: tensor} to name leaves (torchviz's ``params=``).
    """
    roots = _roots(tensor)
    g = trace(roots, params)
    notes = []
    opts = dict(show_values=show_values, gradients=False, formulas=formulas, show_grads=show_grads)
    if show_grads:
        try:
            record(g, roots)
            opts["gradients"] = True
        except GraphFreedError:
            notes.append("the graph was freed by an earlier backward(): only the leaves' .grad are shown")
    place(g)
    dg = Graph()
    dg.member_graph = g
    g.parents_of_cache = g.parents_of()
    children = g.children_of()
    # above max_nodes boxes (an op is a box, and so is each of its outputs): the nodes nearest the output
    boxes = {n.id: 1 + (len(n.outputs) if n.kind == "op" else 0) for n in g.nodes.values()}
    total = sum(boxes.values())
    keep, size = set(), 0
    for node in reversed(list(g.nodes.values())):
        if total > max_nodes and size + boxes[node.id] > max_nodes - 1:     # one box left for the "..."
            break
        size += boxes[node.id]
        keep.add(node.id)
    dropped = len(g.nodes) - len(keep)
    out_id = {}
    root_ids = {r for r, _ in g.roots}
    if dropped:
        etc = Node("etc_earlier", "ellipsis", name=f"{dropped} earlier nodes")
        etc.lines = [("\u22ef", "big"), (f"{dropped} earlier ops and leaves not drawn", "main")]
        etc.style = "ellipsis"
        dg.add(etc)
        ops = sum(1 for n in g.nodes.values() if n.kind == "op")
        notes.append(f"the whole graph takes {total} boxes ({ops} ops, their outputs and {len(g.nodes) - ops} "
                     f"leaves), which exceed max_nodes={max_nodes}: only the {len(keep)} ops and leaves nearest "
                     f"the output are drawn ({size} boxes); for recurrent graphs, draw_bptt(loss, level=\"cell\") "
                     f"folds them by timestep")
    for node in g.nodes.values():
        if node.id not in keep:
            continue
        if node.kind != "op":
            copy = Node(node.id, node.kind, name=node.name, outputs=node.outputs)
            copy.info = dict(node.info)
            _leaf_uses(copy, g, children)
            copy.lines = L.leaf_lines(copy, g, opts)
            copy.style = node.kind
            copy.tooltip = f"{node.kind} {node.name or ''}"
            dg.add(copy)
            out_id[(node.id, 0)] = node.id
            continue
        op = Node(node.id, "op", op=node.op, scope=node.scope)
        op.lines = [(L.op_title(node, g), "main")]
        if node.scope:
            op.lines.append(("/".join(node.scope), "small"))
        if formulas and node.formula:
            op.lines.append((node.formula, "formula"))
        op.style = "opnode"
        op.tooltip = f"{node.op}: {node.doc}\nlocal derivative: {node.formula}"
        dg.add(op)
        for i, out in enumerate(node.outputs):
            tid = f"{node.id}_y{i}"
            t = Node(tid, "tensor", name=out["name"], outputs=[out])
            t.lines = _tensor_lines(out, opts, i if len(node.outputs) > 1 else None)
            is_root = node.id in root_ids and i in node.info.get("root_outputs", [])
            t.style = "root" if is_root else ("loss" if out["shape"] == () and out["name"]
                                              and re.match(r"^(L|loss)", out["name"], re.I) else "tensor")
            t.tooltip = f"output {i} of {node.op}"
            dg.add(t)
            dg.connect(Edge(node.id, 0, tid, 0, "data"))
            out_id[(node.id, i)] = tid
    seen_etc = set()
    for e in g.edges:
        if e.dst not in keep:
            continue
        if e.src not in keep:
            if e.dst in seen_etc:
                continue
            seen_etc.add(e.dst)
            src = "etc_earlier"
        else:
            src = out_id.get((e.src, e.src_index), e.src)
        edge = Edge(src, 0, e.dst, e.slot, e.kind)
        edge.attrs = dict(zip(("color", "penwidth", "style"), S.EDGE.get(e.kind, S.EDGE["data"])))
        if e.kind == "cut":
            edge.label = "detach() \u2702 no gradient"
        dg.connect(edge)
    for e in dg.edges:
        if not e.attrs:
            e.attrs = {"color": S.EDGE["data"][0], "penwidth": S.EDGE["data"][1]}
    dg.notes = notes + dg.notes
    dg.title = title or ""
    dg.legend = _graph_legend(dg, opts)
    dg.attrs["nslimit"] = "5"       # dot's x-placement converges long before its default limit on big graphs
    out = to_digraph(dg, name="graph")
    out.graph = dg
    return out


def _leaf_uses(node, g, children):
    edges = children.get(node.id, ())
    node.info["uses"] = len(edges)
    node.info["uses_t"] = sorted({g.nodes[e.dst].t for e in edges if g.nodes[e.dst].t is not None})


def _tensor_lines(out, opts, index):
    """An op's output: its name (if any) and shape; unnamed outputs show the shape only."""
    name = out["name"]
    shape = L.shape_text(out["shape"])
    if name:
        lines = [(f"{name}  {shape}", "title")]
    else:
        lines = [(shape if index is None else f"[{index}]  {shape}", "main")]
    if opts.get("show_values") and out.get("value") is not None:
        lines.append((L.summarize(out["value"]), "value"))
    if (opts.get("gradients") or opts.get("show_grads")) and out.get("grad") is not None:
        a = np.asarray(host(out["grad"]))
        text = L.summarize(a) if a.size <= 4 else f"\u2016\u00b7\u2016 = {S.fmt(array_norm(a))}"
        lines.append((f"grad {text}", "grad"))
    return lines


def _graph_legend(dg, opts):
    items = []
    roles = {n.style for n in dg.nodes.values()}
    for role, text, words in [("root", "L", "the output being drawn (the loss)"), ("loss", "L_t", "a loss"),
                              ("tensor", "(1, 3)", "a tensor made by an op: its name if it has one, shape, numbers"),
                              ("opnode", "op", "an op (hover for its local derivative)"),
                              ("param", "W", "parameter (requires grad)"), ("leaf", "h_0", "leaf that requires grad"),
                              ("input", "x", "data (no gradient)"), ("const", "1.0", "a constant"),
                              ("cut", "\u2702", "a detached tensor (no gradient flows back)")]:
        if role in roles:
            items.append(("box", role, text, words))
    kinds = {e.kind for e in dg.edges}
    for kind, words in [("data", "data flow: an op's input or output"),
                        ("param", "a parameter (or a leaf that requires grad) read by an op"),
                        ("state", "the state carried from step t to step t+1 (h_{t-1} \u2192 h_t)"),
                        ("cut", "detach(): no gradient crosses")]:
        if kind in kinds:
            colour, width, style = S.EDGE[kind]
            items.append(("line", colour, width, style == "dashed", words, "forward"))
    if opts.get("show_values") and any(n.kind == "tensor" and n.outputs and n.outputs[0].get("value") is None
                                       for n in dg.nodes.values()):
        items.append(("small", "values of intermediate tensors: build the graph inside `with tg.retain_values():`"))
    return items
