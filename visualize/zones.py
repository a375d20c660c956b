"""Stage 2, unroll (continued): the inputs of stacked layers, drawn one box per timestep.

A stacked network runs, between two layers, ops that take all timesteps at once: the output
stack of each layer below, the concat of its two directions, and each next layer's input
projection W_ih x + b with the unbind of its steps. At level "cell" they are drawn as the
lecture notes draw a stacked RNN: one input box per timestep between the layers ([h→_t ; h←_t]),
fed by the cells below at t and feeding the cells above at t; likewise x_t under the first
layer. The weights of a projection point into the band of the row they project for (its
anchor), beside it. collapse.py uses this module.
"""
from .graph import Node
from .unroll import Row, time_id


class Zone:
    """Ops that run once for all timesteps between stacked layers, drawn at level "cell" as one
    input box per step (the lecture's stacked-RNN figure): the output stacks of the layers
    below, what joins them (concat), and each next layer's input projection W_ih x + b with its
    unbind into steps; or, under the first layer, the data x and the projections that read it.

    ``source``: the placed node whose output the projections read; ``nodes``: every placed node
    of the zone; ``rows_in``/``rows_out``: the rows below and above; ``weights``: row key -> the
    W_ih its projection multiplies by."""

    def __init__(self, zid, source, nodes, rows_in, rows_out, weights):
        self.id, self.source, self.nodes = zid, source, nodes
        self.rows_in, self.rows_out, self.weights = rows_in, rows_out, weights


def input_zones(g, rows):
    """The Zones of a placed graph: one per tensor that rows' input projections read, when the
    ops around it run for all steps and lead nowhere else."""
    by_key = {r.key: r for r in rows}
    into, out = g.parents_of(), g.children_of()
    pre = {}
    for node in g.nodes.values():
        if node.kind == "op" and node.part == "pre" and node.row in by_key:
            pre.setdefault(node.row, []).append(node)
    readers, weights = {}, {}
    for key, ops in pre.items():
        linears = [n for n in ops if n.op == "linear"]
        if len(linears) != 1 or [n.op for n in ops].count("unbind") != 1:
            continue
        slots = {e.slot: e for e in into[linears[0].id]}
        if 0 not in slots or 1 not in slots or g.nodes[slots[1].src].kind not in ("param", "leaf"):
            continue
        readers.setdefault(slots[0].src, []).append(key)
        weights[key] = slots[1].src
    zones = []
    roots = {n for n, _ in g.roots}
    for source, keys in readers.items():
        nodes = {n.id for k in keys for n in pre[k]}
        rows_in = _upstream(g, source, into, nodes)
        if rows_in is None or nodes & roots or not _sealed(g, nodes, keys, into, out):
            continue
        nodes |= {e.src for e in g.edges if e.dst in nodes and g.nodes[e.src].kind == "const"}
        order = [r.key for r in rows]
        zone = Zone(len(zones), source, nodes, sorted(rows_in, key=order.index), sorted(keys, key=order.index),
                    {k: weights[k] for k in keys})
        zone.source_name = g.nodes[source].name if g.nodes[source].kind == "input" else None
        zones.append(zone)
    return zones


def _upstream(g, source, into, nodes):
    """Add to ``nodes`` what makes ``source`` from the rows below (their output stacks and what joins
    them) or ``source`` itself when it is data; returns the rows below, or None when something
    else (a parameter, a timed op) takes part."""
    rows_in, stack = set(), [source]
    while stack:
        n = stack.pop()
        if n in nodes:
            continue
        node = g.nodes[n]
        nodes.add(n)
        if node.kind in ("input", "const"):
            continue
        if node.kind != "op" or node.t is not None:
            return None
        for e in into.get(n, ()):
            src = g.nodes[e.src]
            if node.op == "stack" and node.part == "post" and src.t is not None:
                rows_in.add(src.row)
            elif src.t is None and src.kind not in ("param", "leaf"):
                stack.append(e.src)
            else:
                return None
    return rows_in


