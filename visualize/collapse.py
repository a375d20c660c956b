"""Stage 2, unroll (continued): the placed graph at a level of detail, within max_nodes.

* ``"op"``: every primitive op;
* ``"cell"``: one box per cell call and timestep (the notes' "representational shortcut"),
  the ops between stacked layers as one input box per timestep (zones.py);
* ``"layer"``: one box per layer and direction, all timesteps inside.

Elided timesteps (``timesteps=``) fold into one "..." box per row; ``fit`` chooses a
coarser level or fewer steps when a picture would exceed ``max_nodes`` boxes. The result,
an ``Unrolled``, also names the clusters (one per row and shown timestep). ``op_graph``
is the other arrangement: draw_graph's ops and tensors, without time.
"""
from .graph import Edge, Graph, Node
from .names import safe_id
from .unroll import DEFAULT_MAX_NODES, LEVELS, Cluster, Unrolled, time_id
from .zones import input_zones, with_input_rows, zone_boxes, zone_ends

MAX_END_STEPS = 6      # automatic elision shows at most this many steps at each end


def shown_times(times, timesteps):
    """The timesteps drawn: all of them, or the first and last few (``timesteps``: int k for
    k at each end, a pair (first, last), or an explicit collection of t values)."""
    if timesteps is None:
        return list(times)
    if isinstance(timesteps, bool):
        raise TypeError(f"timesteps: expected an int, a pair (first, last) or a list of t, got {timesteps!r}")
    if isinstance(timesteps, int):
        if timesteps < 1:
            raise ValueError(f"timesteps: expected a positive number of steps to show at each end, got {timesteps}")
        first = last = timesteps
    elif isinstance(timesteps, tuple) and len(timesteps) == 2 and all(isinstance(x, int) for x in timesteps):
        first, last = timesteps
        if first < 0 or last < 0 or first + last == 0:
            raise ValueError(f"timesteps: expected (first, last) counts >= 0 with at least one step, got {timesteps}")
    else:
        try:
            wanted = {int(x) for x in timesteps}
        except TypeError:
            raise TypeError(f"timesteps: expected an int, a pair (first, last) or a list of t, got {timesteps!r}") from None
        return [t for t in times if t in wanted]
    if first + last >= len(times):
        return list(times)
    return list(times[:first]) + list(times[len(times) - last:])


def _group_id(node, ri, level, shown, blocks, rows):
    """The box a placed node is drawn in at ``level`` (None: drawn as itself), its kind, label and facts."""
    if ri is not None and node.t is not None and node.t not in shown[node.row]:
        block = blocks[node.row][node.t]
        return f"etc_r{ri}_{time_id(block[0])}", "ellipsis", f"{len(block)} steps", {"elided": block}
    if level == "layer" and ri is not None:
        return f"layer_r{ri}", "group", rows[ri].label or "loop", {"level": "layer"}
    if level == "cell" and ri is not None and node.t is not None and node.kind in ("op", "input", "const", "cut"):
        part = node.part or "cell"
        if node.kind != "cut" and (node.kind != "input" or part != "cell"):   # x_t and cuts stay visible
            return f"cell_r{ri}_t{time_id(node.t)}_{safe_id(part, 20)}", "group", part, {"level": "cell"}
    if level == "cell" and ri is not None and node.part in ("pre", "post"):
        return f"{node.part}_r{ri}", "group", node.part, {"level": "cell"}
    return None, None, None, None


def collapse(g, rows, level="op", timesteps=None):
    """An Unrolled at ``level`` with timesteps outside ``timesteps`` folded into one box per row.

    At level "cell", the ops between stacked layers (and a layer's input projection of its data)
    are drawn as one input box per timestep, in a row of its own between the layers (see Zone)."""
    if level not in LEVELS:
        raise ValueError(f"level: expected one of {', '.join(repr(x) for x in LEVELS)}, got {level!r}")
    zones = input_zones(g, rows) if level == "cell" else []
    rows = with_input_rows(rows, zones)
    row_index = {r.key: i for i, r in enumerate(rows)}
    shown = {r.key: set(shown_times(r.times, timesteps)) for r in rows}
    blocks = {r.key: _blocks([t for t in r.times if t not in shown[r.key]]) for r in rows}
    group_of, groups = {}, {}
    zone_of = {n: z for z in zones for n in z.nodes}
    for node in g.nodes.values():
        if node.id in zone_of:
            group_of[node.id] = f"zone{zone_of[node.id].id}"
            continue
        gid, kind, label, info = _group_id(node, row_index.get(node.row), level, shown, blocks, rows)
        if gid is None:
            continue
        if gid not in groups:
            grp = groups[gid] = Node(gid, kind, scope=node.scope)
            grp.members = []
            grp.row, grp.t, grp.part = node.row, node.t, node.part
            if kind == "ellipsis":
                grp.t, grp.part = None, "ellipsis"
            elif info.get("level") == "layer":
                grp.t, grp.part = None, "layer"
            grp.name = label
            grp.info.update(info)
        groups[gid].members.append(node.id)
        group_of[node.id] = gid
    out = Graph()
    out.roots = [(group_of.get(n, n), i) for n, i in g.roots]
    out.notes = list(g.notes)
    hidden = {}
    for node in g.nodes.values():
        gid = group_of.get(node.id)
        if node.id in zone_of and gid not in hidden:
            hidden[gid] = zone_boxes(zone_of[node.id], out, rows, row_index, shown, blocks)
        elif gid is None:
            out.add(node)
        elif gid not in out.nodes and gid not in hidden:
            out.add(groups[gid])
    for grp in groups.values():
        grp.outputs = []
        grp.info["member_ops"] = [g.nodes[m].op for m in grp.members if g.nodes[m].kind == "op"]
    _merge_edges(g, out, group_of, zone_of, shown, blocks, row_index)
    unrolled = Unrolled(out, g, rows, group_of, level)
    unrolled.hidden = hidden
    return unrolled


