"""Stage 3, annotate: what each box and edge of an unrolled graph says, and how it looks.

Reads an ``Unrolled`` (unroll.py) and, optionally, the ``Gradients`` of one recorded
backward pass (record.py), and returns a ``Picture``: the label rows, role and tooltip of
every box, the colour, width, arrow and number of every edge, the timestep titles, the
row labels, the legend and the notes. Nothing is positioned yet (layout.py does that),
and nothing of the previous stages is changed: a step-through frame is the same Unrolled
annotated again with fewer gradients.
"""
import re

from . import labels as L
from . import style as S
from .graph import reach
from .legend import describe, legend, op_graph_legend
from .names import alias
from .record import array_norm, norm
from .unroll import state_outputs


class Box:
    """How one node is drawn: label rows, role (a key of style.NODE), tooltip, and marks."""

    __slots__ = ("lines", "role", "tooltip", "border", "highlight", "pending")

    def __init__(self, lines, role, tooltip=""):
        self.lines, self.role, self.tooltip = lines, role, tooltip
        self.border = None          # a border colour that overrides the role's
        self.highlight = False      # a thick border
        self.pending = False        # step-through: backward has not reached it yet


class Mark:
    """How one edge is drawn: ``attrs`` (colour, width, line style, arrow direction), its number
    or words (``label``), whether its arrow points backward (``back``) and has a head at its end
    (``head``), the gradient share it carries (``share``), and a highlight underlay."""

    __slots__ = ("attrs", "label", "fontcolor", "back", "head", "share", "highlight", "highlight_colour", "tooltip")

    def __init__(self, attrs, label=""):
        self.attrs, self.label = attrs, label
        self.tooltip = ""
        self.fontcolor = None
        self.back, self.head = False, True
        self.share = None           # the share of its source's gradient it carries (its number)
        self.highlight, self.highlight_colour = False, S.HIGHLIGHT


class Picture:
    """An annotated Unrolled: ``boxes`` {node id: Box}, ``marks`` (one Mark per edge of
    ``unrolled.graph.edges``), ``facts`` {node id: what annotate found out}, the timestep titles
    (``cluster_labels``), ``row_labels`` {row index: lines}, ``legend``, ``notes``, ``title``."""

    def __init__(self, unrolled, gradients, opts):
        self.unrolled, self.gradients, self.opts = unrolled, gradients, opts
        self.graph = unrolled.graph
        self.boxes, self.facts, self.marks = {}, {}, []
        self.cluster_labels, self.row_labels, self.cluster_tooltips = {}, {}, {}
        self.legend, self.notes, self.title = [], list(unrolled.notes), ""
        self.scale = None
        self.state_norms = {}           # (row key, t) -> [(state name, ||dL/dstate|| or None)]
        self.state_parts = {}           # (row key, t) -> [(parts sent so far, parts in all)]
        self.highlight_summary = None   # (sources, targets, {param: reads}, number of ops)
        self.graph_attrs = {}
        self.underlays = {}             # edge index -> colour of its highlight underlay
        n = len(unrolled.graph.edges)
        self.shares = [None] * n        # edge index -> its share of its source's gradient (whole pass)
        self.numbers = [None] * n       # ... as printed (the shares out of one tensor add up to its norm)
        self.arrived = [False] * n      # has backward sent it yet (a step-through frame)
        self.edge_source = [None] * n   # the one traced output (node id, index) whose gradient it carries
        self.param_colour = {}          # parameter box id -> the colour of its box border and lanes
        self.input_grad_max = None      # the largest ||dL/dx_t|| (input_gradients=True)
        self.positioned = bool(unrolled.rows)      # laid out by layout.py (else by Graphviz's dot)

    def grad(self, node_id, index=0):
        """The gradient of output ``index`` of placed node ``node_id`` (None if none reached it)."""
        if self.gradients is not None:
            return self.gradients.grad(node_id, index)
        node = self.unrolled.placed.nodes.get(node_id)
        return node.outputs[index].get("grad") if node is not None and index < len(node.outputs) else None

    def edge_grads(self, e):
        """{(src, index): array}: the gradient along edge ``e`` (summed over the edges it stands for)."""
        if self.gradients is None:
            return None
        members = e.info.get("members")
        if members is None:
            members = [e] if e.origin is not None else []
        grads = {}
        for m in members:
            for k, v in (self.gradients.on(m.origin) or {}).items():
                grads[k] = v if k not in grads else grads[k] + v
        return grads or None


