"""Where every box goes in the unrolled picture: a grid of timesteps (columns) and layers (rows).

Graphviz's ``dot`` reorders clusters to reduce crossings, so it cannot promise that
t=3 is drawn right of t=2. The unrolled layout is therefore computed here, and
Graphviz only routes the edges (``neato -n2``, which keeps the given positions):

* each (row, t) block is laid out once with a small layered layout (longest-path
  layers, barycentre ordering, then coordinates), inputs at the bottom;
* blocks go into columns by t (left to right) and rows by layer and direction
  (bottom to top); every step of a row uses the same layer heights, so the same
  op sits at the same height in every step and state edges run from t to t+1;
* parameters and initial states sit in a column at the left, at the height of the
  ops that read them, so each fans out once to every step;
* the remaining nodes (input projections, output stacks, the loss) are layered
  above and below the rows, each centred over the nodes it connects to.

Sizes are estimated from the label text (no Graphviz call), so the layout, and the
DOT text, is the same on every machine.
"""
import unicodedata

from .graph import Node
from .labels import alias
from .route import Grid, place_label, route
from .style import clean

GAP_X = 22          # between boxes in a layer (points)
GAP_Y = 30          # between layers
COL_GAP = 34        # between timestep columns
MARGIN = 14         # inside a cluster
CORRIDOR0 = 8       # the bus corridor at a block's left: first lane's offset
LANE_X = 6          # between the vertical lanes of two parameters
LANE_Y = 7          # between two parameters' horizontal lanes under a row
LANE_Y_GRAD = 20    # ... when the lanes carry gradient numbers ("W_hh += 0.58", above each lane)
PARALLEL_GAP = 12   # between the h and c edges of an LSTM
FONT_SIZE = {"title": 15, "big": 18, "main": 14, "small": 11, "formula": 11, "grad": 12, "value": 11, "warn": 12}


BOLD = {"title", "big", "grad", "warn"}
NARROW = set("ilj|!.,:;' ")
SEMI = set("ftr()[]{}-/\\\"`")
WIDE = set("mwMW@%")


def char_width(c):
    """Width of one character in units of the font size (DejaVu/Helvetica-like, rounded up)."""
    if c in NARROW:
        return 0.34
    if c in SEMI:
        return 0.44
    if c in WIDE:
        return 0.96
    if c.isascii():
        return 0.74 if c.isupper() else 0.64
    if unicodedata.east_asian_width(c) in ("W", "F"):
        return 1.08
    return 0.8


def text_width(text, font="main"):
    """Width in points of a row of text as the renderer draws it (cut to MAX_TEXT characters)."""
    size = FONT_SIZE.get(font, 14) * (1.1 if font in BOLD else 1.0)
    return max(sum(char_width(c) for c in part) for part in clean(text).split("\n")) * size


def text_size(lines):
    """(width, height) in points of a label with these rows: an estimate on the generous side
    (the boxes are drawn at this size, so the text must fit whatever the installed font)."""
    w, h = 20.0, 8.0
    for item in lines or []:
        if item[0] == "strip":
            w = max(w, 12 + 10 * len(item[1]))
            h += 20
            continue
        text, font = clean(item[0]), item[1]
        w = max(w, text_width(text, font) + 18)
        h += (FONT_SIZE.get(font, 14) + 8) * (text.count("\n") + 1)
    return round(w, 1), round(h, 1)


class Box:
    __slots__ = ("id", "w", "h", "x", "y", "layer")

    def __init__(self, node):
        self.id = node.id
        self.w, self.h = text_size(node.lines)
        self.x = self.y = 0.0
        self.layer = 0