def _sealed(g, nodes, rows_out, into, out):
    """Does every edge out of the zone go into a step of one of ``rows_out`` (from its unbind), and
    every edge into it come from the zone, a step, a parameter or a constant?"""
    for n in nodes:
        for e in out.get(n, ()):
            dst = g.nodes[e.dst]
            if e.dst not in nodes and not (dst.t is not None and dst.row in rows_out and g.nodes[n].op == "unbind"):
                return False
        for e in into.get(n, ()):
            src = g.nodes[e.src]
            if e.src not in nodes and src.t is None and src.kind not in ("param", "leaf", "const"):
                return False
    return True


def with_input_rows(rows, zones):
    """The rows with one row of input boxes per zone, right under the first row it feeds; the
    inputs of a truncated-BPTT chunk continue, on one line, those of the chunk before."""
    out = list(rows)
    feeding = {}                                # a row -> the row of input boxes under it
    for z in zones:
        row = Row(("inputs", str(z.id)), 0)
        row.zone = z
        row.times = sorted({t for r in rows if r.key in z.rows_out for t in r.times})
        below = [r for r in rows if r.key in z.rows_in]
        if below:
            layer = below[0].layer
            row.line_label = f"layer {layer + 1 if layer is not None else ''} input".replace("  ", " ")
        else:
            row.line_label = "input"
        first = min((r for r in rows if r.key in z.rows_out), key=out.index)
        out.insert(out.index(first), row)
        feeding[first.key] = row
    for key, row in feeding.items():
        above = next(r for r in rows if r.key == key)
        if above.follows is not None and above.follows.key in feeding:
            row.follows = feeding[above.follows.key]
    for i, r in enumerate(out):
        r.order = i
    return out


def input_box(zone, t, shown, blocks):
    key = ("inputs", str(zone.id))
    if t in shown[key]:
        return f"in{zone.id}_t{time_id(t)}"
    return f"etc_in{zone.id}_{time_id(blocks[key][t][0])}"


def zone_boxes(zone, out, rows, row_index, shown, blocks):
    """Add the input boxes of a zone (one per shown step, one per run of steps not drawn) and the
    anchors its weights point into; returns the boxes' ids."""
    key = ("inputs", str(zone.id))
    row = rows[row_index[key]]
    ids = []
    for t in row.times:
        box_id = input_box(zone, t, shown, blocks)
        if box_id in out.nodes:
            continue
        if t in shown[key]:
            box = Node(box_id, "group")
            box.t, box.part = t, "input"
        else:
            box = Node(box_id, "ellipsis")
            box.part = "ellipsis"
            box.info["elided"] = blocks[key][t]
        box.row, box.members = key, []
        box.name = zone.source_name
        box.info.update(zone=zone.id, rows_in=[rows[row_index[k]] for k in zone.rows_in], data=not zone.rows_in)
        out.add(box)
        ids.append(box_id)
    for rkey in zone.rows_out:
        anchor = Node(f"anchor_r{row_index[rkey]}", "anchor")
        anchor.row, anchor.part, anchor.members = rkey, "anchor", []
        out.add(anchor)
    return ids


def zone_ends(g, e, group_of, zone_of, shown, blocks, row_index):
    """Where an edge into or out of a Zone is drawn: (from box, to box, what it passes through),
    False to leave it out (inside the zone, or a constant it reads), None if it touches no zone.

    A step's h going up into the ops between layers: from its cell to the input box of that
    step; the projected input of step t coming out: from the input box of step t into the cell,
    through W_ih (its gradient is drawn as dL/d(input) = dZ W_ih); a weight or bias the zone
    reads: into the band of the row it projects for (its anchor)."""
    sz, dz = zone_of.get(e.src), zone_of.get(e.dst)
    if sz is None and dz is None:
        return None
    if sz is not None and dz is not None:
        return False
    if dz is not None:
        src = g.nodes[e.src]
        if src.t is not None:
            return group_of.get(e.src, e.src), input_box(dz, src.t, shown, blocks), None
        if src.kind in ("param", "leaf"):
            return e.src, f"anchor_r{row_index[g.nodes[e.dst].row]}", "param"
        return False
    dst = g.nodes[e.dst]
    if dst.t is None or dst.row not in sz.weights:
        return False
    return input_box(sz, dst.t, shown, blocks), group_of.get(e.dst, e.dst), sz.weights[dst.row]