# ================================================================================ the unrolled picture
def annotate(unrolled, gradients=None, opts=None, highlight=None, highlight_from=None, notes=(), title=None):
    """The Picture of ``unrolled``: every box's label, every edge's style and number, the
    timestep titles, the legend; ``highlight``: (node id, output index) pairs or names in the
    placed graph whose gradient paths get a vermillion underlay (from ``highlight_from``, else
    from the roots); ``notes`` go under the unrolled graph's own, ``title`` above them."""
    opts = dict(opts or {})
    pic = Picture(unrolled, gradients, opts)
    _state_norms(pic)
    _edge_numbers(pic)          # before the boxes: a parameter's box lists its uses' shares
    _param_colours(pic)
    if opts.get("input_gradients"):
        input_gradients(pic)
    _boxes(pic)
    if highlight is not None:
        mark_paths(pic, highlight, highlight_from)
    cluster_labels(pic)
    pic.row_labels = {ri: _row_label_lines(r, opts) for ri, r in enumerate(unrolled.rows)}
    edge_marks(pic)
    pic.notes.extend(notes)
    pic.title = title or ""
    pic.legend = legend(pic)
    return pic


def _state_norms(pic):
    """||dL/dh_t|| (and c_t) of every step; in a step-through frame, how many of the parts that
    make it up backward has sent so far (a number is shown only once it is whole)."""
    parts = {}
    if pic.gradients is not None:
        for key, grads in pic.gradients.full.edges.items():
            for source in grads:
                parts.setdefault(source, []).append(key)
    for key, items in state_outputs(pic.unrolled.placed).items():
        pic.state_norms[key] = [(name, array_norm(pic.grad(nid, i))) for name, nid, i in items]
        pic.state_parts[key] = [(sum(1 for k in parts.get((nid, i), ()) if pic.gradients.on(k)),
                                 len(parts.get((nid, i), ()))) for name, nid, i in items]


def _edge_numbers(pic):
    """Each edge's share of the gradient of the tensor it leaves (record.Gradients.share), and the
    texts printed for them: the edges out of one tensor are printed on one grid of digits, so
    that their numbers add up to its ||dL/d.|| as printed (style.fmt_sum). An edge out of an
    input box (the ops between layers) carries dL/d(input) = dZ W_ih of the projection it feeds,
    worked out here: the input box's gradient is their sum."""
    if pic.gradients is None:
        return
    full = pic.gradients.full
    groups, through = {}, {}
    for k, e in enumerate(pic.graph.edges):
        members = e.info.get("members") or ([e] if e.origin is not None else [])
        W = pic.unrolled.placed.nodes[e.info["through"]].outputs[0]["value"] if e.info.get("through") else None
        if W is not None:           # (its weights' module may be gone: then the projection's own gradient)
            arrays = [full.on(m.origin) for m in members]
            arrays = [a for grads in arrays if grads for a in grads.values()]
            if arrays:
                through[k] = sum(arrays) @ L.host_array(W)
                pic.arrived[k] = any(pic.gradients.on(m.origin) for m in members)
            continue
        shares = [full.share(m.origin) for m in members]
        shares = [x for x in shares if x is not None]
        if not shares:
            continue
        pic.shares[k] = sum(shares)
        pic.arrived[k] = any(pic.gradients.on(m.origin) for m in members)
        sources = {key for m in members for key in (full.on(m.origin) or {})}
        if len(sources) == 1:
            pic.edge_source[k] = next(iter(sources))
            groups.setdefault(pic.edge_source[k], []).append(k)
        else:
            pic.numbers[k] = S.fmt(pic.shares[k])
    _through_shares(pic, through)
    for key, ks in groups.items():
        _, texts = S.fmt_sum(array_norm(full.totals[key]), [pic.shares[k] for k in ks])
        for k, text in zip(ks, texts):
            pic.numbers[k] = text