def layout(dg, rows, opts):
    """Set ``node.pos`` for every node of a collapsed, labelled graph and the clusters' boxes."""
    row_index = {r.key: i for i, r in enumerate(rows)}
    boxes = {n.id: Box(n) for n in dg.nodes.values()}
    into, out = {}, {}
    for e in dg.edges:
        out.setdefault(e.src, []).append(e)
        into.setdefault(e.dst, []).append(e)
    order = {nid: k for k, nid in enumerate(dg.nodes)}

    # --- who goes where ----------------------------------------------------------------------
    blocks = {}                                  # (ri, column key) -> [node ids]
    for node in dg.nodes.values():
        ri = row_index.get(node.row)
        if ri is None:
            continue
        if node.kind == "ellipsis" or node.t is not None:
            blocks.setdefault((ri, _col_key(node)), []).append(node.id)
    in_block = {nid: key for key, ids in blocks.items() for nid in ids}
    side, inits, free = [], [], []
    for node in dg.nodes.values():
        if node.id in in_block:
            continue
        consumers = [e.dst for e in out.get(node.id, ())]
        if node.kind in ("param", "leaf") and any(c in in_block for c in consumers):
            (inits if node.part == "init" else side).append(node.id)
        else:
            free.append(node.id)

    # parameters read in the steps travel on a bus: one lane per parameter under its row
    line_of = {ri: rows.index(r.line) for ri, r in enumerate(rows)}
    bus = {}                                     # line -> [param ids]
    for nid in side:
        if dg.nodes[nid].kind != "param":
            continue
        for li in sorted({line_of[in_block[e.dst][0]] for e in out.get(nid, ()) if e.dst in in_block}):
            bus.setdefault(li, []).append(nid)
    corridor = {ri: (CORRIDOR0 + LANE_X * len(bus[line_of[ri]])) if bus.get(line_of[ri]) else 0
                for ri in range(len(rows))}
    lane_gap = LANE_Y_GRAD if opts.get("gradients") else LANE_Y

    # --- each block: layers, order, x within the block ------------------------------------------
    block_layout = {}
    for key, ids in blocks.items():
        block_layout[key] = _layout_block(ids, boxes, into, out, in_block, key, order, dg)
    # a row's blocks share layer heights, so equal ops line up across steps
    n_layers, layer_h = {}, {}
    for (ri, col), (layers, width) in block_layout.items():
        n_layers[ri] = max(n_layers.get(ri, 0), len(layers))
        heights = layer_h.setdefault(ri, [])
        for k, layer in enumerate(layers):
            hk = max(boxes[n].h for n in layer)
            if k < len(heights):
                heights[k] = max(heights[k], hk)
            else:
                heights.append(hk)
    for ri in range(len(rows)):
        n_layers.setdefault(ri, 0)
        layer_h.setdefault(ri, [])

    # --- columns: time left to right --------------------------------------------------------------
    cols = sorted({col for (_, col) in blocks})
    col_w = {c: max(block_layout[(ri, c)][1] + corridor.get(ri, 0) for ri in range(len(rows))
                    if (ri, c) in block_layout) for c in cols}
    side_w = max((boxes[n].w for n in side), default=0)
    label_w = 0
    x = 0.0
    label_x = None
    row_lines = {ri: _row_label_lines(r, opts) for ri, r in enumerate(rows)}
    if any(r.layer is not None for r in rows) or len(rows) > 1:
        label_w = max(text_size(row_lines[ri])[0] for ri in range(len(rows)))
        label_x = x + label_w / 2
        x += label_w + COL_GAP
    side_x = x + side_w / 2 if side else None
    if side:
        x += side_w + COL_GAP * 1.5
    init_w = max((boxes[n].w for n in inits), default=0)
    init_x = x + init_w / 2 if inits else None
    if inits:
        x += init_w + COL_GAP
    col_x = {}
    for c in cols:
        col_x[c] = x + col_w[c] / 2 + MARGIN
        x += col_w[c] + 2 * MARGIN + COL_GAP
    for (ri, c), (layers, width) in block_layout.items():
        cw = corridor.get(ri, 0)
        for layer in layers:
            for n in layer:
                boxes[n].x += col_x[c] - col_w[c] / 2 + cw + (col_w[c] - cw - width) / 2

    # --- vertical: rows and free nodes in one longest-path layering ------------------------------
    # rows of one layer (forward and reverse) form a band: stacked, and laid out as one unit
    band_of, bands = {}, []
    for ri, r in enumerate(rows):
        key = r.band
        for bi, members in enumerate(bands):
            if rows[members[0]].band == key:
                members.append(ri)
                band_of[ri] = bi
                break
        else:
            band_of[ri] = len(bands)
            bands.append([ri])
    unit_of = {}
    for nid, (ri, _) in in_block.items():
        unit_of[nid] = ("row", band_of[ri])
    for nid in free:
        unit_of[nid] = ("node", nid)
    units = []
    first = {}
    for nid in dg.nodes:
        u = unit_of.get(nid)
        if u is not None and u not in first:
            first[u] = order[nid]
            units.append(u)
    units.sort(key=lambda u: first[u])
    upos = {u: k for k, u in enumerate(units)}
    row_offset = {}                                # ri -> first level of the row inside its band
    band_h = {}
    for ri in line_of:                            # rows drawn on one line share the tallest layers
        li = line_of[ri]
        n_layers[li] = max(n_layers[li], n_layers[ri])
        for k, hk in enumerate(layer_h[ri]):
            if k < len(layer_h[li]):
                layer_h[li][k] = max(layer_h[li][k], hk)
            else:
                layer_h[li].append(hk)
    for ri in line_of:
        n_layers[ri], layer_h[ri] = n_layers[line_of[ri]], layer_h[line_of[ri]]
    for bi, members in enumerate(bands):
        off = 0
        for ri in members:
            if line_of[ri] != ri:
                continue
            row_offset[ri] = off
            off += max(n_layers[ri], 1)
        band_h[bi] = off
    for ri in line_of:
        row_offset[ri] = row_offset[line_of[ri]]
    height = {u: (band_h[u[1]] if u[0] == "row" else 1) for u in units}
    preds = {u: set() for u in units}
    succs = {u: set() for u in units}
    for e in dg.edges:
        a, b = unit_of.get(e.src), unit_of.get(e.dst)
        if a is None or b is None or a == b or e.kind == "accum":
            continue
        if upos[a] < upos[b]:
            preds[b].add(a)
            succs[a].add(b)
    row_units = [("row", bi) for bi in range(len(bands)) if ("row", bi) in upos]

    def reaches(x, y):
        seen, stack = {x}, [x]
        while stack:
            for s_ in succs[stack.pop()]:
                if s_ == y:
                    return True
                if s_ not in seen:
                    seen.add(s_)
                    stack.append(s_)
        return False

    def constrain(a, b):                              # b above a, unless that would make a cycle
        if a != b and b not in succs[a] and not reaches(b, a):
            preds[b].add(a)
            succs[a].add(b)

    for a, b in zip(row_units, row_units[1:]):       # bands stack bottom to top in row order
        constrain(a, b)
        for u in list(preds[b]):                      # what feeds band b goes between a and b
            if u[0] == "node":
                constrain(a, u)
    # outputs and losses (nodes that lead to no band) go above every band they come after
    leads = {}
    for u in reversed(_topological(units, preds, succs, upos)):
        leads[u] = any(s_[0] == "row" or leads.get(s_) for s_ in succs[u])
    for u in units:
        if u[0] == "node" and not leads[u] and _has_row_before(u, preds):
            for r in row_units:
                constrain(r, u)
    topo = _topological(units, preds, succs, upos)
    level = {}
    for u in topo:
        level[u] = max((level[p] + height[p] for p in preds[u]), default=0)
    # nodes that feed later units move up next to their consumers (an input under its op, a layer's
    # projection right under the layer): "as late as possible", which never passes a consumer
    bands_at = [(level[u], level[u] + height[u]) for u in row_units]
    for u in reversed(topo):
        if u[0] == "node" and succs[u]:
            new = min(level[s_] for s_ in succs[u]) - 1
            for lo, hi in bands_at:                   # never inside a band of rows
                if lo <= new < hi:
                    new = lo - 1
            level[u] = max(level[u], new)
    max_level = max((level[u] + height[u] for u in units), default=0)
    level_h = [0.0] * (max_level + 1)
    def row_level(ri):
        return level[("row", band_of[ri])] + row_offset[ri]

    for u in units:
        if u[0] == "row":
            for ri in bands[u[1]]:
                for k, hk in enumerate(layer_h[ri]):
                    level_h[row_level(ri) + k] = max(level_h[row_level(ri) + k], hk)
        else:
            level_h[level[u]] = max(level_h[level[u]], boxes[u[1]].h)
    # extra room under each row for its bus lanes, above it for its clusters' labels
    pad_below = [0.0] * (max_level + 2)
    pad_above = [0.0] * (max_level + 2)
    cluster_label_h = {ri: _cluster_label_h(dg, ri) for ri in range(len(rows))}
    for ri in range(len(rows)):
        if ("row", band_of[ri]) not in level:
            continue
        lanes = len(bus.get(ri, ())) if line_of[ri] == ri else 0
        lo = row_level(ri)
        pad_below[lo] = max(pad_below[lo], MARGIN + 6 + (lanes + 1) * lane_gap if lanes else MARGIN + 6)
        top = lo + max(n_layers[ri], 1) - 1
        pad_above[top] = max(pad_above[top], MARGIN + cluster_label_h[ri])
    y_of_level = []
    y = 0.0
    for k in range(max_level + 1):
        y += pad_below[k]
        y_of_level.append(y + level_h[k] / 2)
        if level_h[k] or pad_above[k]:           # an empty level takes no room
            y += level_h[k] + GAP_Y + pad_above[k]
    for u in units:
        if u[0] != "row":
            boxes[u[1]].y = y_of_level[level[u]]
    for (ri, c), (layers, _) in block_layout.items():
        for k, layer in enumerate(layers):
            for n in layer:
                boxes[n].y = y_of_level[row_level(ri) + k]

    # --- free nodes: centred over what they connect to -----------------------------------------
    placed = set(in_block)
    for nid in free:
        boxes[nid].x = None
    for _ in range(4):
        for sweep in (free, list(reversed(free))):
            for nid in sweep:
                xs = [boxes[e.src].x for e in into.get(nid, ()) if boxes[e.src].x is not None and
                      (e.src in placed or e.src in free)]
                xs += [boxes[e.dst].x for e in out.get(nid, ()) if boxes[e.dst].x is not None and
                       (e.dst in placed or e.dst in free)]
                if xs:
                    boxes[nid].x = sum(xs) / len(xs)
    default_x = (min(col_x.values()) + max(col_x.values())) / 2 if col_x else 0.0
    for nid in free:
        if boxes[nid].x is None:
            boxes[nid].x = default_x
    by_level = {}
    for nid in free:
        by_level.setdefault(level[unit_of[nid]], []).append(nid)
    for lv, ids in by_level.items():
        ids.sort(key=lambda n: (boxes[n].x, order[n]))
        _spread(ids, boxes)
        # keep free nodes off the blocks that share their height
        for bi in range(len(bands)):
            u = ("row", bi)
            if u in level and level[u] <= lv < level[u] + height[u] and col_x:
                right = max(col_x[c] + col_w[c] / 2 + MARGIN for c in cols)
                shift = right + COL_GAP - min(boxes[n].x - boxes[n].w / 2 for n in ids)
                if shift > 0:
                    for n in ids:
                        boxes[n].x += shift

    # --- the side column: parameters and initial states at the height of their first use ----------
    def stack_at_first_use(ids, x):
        """Boxes in one column at x, each as high as the first op that reads it, without overlapping."""
        wants = []
        for nid in ids:
            ys = [boxes[e.dst].y for e in out.get(nid, ()) if e.dst in in_block]
            wants.append((min(ys) if ys else 0.0, order[nid], nid))
        top = None
        for want, _, nid in sorted(wants):
            b = boxes[nid]
            b.x = x
            b.y = want if top is None else max(want, top + b.h / 2 + 10)
            top = b.y + b.h / 2

    if side:
        stack_at_first_use(side, side_x)
    # initial states (h_0): just left of the first step, level with the op that reads them
    if inits:
        stack_at_first_use(inits, init_x)

    # --- row labels --------------------------------------------------------------------------------
    if label_x is not None:
        for ri, row in enumerate(rows):
            u = ("row", band_of[ri])
            if u not in level or line_of[ri] != ri:
                continue
            node = Node(f"rowlabel_r{ri}", "note", name=row.label)
            node.lines = row_lines[ri]
            node.style = "note"
            dg.add(node)
            b = Box(node)
            b.x = label_x
            lo, hi = y_of_level[row_level(ri)], y_of_level[row_level(ri) + max(n_layers[ri], 1) - 1]
            b.y = (lo + hi) / 2
            boxes[node.id] = b

    # --- clusters ----------------------------------------------------------------------------------
    for (ri, c), ids in sorted(blocks.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        node0 = dg.nodes[ids[0]]
        if node0.kind == "ellipsis":
            continue
        cid = node0.cluster
        if cid is None or cid not in dg.clusters:
            continue
        x0 = col_x[c] - col_w[c] / 2 - MARGIN
        x1 = col_x[c] + col_w[c] / 2 + MARGIN
        y0 = min(boxes[n].y - boxes[n].h / 2 for n in ids) - MARGIN
        y1 = max(boxes[n].y + boxes[n].h / 2 for n in ids) + MARGIN + cluster_label_h[ri]
        dg.clusters[cid].bb = (x0, y0, x1, y1)
    # --- the bus: each shared parameter's edges, routed orthogonally --------------------------------
    for li, params in bus.items():
        _route_bus(dg, li, params, boxes, blocks, block_layout, col_x, col_w, out, in_block, lane_gap, line_of)
    # --- every other edge: straight, or around the boxes in its way -------------------------------
    corridors = []
    edges_x = sorted((col_x[c] - col_w[c] / 2 - MARGIN, col_x[c] + col_w[c] / 2 + MARGIN) for c in cols)
    for (l0, r0), (l1, r1) in zip(edges_x, edges_x[1:]):
        corridors.append((r0 + l1) / 2)
    if edges_x:
        corridors += [edges_x[0][0] - COL_GAP / 2, edges_x[-1][1] + COL_GAP / 2]
    rects = {nid: (b.x, b.y, b.w, b.h) for nid, b in boxes.items()}
    # each timestep's title (t, ||dL/dh_t||) is an obstacle too: no edge or number runs across it
    for cid, c in dg.clusters.items():
        if c.bb is not None and c.label:
            w, h = text_size(c.label)
            rects[f"title:{cid}"] = ((c.bb[0] + c.bb[2]) / 2, c.bb[3] - h / 2, min(w, c.bb[2] - c.bb[0]), h)
    grid = Grid(rects)
    parallel = {}                                  # an LSTM's h and c edges: side by side, not on top
    for e in dg.edges:
        if e.kind == "state":
            parallel.setdefault((e.src, e.dst), []).append(e)
    for e in dg.edges:
        if e.info.get("route"):
            continue
        a, b = boxes[e.src], boxes[e.dst]
        side, dy = None, 0.0
        if e.kind == "state" and abs(a.y - b.y) < 1 and a.id in in_block and b.id in in_block:
            side = "lr" if b.x > a.x else "rl"
            twins = parallel[(e.src, e.dst)]
            dy = (twins.index(e) - (len(twins) - 1) / 2) * -PARALLEL_GAP
        e.info["route"] = route(rects[e.src], rects[e.dst], grid, {e.src, e.dst}, corridors, side, dy)
    # numbers go where they cover no box, no title and no other edge (long horizontal runs, the
    # bus lanes under the rows, are left out: they hold no numbers but their own)
    marks = dict(rects)
    for k, e in enumerate(dg.edges):
        for (x0, y0), (x1, y1) in zip(e.info["route"], e.info["route"][1:]):
            if abs(x1 - x0) < 400:
                marks[("edge", k, x0, y0)] = ((x0 + x1) / 2, (y0 + y1) / 2, abs(x1 - x0) + 2, abs(y1 - y0) + 2)
    for k, e in enumerate(dg.edges):               # the bus numbers are placed already: keep off them
        if "lp" in e.info:
            (x, y), (w, h) = e.info["lp"], _label_size(dg, e, 1)
            marks[("label", k)] = (x + w / 2, y, w, h)
    label_grid = Grid(marks)
    for k, e in enumerate(dg.edges):
        if "lp" not in e.info:
            size = _label_size(dg, e, len(parallel.get((e.src, e.dst), ())))
            e.info["lp"], e.info["lp_anchor"] = place_label(e.info["route"], size, label_grid, k)
    for nid, b in boxes.items():
        dg.nodes[nid].pos = (round(b.x, 1), round(b.y, 1))
        dg.nodes[nid].info["size"] = (b.w, b.h)
    dg.layout_done = True


def _route_bus(dg, ri, params, boxes, blocks, block_layout, col_x, col_w, out, in_block, lane_gap, line_of):
    """Param -> right -> down to its lane under the row -> along the lane -> up the block's left
    corridor -> across the gap under the target's layer -> up into the target."""
    ids = [n for (rj, _), members in blocks.items() if line_of[rj] == ri for n in members]
    row_bottom = min(boxes[n].y - boxes[n].h / 2 for n in ids) - MARGIN
    params = sorted(params, key=lambda p: (boxes[p].y, p))      # lowest first
    n = len(params)
    side_right = max(boxes[p].x + boxes[p].w / 2 for p in params)
    layer_bottom = {}
    for (rj, c), (layers, _) in block_layout.items():
        if line_of[rj] != ri:
            continue
        for layer in layers:
            lb = min(boxes[m].y - boxes[m].h / 2 for m in layer)
            for m in layer:
                layer_bottom[m] = lb
    entries = {}
    for j, p in enumerate(params):
        for e in out.get(p, ()):
            if e.dst in in_block and line_of[in_block[e.dst][0]] == ri:
                entries.setdefault(e.dst, []).append((j, e))
    for j, p in enumerate(params):
        bp = boxes[p]
        start = (bp.x + bp.w / 2, bp.y)
        x_down = side_right + 12 + LANE_X * j
        lane_y = row_bottom - lane_gap * (n - j)
        for e in out.get(p, ()):
            if e.dst not in in_block or line_of[in_block[e.dst][0]] != ri:
                continue
            c = in_block[e.dst][1]
            bt = boxes[e.dst]
            x_up = col_x[c] - col_w[c] / 2 - MARGIN + CORRIDOR0 + LANE_X * j
            same = sorted(entries[e.dst], key=lambda x: x[0])
            k = [x[0] for x in same].index(j)
            x_in = bt.x + (k - (len(same) - 1) / 2) * 9
            y_gap = layer_bottom[e.dst] - 9 - 3 * j
            end = (x_in, bt.y - bt.h / 2)
            points = [start, (x_down, start[1]), (x_down, lane_y), (x_up, lane_y), (x_up, y_gap), (x_in, y_gap), end]
            e.info["route"] = _dedupe(points)
            e.info["lp"] = (x_up + 4, lane_y + 10)
            e.info["lp_anchor"] = "left"


def _dedupe(points):
    out = []
    for p in points:
        p = (round(p[0], 1), round(p[1], 1))
        if not out or out[-1] != p:
            out.append(p)
    return out


def spline(points, arrow_head=True, arrow_tail=False, arrow=7.0, radius=6.0):
    """A Graphviz edge ``pos`` for a polyline: straight cubic pieces with rounded corners,
    shortened at the ends that carry an arrowhead ("e,x,y" / "s,x,y" give the tips)."""
    pts = list(points)
    prefix = []
    if arrow_tail and len(pts) >= 2:
        tip = pts[0]
        pts[0] = _toward(tip, pts[1], arrow)
        prefix.append(f"s,{tip[0]:.1f},{tip[1]:.1f}")
    if arrow_head and len(pts) >= 2:
        tip = pts[-1]
        pts[-1] = _toward(tip, pts[-2], arrow)
        prefix.append(f"e,{tip[0]:.1f},{tip[1]:.1f}")
    ctrl = [pts[0]]
    cur = pts[0]
    for i in range(1, len(pts) - 1):
        corner = pts[i]
        a = _toward(corner, cur, radius)
        b = _toward(corner, pts[i + 1], radius)
        ctrl += [cur, a, a]               # straight to just before the corner
        ctrl += [corner, corner, b]       # the rounded turn
        cur = b
    ctrl += [cur, pts[-1], pts[-1]]
    return " ".join(prefix + [f"{x:.1f},{y:.1f}" for x, y in ctrl])


def _toward(p, q, d):
    dx, dy = q[0] - p[0], q[1] - p[1]
    length = (dx * dx + dy * dy) ** 0.5 or 1.0
    d = min(d, length / 2)
    return (p[0] + dx / length * d, p[1] + dy / length * d)


def _topological(units, preds, succs, upos):
    """Units ordered so that every constraint points forward (ties in forward-pass order)."""
    import heapq
    missing = {u: len(preds[u]) for u in units}
    ready = [(upos[u], u) for u in units if not missing[u]]
    heapq.heapify(ready)
    out = []
    while ready:
        _, u = heapq.heappop(ready)
        out.append(u)
        for s in succs[u]:
            missing[s] -= 1
            if not missing[s]:
                heapq.heappush(ready, (upos[s], s))
    if len(out) < len(units):            # a cycle (cannot happen by construction): forward order for the rest
        out += [u for u in sorted(units, key=lambda u: upos[u]) if u not in set(out)]
    return out


def _has_row_before(u, preds):
    seen, stack = {u}, [u]
    while stack:
        for p in preds[stack.pop()]:
            if p[0] == "row":
                return True
            if p not in seen:
                seen.add(p)
                stack.append(p)
    return False


def _col_key(node):
    if node.kind == "ellipsis":
        ts = node.info.get("elided") or [0]
        return (min(ts) - 0.5,)
    return (float(node.t),)


def _row_label_lines(row, opts):
    """A row's label; with gradients, which way its arrows (the gradient) run."""
    lines = [(row.label or "loop", "big")]
    if opts.get("gradients"):
        arrow = "\u2192" if row.reverse else "\u2190"
        lines.append((f"arrows: the gradient, flowing {arrow}", "main"))
    return lines


def _label_size(dg, e, twins):
    """The size of an edge's number, before the number is known: the widest it can be
    ("W_hh += 0.00e-00" on a parameter's use, "c 0.00e-00" on one of two parallel state edges)."""
    if e.kind == "cut":
        text = "detach() \u2702"
    elif e.kind == "param":
        text = f"{alias(dg.nodes[e.src].name) or 'param'} += 0.00e-00"
    elif e.kind == "state" and twins > 1:
        text = f"{e.info.get('state_name') or 'h'} 0.00e-00"
    else:
        text = "0.00e-00"
    return text_width(text, "small"), FONT_SIZE["small"] + 4


def _cluster_label_h(dg, ri):
    h = 0.0
    for c in dg.clusters.values():
        if c.order and c.order[0] == ri:
            h = max(h, text_size(c.label)[1])
    return h


def _layout_block(ids, boxes, into, out, in_block, key, order, dg):
    """Layers (bottom to top) of one block, and its width; sets each box's x relative to the block."""
    members = set(ids)
    inside_preds = {n: [e.src for e in into.get(n, ()) if e.src in members] for n in ids}
    inside_succs = {n: [e.dst for e in out.get(n, ()) if e.dst in members] for n in ids}
    leafish = {n for n in ids if dg.nodes[n].kind in ("input", "const", "cut")}
    layer = {}
    for n in sorted(ids, key=lambda n: order[n]):
        if n in leafish:
            continue
        layer[n] = max((layer[p] + 1 for p in inside_preds[n] if p in layer), default=0)
    for n in leafish:
        consumers = [layer[s] for s in inside_succs[n] if s in layer]
        layer[n] = (min(consumers) - 1) if consumers else 0
    low = min(layer.values()) if layer else 0
    for n in ids:
        layer[n] -= low
    n_layers = max(layer.values()) + 1 if layer else 1
    layers = [[] for _ in range(n_layers)]
    for n in sorted(ids, key=lambda n: order[n]):
        layers[layer[n]].append(n)
    # barycentre ordering; state arriving from the left pulls a node left, leaving state pulls right
    bias = {}
    for n in ids:
        b = 0.0
        for e in into.get(n, ()):
            if e.src not in members and e.kind in ("state", "cut"):
                b -= 100
        for e in out.get(n, ()):
            if e.dst not in members and e.kind == "state":
                b += 100
        bias[n] = b
    pos = {n: float(i) for lay in layers for i, n in enumerate(lay)}
    for _ in range(3):
        for k in list(range(1, n_layers)) + list(range(n_layers - 2, -1, -1)):
            def bary(n):
                nb = [pos[p] for p in inside_preds[n] + inside_succs[n] if p in pos]
                return (sum(nb) / len(nb) if nb else pos[n]) + bias[n]
            layers[k].sort(key=lambda n: (bary(n), order[n]))
            for i, n in enumerate(layers[k]):
                pos[n] = float(i)
    # coordinates: pack each layer, then pull nodes over their neighbours
    for lay in layers:
        x = 0.0
        for n in lay:
            boxes[n].x = x + boxes[n].w / 2
            x += boxes[n].w + GAP_X
    for _ in range(6):
        for k in list(range(n_layers)) + list(range(n_layers - 1, -1, -1)):
            lay = layers[k]
            desired = []
            for n in lay:
                nb = [boxes[p].x for p in inside_preds[n] + inside_succs[n]]
                desired.append(sum(nb) / len(nb) if nb else boxes[n].x)
            for n, d in zip(lay, desired):
                boxes[n].x = d
            _spread(lay, boxes)
    left = min(boxes[n].x - boxes[n].w / 2 for n in ids)
    right = max(boxes[n].x + boxes[n].w / 2 for n in ids)
    for n in ids:
        boxes[n].x -= left
    return layers, right - left


def _spread(ids, boxes):
    """Keep the order, remove overlaps, stay centred on the wanted positions."""
    if not ids:
        return
    wanted = [boxes[n].x for n in ids]
    x = None
    for n in ids:
        b = boxes[n]
        if x is not None:
            b.x = max(b.x, x + b.w / 2 + GAP_X)
        x = b.x + b.w / 2
    shift = sum(w - boxes[n].x for n, w in zip(ids, wanted)) / len(ids)
    for n in ids:
        boxes[n].x += shift