def _merge_edges(g, out, group_of, zone_of=None, shown=None, blocks=None, row_index=None):
    """One edge between two boxes per kind (an LSTM's h and c stay two), standing for its members."""
    merged = {}
    for e in g.edges:
        ends = zone_ends(g, e, group_of, zone_of, shown, blocks, row_index) if zone_of else None
        if ends is False:
            continue
        a, b, through = ends if ends else (group_of.get(e.src, e.src), group_of.get(e.dst, e.dst), None)
        if a == b:
            continue
        kind = "param" if through == "param" else e.kind
        key = (a, b, kind)
        if e.kind == "state":          # h and c of an LSTM stay two edges, each with its own gradient
            key += (e.src, e.src_index)
        m = merged.get(key)
        if m is None:
            m = Edge(a, e.src_index if a == e.src else 0, b, e.slot if b == e.dst else 0, kind)
            m.info["members"] = []
            if e.kind == "state":
                m.info["state_name"] = g.nodes[e.src].outputs[e.src_index]["name"]
            if through not in (None, "param"):
                m.info["through"] = through
            merged[key] = m
            out.connect(m)
        m.info["members"].append(e)
    for m in out.edges:
        if len(m.info["members"]) == 1:
            m.info.update({k: v for k, v in m.info["members"][0].info.items() if k != "members"})


def _blocks(times):
    """{t: its run}: each contiguous run of elided (sorted) timesteps gets one box."""
    out, run = {}, []
    for t in times + [None]:
        if run and (t is None or t != run[-1] + 1):
            for s in run:
                out[s] = run
            run = []
        if t is not None:
            run.append(t)
    return out


def fit(g, rows, level, timesteps, max_nodes):
    """Collapse at ``level``; above ``max_nodes``, try coarser levels and fewer timesteps.
    Returns an Unrolled with its clusters."""
    if level not in LEVELS:
        raise ValueError(f"level: expected one of {', '.join(repr(x) for x in LEVELS)}, got {level!r}")
    if not isinstance(max_nodes, int) or max_nodes < 10:
        raise ValueError(f"max_nodes: expected an int >= 10, got {max_nodes!r}")
    unrolled = _fit(g, rows, level, timesteps, max_nodes)
    if not rows:
        unrolled.notes.append("no timestep scopes (tg.scope(\"t=<t>\")) in this graph: drawn without the time layout")
    _clusters(unrolled)
    return unrolled


def _fit(g, rows, level, timesteps, max_nodes):
    start = LEVELS.index(level) if rows else 0
    n_op = None
    for lv in (LEVELS[start:] if rows else ["op"]):
        u = collapse(g, rows, lv if rows else "op", timesteps)
        n_op = n_op or len(u.graph)
        if len(u.graph) <= max_nodes:
            if rows and lv != level:
                u.notes.append(f"{n_op} nodes at level \u201c{level}\u201d exceed max_nodes={max_nodes}: "
                               f"drawn at level \u201c{lv}\u201d")
            return u
        if lv == "op" and rows and level == "op":
            continue
        k = _fitting_steps(u.graph, rows, max_nodes)
        if k is not None:
            u2 = collapse(g, rows, lv, k if timesteps is None else _narrow(timesteps, k))
            if len(u2.graph) <= max_nodes:
                if lv != level:
                    u2.notes.append(f"{n_op} nodes at level \u201c{level}\u201d exceed max_nodes={max_nodes}: "
                                    f"drawn at level \u201c{lv}\u201d")
                u2.notes.append(f"only the first and last {k} timesteps are drawn (max_nodes={max_nodes})")
                return u2
    return _truncate(u, max_nodes, n_op)


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