def _through_shares(pic, through):
    """Shares of the edges out of each input box, of the box's gradient (the sum of theirs)."""
    by_box = {}
    for k, a in through.items():
        by_box.setdefault(pic.graph.edges[k].src, []).append(k)
    for box, ks in by_box.items():
        total = sum(through[k] for k in ks)
        n = array_norm(total)
        facts = pic.facts.setdefault(box, {})
        facts["in_grad"] = n
        facts["in_parts"] = (sum(1 for k in ks if pic.arrived[k]), len(ks))
        if pic.graph.nodes[box].info.get("data"):       # data: backward sends it nothing (worked out here)
            for k in ks:
                pic.arrived[k] = False
            continue
        for k in ks:
            pic.shares[k] = float((through[k] * total).sum()) / n if n > 0 else 0.0
            pic.edge_source[k] = ("box", box)
        _, texts = S.fmt_sum(n, [pic.shares[k] for k in ks])
        for k, text in zip(ks, texts):
            pic.numbers[k] = text


def input_gradients(pic):
    """``facts["input_grads"]`` of every data input that a linear or matmul reads (one-hot
    characters, features) or an embedding looks up: [(t, ||dL/dx_t||)], per timestep.

    Data needs no gradient, so backward never computes one; it is computed here from the
    recorded gradient dZ of the op's output: x @ W.T + b gives dL/dx = dZ @ W, x @ W gives
    dZ @ W.T, and an embedding's rows get dZ itself (the gradient of each looked-up row E[x_t]).
    An input that holds every step (T, ...) is split along its first axis."""
    placed = pic.unrolled.placed
    into = placed.parents_of()
    found = {}
    for e in placed.edges:
        x, op = placed.nodes[e.src], placed.nodes[e.dst]
        if x.kind != "input" or op.kind != "op" or pic.grad(op.id) is None:
            continue
        dz = L.host_array(pic.grad(op.id))
        weight = {m.slot: placed.nodes[m.src] for m in into.get(op.id, ())}
        other = weight.get(1 - e.slot) if e.slot in (0, 1) else None
        value = L.host_array(other.outputs[0]["value"]) if other is not None and other.outputs and \
            other.outputs[0].get("value") is not None else None
        if op.op == "linear" and e.slot == 0 and value is not None:
            dx = dz @ value
        elif op.op == "matmul" and e.slot == 0 and value is not None and value.ndim == 2:
            dx = dz @ value.T
        elif op.op == "embedding" and e.slot == 1:
            dx = dz
        else:
            continue
        dx0, _, _ = found.get(x.id, (0, None, None))
        found[x.id] = (dx0 + dx, op.row, "embedding" if op.op == "embedding" else "x")
    first = {r.key: r.times[0] for r in pic.unrolled.rows if r.times}
    for node_id, (dx, row, kind) in found.items():
        x = placed.nodes[node_id]
        facts = pic.facts.setdefault(node_id, {})
        facts["input_grad_kind"] = kind
        if x.t is not None:
            facts["input_grads"] = [(x.t, array_norm(dx))]
        else:                       # (T, ...): the steps of the row that reads it, in order
            t0 = first.get(row, 1)
            facts["input_grads"] = [(t0 + k, array_norm(dx[k])) for k in range(dx.shape[0])]
    boxes = [f for node_id, f in pic.facts.items() if f.get("in_grad") is not None and
             node_id in pic.graph.nodes and pic.graph.nodes[node_id].info.get("data")]
    values = [n for facts in pic.facts.values() for _, n in facts.get("input_grads", ())]
    values += [f["in_grad"] for f in boxes]
    pic.input_grad_max = max(values) if len(values) > 1 else None
    for facts in pic.facts.values():
        if facts.get("input_grads") or facts in boxes:
            facts["input_grad_max"] = pic.input_grad_max


def _param_colours(pic):
    """One colour per parameter that has lanes (edges into the timesteps), in the order drawn."""
    for node in pic.graph.nodes.values():
        if node.kind == "param" and pic.unrolled.rows:
            pic.param_colour[node.id] = S.PARAM_COLOURS[len(pic.param_colour) % len(S.PARAM_COLOURS)]


def _boxes(pic):
    """Label rows, role and tooltip of every box."""
    u, opts = pic.unrolled, pic.opts
    placed = u.placed
    into = placed.parents_of()
    out_edges = u.graph.children_of()
    root_ids = {r for r, _ in u.graph.roots}
    out_counts, edges_out = {}, {}
    for e in placed.edges:
        out_counts[e.src] = out_counts.get(e.src, 0) + 1
        gs, gd = u.group_of.get(e.src, e.src), u.group_of.get(e.dst, e.dst)
        if gs != gd:
            edges_out.setdefault(gs, []).append(e)
    for node in u.graph.nodes.values():
        facts = pic.facts[node.id] = {**node.info, **pic.facts.get(node.id, {})}
        if node.kind == "op":
            grads = [pic.grad(node.id, i) for i in range(len(node.outputs))]
            where = "/".join(node.scope) or "top level"
            pic.boxes[node.id] = Box(L.op_lines(node, into, placed.nodes, grads, opts), _op_role(node, root_ids),
                                     f"{node.op} at {where}\n{node.doc}\nlocal derivative: {node.formula}")
        elif node.kind in ("param", "leaf", "input", "const", "cut"):
            if node.kind in ("param", "leaf"):
                _param_terms(pic, node, facts, out_edges, out_counts)
            shape = L.shape_text(node.outputs[0]['shape']) if node.outputs else ''
            pic.boxes[node.id] = Box(L.leaf_lines(node, facts, pic.grad(node.id), opts), node.kind,
                                     f"{node.kind}: {node.name or ''} {shape}")
            pic.boxes[node.id].border = pic.param_colour.get(node.id)
        elif node.kind == "anchor":
            row = u.rows[[r.key for r in u.rows].index(node.row)]
            pic.boxes[node.id] = Box([], "anchor", f"{row.label.replace(chr(10), ' ')}: every step reads its input "
                                                   f"projection W_ih x_t + b, one matmul for all steps")
        elif "zone" in node.info:
            pic.boxes[node.id] = Box(L.input_box_lines(node, facts, u.rows, opts), "input" if facts["data"] else
                                     "group", _input_tooltip(node, facts))
        else:
            _group_facts(pic, node, facts, edges_out)
            members = [placed.nodes[m] for m in node.members]
            role = {"cell": "cell", "readout": "readout", "pre": "projection", "post": "group", "layer": "layer",
                    "ellipsis": "ellipsis"}.get(node.part, "cell" if node.t is not None else "group")
            ops = [m.op for m in members if m.kind == "op"]
            pic.boxes[node.id] = Box(L.group_lines(node, facts, members, opts),
                                     "root" if facts.get("has_root") else role,
                                     f"{len(node.members)} nodes: {L.op_summary(ops, 20)}")


def _input_tooltip(node, facts):
    if facts.get("data"):
        return f"the data that goes in at step t = {node.t}" if node.t is not None else "steps not drawn"
    return (f"what the layer below hands up at step t = {node.t}: its h_t (both directions, joined), "
            f"multiplied by W_ih in the layer above") if node.t is not None else "steps not drawn"


def _op_role(node, root_ids):
    if node.id in root_ids:
        return "root"
    out = node.outputs[0] if len(node.outputs) == 1 else None
    if out is not None and out["shape"] == () and out["name"] and re.match(r"^(L|loss)", out["name"], re.I):
        return "loss"
    return "op"