def _truncate(u, max_nodes, n_total):
    """Last resort for graphs without time structure: the nodes nearest the output, and a note."""
    dg = u.graph
    keep = list(dg.nodes)[-(max_nodes - 1):]
    keep_set = set(keep)
    dropped = [n for n in dg.nodes if n not in keep_set]
    out = Graph()
    out.roots = list(dg.roots)
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
            m.info = dict(e.info)
            out.connect(m)
        else:
            out.connect(e)
    out.notes.append(f"{n_total} nodes exceed max_nodes={max_nodes} and have no timesteps to fold: "
                     f"only the {len(keep)} nodes nearest the output are drawn")
    return Unrolled(out, u.placed, u.rows, u.group_of, u.level)


def _clusters(u):
    """One cluster per shown (row, t): the box around a timestep."""
    row_index = {r.key: i for i, r in enumerate(u.rows)}
    groups = {}
    for node in u.graph.nodes.values():
        if node.t is not None and node.row in row_index and node.kind != "ellipsis" and \
                u.rows[row_index[node.row]].zone is None:
            groups.setdefault((row_index[node.row], node.t), []).append(node)
    for (ri, t), nodes in sorted(groups.items()):
        cid = f"cluster_r{ri}_t{t if t >= 0 else 'm' + str(-t)}"
        u.clusters[cid] = Cluster(cid, "reverse" if u.rows[ri].reverse else "time", (ri, t))
        for n in nodes:
            u.cluster_of[n.id] = cid


def op_graph(g, max_nodes=DEFAULT_MAX_NODES):
    """Every op followed by one "tensor" node per output (micrograd's draw_dot); above
    ``max_nodes`` boxes, the nodes nearest the output and one "..." box. ``g``: a placed graph."""
    boxes = {n.id: 1 + (len(n.outputs) if n.kind == "op" else 0) for n in g.nodes.values()}
    total = sum(boxes.values())
    keep, size = set(), 0
    for node in reversed(list(g.nodes.values())):
        if total > max_nodes and size + boxes[node.id] > max_nodes - 1:     # one box left for the "..."
            break
        size += boxes[node.id]
        keep.add(node.id)
    dg = Graph()
    dg.roots = list(g.roots)
    dropped = len(g.nodes) - len(keep)
    if dropped:
        etc = dg.add(Node("etc_earlier", "ellipsis", name=f"{dropped} earlier nodes"))
        etc.info["dropped"] = dropped
        ops = sum(1 for n in g.nodes.values() if n.kind == "op")
        dg.notes.append(f"the whole graph takes {total} boxes ({ops} ops, their outputs and {len(g.nodes) - ops} "
                        f"leaves), which exceed max_nodes={max_nodes}: only the {len(keep)} ops and leaves nearest "
                        f"the output are drawn ({size} boxes); for recurrent graphs, draw_bptt(loss, level=\"cell\") "
                        f"folds them by timestep")
    out_id = _op_and_tensor_nodes(g, dg, keep)
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
        edge = dg.connect(Edge(src, 0, e.dst, e.slot, e.kind))
        edge.origin = e.origin
    return Unrolled(dg, g, [], {}, "graph")


def _op_and_tensor_nodes(g, dg, keep):
    children = g.children_of()
    root_ids = {r for r, _ in g.roots}
    out_id = {}
    for node in g.nodes.values():
        if node.id not in keep:
            continue
        if node.kind != "op":
            copy = dg.add(Node(node.id, node.kind, name=node.name, outputs=node.outputs))
            copy.info = dict(node.info)
            edges = children.get(node.id, ())
            copy.info["uses"] = len(edges)
            copy.info["uses_t"] = sorted({g.nodes[e.dst].t for e in edges if g.nodes[e.dst].t is not None})
            out_id[(node.id, 0)] = node.id
            continue
        op = dg.add(Node(node.id, "op", op=node.op, scope=node.scope, formula=node.formula, doc=node.doc))
        op.info["traced"] = node
        for i, out in enumerate(node.outputs):
            tid = f"{node.id}_y{i}"
            t = dg.add(Node(tid, "tensor", name=out["name"], outputs=[out]))
            t.info.update(of=(node.id, i), op=node.op, index=i if len(node.outputs) > 1 else None,
                          root=node.id in root_ids and i in node.info.get("root_outputs", []))
            edge = dg.connect(Edge(node.id, 0, tid, 0, "data"))
            edge.info["output"] = True
            out_id[(node.id, i)] = tid
    return out_id