def _param_terms(pic, node, facts, out_edges, out_counts):
    """Per-use gradient terms of a leaf: one per edge out of it (per timestep at cell level), as
    (label, printed share, arrived yet), listed by time."""
    g = pic.graph
    index = {id(e): k for k, e in enumerate(g.edges)}
    terms, uses_t, order, arrived = [], [], [], 0.0
    n_uses = sum(out_counts.get(m, 0) for m in node.members)
    for e in out_edges.get(node.id, ()):
        dst = g.nodes[e.dst]
        ts = dst.info.get("elided") or ([dst.t] if dst.t is not None else [])
        uses_t.extend((dst.row, t) for t in ts)
        if len(ts) == 1:
            label = f"t={ts[0]}"
        elif ts:
            label = f"t={ts[0]}\u2026{ts[-1]}"
        elif dst.part in ("pre", "anchor"):
            label = "all steps"
            facts["all_steps"] = True
        else:
            label = L.short(dst.op or dst.name or dst.id, 12)
        k = index[id(e)]
        terms.append((label, pic.numbers[k], pic.arrived[k]))
        if pic.arrived[k]:
            arrived += pic.shares[k]
        order.append((ts[0] if ts else float("inf"), len(order)))       # terms listed by time
    facts["terms"] = [term for _, term in sorted(zip(order, terms), key=lambda x: x[0])]
    facts["arrived_share"] = arrived
    facts["uses_t"] = sorted({t for _, t in uses_t})
    facts["uses_steps"] = len(set(uses_t))     # distinct (row, t): chunks and layers count apart
    facts["uses"] = n_uses


def _group_facts(pic, node, facts, edges_out):
    """What leaves a collapsed box (its named outputs, their gradients and values), its
    per-step state gradients (a layer box), and the bytes it keeps for backward."""
    placed, opts = pic.unrolled.placed, pic.opts
    roots = set(placed.roots)
    outs, grads, values = [], [], []
    leaving = {}
    for e in edges_out.get(node.id, ()):
        leaving.setdefault((e.src, e.src_index), []).append(e)
    for m in node.members:
        for i, out in enumerate(placed.nodes[m].outputs):
            if ((m, i) in leaving or (m, i) in roots) and out["name"]:
                outs.append(out["name"])
                grad = pic.grad(m, i)
                if grad is not None:
                    grads.append((out["name"], array_norm(grad)))
                if out.get("value") is not None:
                    values.append((out["name"], out["value"]))
        if any(r == m for r, _ in placed.roots):
            facts["has_root"] = True
    if not grads and opts.get("gradients"):
        total = {k: pic.grad(*k) for k in leaving if pic.grad(*k) is not None}
        if total:
            grads.append(("outputs", norm(total)))
    facts["out_names"], facts["out_grads"], facts["out_values"] = outs[:4], grads[:4], values[:3]
    if node.part == "layer" or node.kind == "ellipsis":
        ts = sorted({placed.nodes[m].t for m in node.members if placed.nodes[m].t is not None})
        row = next((placed.nodes[m].row for m in node.members if placed.nodes[m].t is not None), None)
        vals = []
        for t in ts:
            items = pic.state_norms.get((row, t))
            vals.append((t, items[0][1] if items else None))
        scale = S.GradScale([v for _, v in vals])
        facts["state_values"] = vals
        facts["state_norms"] = [(scale.colour(v), v) for _, v in vals]
    if opts.get("memory"):
        facts["saved_bytes"] = sum(placed.nodes[m].info.get("saved_bytes", 0) for m in node.members)


# ================================================================================ highlight
def resolve(g, spec):
    """The (node id, output index) pairs a highlight names in the placed graph ``g``: a pair
    itself (a tensor already found by trace.find), a parameter or tensor name, an alias
    ("W_hh"), or "h_<t>"/"c_<t>" (the state made at step t, in every row)."""
    specs = spec if isinstance(spec, list) else [spec]
    found = []
    for s in specs:
        if isinstance(s, tuple):
            found.append(s)
            continue
        if not isinstance(s, str):
            raise TypeError(f"highlight: expected a Tensor, a parameter or tensor name, or 'h_<t>', got {type(s).__name__}")
        hits = []
        for node in g.nodes.values():
            for i, out in enumerate(node.outputs):
                name = out["name"] or node.name
                if name is not None and (name == s or (node.kind in ("param", "leaf") and alias(name) == s)):
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

    down = reach([n for n, _ in targets], out, "dst")
    up = reach([n for n, _ in sources], into, "src")
    nodes = down & up
    edges = [e for e in grad_edges if e.src in nodes and e.dst in nodes]
    return nodes, edges


def mark_paths(pic, spec, spec_from=None):
    """Outline every box on a gradient path from the loss (or ``spec_from``) to ``spec``."""
    placed = pic.unrolled.placed
    targets = resolve(placed, spec)
    sources = resolve(placed, spec_from) if spec_from is not None else list(placed.roots)
    nodes, edges = gradient_paths(placed, targets, sources)
    if not nodes:
        pic.notes.append("highlight: no gradient path leads from the loss to the chosen tensor")
    mark(pic, nodes, edges)
    # how many highlighted ops read each parameter (the W_hh count of the lecture's question)
    reads = {}
    for e in placed.edges:
        src = placed.nodes[e.src]
        if src.kind in ("param", "leaf") and e.dst in nodes:
            reads[src.name or src.id] = reads.get(src.name or src.id, 0) + 1
    target_names = ", ".join(_pretty_target(placed, n, i) for n, i in targets)
    source_names = ", ".join(_pretty_target(placed, n, i) for n, i in sources)
    pic.highlight_summary = (source_names, target_names, reads,
                             len([n for n in nodes if placed.nodes[n].kind == "op"]))


def mark(pic, nodes, edges, colour=S.HIGHLIGHT):
    """Outline the boxes that stand for placed ``nodes`` in ``colour``, and give the edges that
    stand for placed ``edges`` an underlay of that colour (drawn under the edge, whose own
    colour stays). Returns the ids of the outlined boxes."""
    group_of, hidden = pic.unrolled.group_of, pic.unrolled.hidden
    boxes = {group_of.get(n, n) for n in nodes}
    for gid in list(boxes & set(hidden)):
        boxes |= set(hidden[gid])
    wanted = {id(e) for e in edges}
    for node_id, box in pic.boxes.items():
        if node_id in boxes:
            box.border, box.highlight = colour, True
    for k, e in enumerate(pic.graph.edges):
        if any(id(m) in wanted for m in e.info.get("members", [e])):
            pic.underlays[k] = colour
            if pic.marks:           # styled already: the underlay alone marks it
                pic.marks[k].highlight, pic.marks[k].highlight_colour = True, colour
    return boxes


def _pretty_target(g, nid, i):
    node = g.nodes[nid]
    out = node.outputs[i] if i < len(node.outputs) else {}
    name = out.get("name") or node.name or node.op or nid
    return f"{name} (t={node.t})" if node.t is not None and not re.search(r"\d", name) else name


# ================================================================================ titles and edges
def cluster_labels(pic):
    """Each timestep's title: t, then ||dL/dh_t|| (and ||dL/dc_t||), then the bytes it keeps for backward."""
    u, opts = pic.unrolled, pic.opts
    members = {}
    for node_id, cid in u.cluster_of.items():
        members.setdefault(cid, []).append(u.graph.nodes[node_id])
    for cid, c in u.clusters.items():
        ri, t = c.order
        row = u.rows[ri]
        lines = [(f"t = {t}", "big")]
        if row.part_name:                       # a truncated-BPTT chunk: which one
            lines.append((row.part_name, "small"))
        if opts.get("gradients"):
            norms = pic.state_norms.get((row.key, t), [])
            for (name, n), (sent, whole) in list(zip(norms, pic.state_parts.get((row.key, t), [])))[:2]:
                base = re.sub(r"_?\{?-?\d+\}?$", "", name) or name
                if n is not None and (sent == whole or not opts.get("stepping")):
                    lines.append((f"\u2016\u2202L/\u2202{base}_{t}\u2016 = {S.fmt(n)}", "grad"))
                elif opts.get("stepping") and sent:
                    lines.append((f"\u2202L/\u2202{base}_{t}: {sent} of {whole} parts so far", "small"))
                elif opts.get("stepping"):
                    lines.append((f"{base}_{t}: not reached yet", "small"))
                else:
                    lines.append((f"no gradient reaches {base}_{t}", "small"))
        if opts.get("memory"):
            total = 0
            for n in members.get(cid, ()):
                total += (pic.facts[n.id].get("saved_bytes") or 0) if n.kind == "group" else \
                    n.info.get("saved_bytes", 0)
            lines.append((f"saved for backward: {S.fmt_bytes(total)}", "small"))
        pic.cluster_labels[cid] = lines
        where = row.label.replace("\n", " ") if row.label else ""
        pic.cluster_tooltips[cid] = f"timestep t = {t}{' of ' + where if where else ''}"


def _row_label_lines(row, opts):
    """A row's label; with gradients, which way its arrows (the gradient) run."""
    lines = [(row.label or "loop", "big")]
    if opts.get("gradients") and row.zone is None:
        arrow = "\u2192" if row.reverse else "\u2190"
        lines.append((f"arrows: the gradient, flowing {arrow}", "main"))
    return lines


def edge_marks(pic):
    """Colour, width, arrow, number and tooltip of every edge.

    Without gradients, arrows point forward (data flow). With gradients, an edge that carries a
    gradient points backward (dL/d its source flows against the data); its width (and colour, on
    one log scale) grows with its share of its source's gradient, the number it shows. A
    parameter's lanes keep the parameter's colour. An edge that carries nothing, a detach()
    cut included, has no arrowhead. In a step-through frame an edge whose gradient is still to
    come points backward too, in light grey, so no arrow turns round from one frame to the next."""
    opts, g = pic.opts, pic.graph
    gradients = opts.get("gradients")
    pic.scale = opts.get("scale") or S.GradScale([abs(x) for x in pic.shares if x is not None])
    parallel = {}
    for e in g.edges:
        if e.kind == "state":
            parallel[(e.src, e.dst)] = parallel.get((e.src, e.dst), 0) + 1
    pic.marks = []
    for k, e in enumerate(g.edges):
        colour, width, style = S.EDGE.get(e.kind, S.EDGE["data"])
        if e.src in pic.param_colour:
            colour, width = pic.param_colour[e.src], S.LANE_WIDTH
        m = Mark({"color": colour, "penwidth": width, "style": style})
        # an LSTM's h and c run side by side: each says which it is
        name = e.info.get("state_name") if parallel.get((e.src, e.dst), 0) > 1 else None
        if e.kind == "cut":
            m.label, m.fontcolor = "detach() \u2702", "#444444"
        elif name and not gradients:
            m.label = name
        if gradients and e.kind != "cut":
            _gradient_style(pic, k, e, m, name)
        if k in pic.underlays:
            m.highlight, m.highlight_colour = True, pic.underlays[k]
            m.attrs["penwidth"] = max(float(m.attrs["penwidth"]), 1.5)
        if gradients:
            m.attrs["dir"] = "back" if m.back else "none"
        m.head = not gradients
        m.tooltip = _edge_tooltip(pic, k, e)
        pic.marks.append(m)


def _gradient_style(pic, k, e, m, state_name):
    share = pic.shares[k]
    if share is not None and pic.arrived[k]:
        m.back, m.share = True, share
        if e.src not in pic.param_colour:
            m.attrs["color"] = pic.scale.colour(abs(share))
        m.attrs["penwidth"] = pic.scale.width(abs(share))
        if share == 0:
            m.attrs["style"] = "dotted"
        if pic.opts.get("edge_labels", True):
            m.label, m.fontcolor = _edge_number(pic, k, e, state_name), "#222222"
    elif share is not None:                 # a step-through frame: still to come
        m.back = True
        m.attrs["color"], m.attrs["penwidth"] = S.PENDING, 1.0
    else:
        m.attrs["color"], m.attrs["penwidth"] = S.ZERO_GRAD, 1.0


def _edge_number(pic, k, e, state_name=None):
    """The number on an edge: its share of its source's gradient; "W_hh +0.052" on a parameter's
    use (that use's term of dL/dW_hh), "c 0.012" on one of two parallel state edges."""
    text = pic.numbers[k]
    if e.kind == "param":
        src = pic.graph.nodes[e.src]
        return f"{alias(src.name) or src.name or 'param'} {S.signed(text)}"
    if state_name:
        return f"{state_name} {text}"
    return text


def _edge_tooltip(pic, k, e):
    words = {"state": "the state carried to the next step", "param": "a use of the parameter",
             "cut": "detach(): no gradient crosses", "accum": "a number carried across steps"}.get(e.kind, "data")
    text = f"{describe(pic, e.src)} \u2192 {describe(pic, e.dst)}: {words}"
    if pic.shares[k] is not None and pic.arrived[k]:
        text += f"\nbackward: carries {pic.numbers[k]} of the gradient of {describe(pic, e.src)}"
    return text


# ================================================================================ draw_graph's picture
def annotate_op_graph(unrolled, gradients=None, opts=None, notes=(), title=None):
    """The Picture of draw_graph's op-and-tensor graph (unroll.op_graph): ops small and grey,
    tensors with name, shape, values and gradient, leaves styled by kind."""
    opts = dict(opts or {})
    pic = Picture(unrolled, gradients, opts)
    pic.notes = list(notes) + pic.notes
    pic.title = title or ""
    placed = unrolled.placed
    into = placed.parents_of()
    for node in pic.graph.nodes.values():
        facts = pic.facts[node.id] = dict(node.info)
        if node.kind == "ellipsis":
            pic.boxes[node.id] = Box([("\u22ef", "big"), (f"{facts['dropped']} earlier ops and leaves not drawn",
                                                          "main")], "ellipsis", "ops and leaves not drawn")
        elif node.kind == "op":
            traced = facts["traced"]
            lines = [(L.op_title(traced, into, placed.nodes), "main")]
            if node.scope:
                lines.append(("/".join(node.scope), "small"))
            if opts.get("formulas") and traced.formula:
                lines.append((traced.formula, "formula"))
            pic.boxes[node.id] = Box(lines, "opnode",
                                     f"{traced.op}: {traced.doc}\nlocal derivative: {traced.formula}")
        elif node.kind == "tensor":
            out, (op_id, i) = node.outputs[0], facts["of"]
            role = "root" if facts["root"] else ("loss" if out["shape"] == () and out["name"]
                                                 and re.match(r"^(L|loss)", out["name"], re.I) else "tensor")
            pic.boxes[node.id] = Box(_tensor_lines(out, pic.grad(op_id, i), opts, facts["index"]), role,
                                     f"output {i} of {facts['op']}")
        else:
            pic.boxes[node.id] = Box(L.leaf_lines(node, facts, pic.grad(node.id), opts), node.kind,
                                     f"{node.kind} {node.name or ''}")
    for e in pic.graph.edges:
        if e.info.get("output"):
            m = Mark({"color": S.EDGE["data"][0], "penwidth": S.EDGE["data"][1]})
        else:
            m = Mark(dict(zip(("color", "penwidth", "style"), S.EDGE.get(e.kind, S.EDGE["data"]))))
        if e.kind == "cut":
            m.label = "detach() \u2702 no gradient"
        m.tooltip = f"{describe(pic, e.src)} \u2192 {describe(pic, e.dst)}"
        pic.marks.append(m)
    pic.legend = op_graph_legend(pic)
    pic.graph_attrs["nslimit"] = "5"   # dot's x-placement converges long before its default limit on big graphs
    return pic


def _tensor_lines(out, grad, opts, index):
    """An op's output: its name (if any) and shape; unnamed outputs show the shape only."""
    name = out["name"]
    shape = L.shape_text(out["shape"])
    if name:
        lines = [(f"{name}  {shape}", "title")]
    else:
        lines = [(shape if index is None else f"[{index}]  {shape}", "main")]
    if opts.get("show_values") and out.get("value") is not None:
        lines.append((L.summarize(out["value"]), "value"))
    if (opts.get("gradients") or opts.get("show_grads")) and grad is not None:
        a = L.host_array(grad)
        text = L.summarize(a) if a.size <= 4 else f"\u2016\u00b7\u2016 = {S.fmt(array_norm(a))}"
        lines.append((f"grad {text}", "grad"))
    return lines
