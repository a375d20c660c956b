"""Stage 4, layout: where every box goes in the unrolled picture, a grid of timesteps and rows.

Graphviz's ``dot`` reorders clusters to reduce crossings, so it cannot promise that
t=3 is drawn right of t=2. The unrolled layout is therefore computed here, and
Graphviz only draws (``neato -n2``, which keeps the given positions). ``layout`` reads a
Picture (annotate.py) and returns a ``Placement``, in phases:

1. who goes where: each (row, t) block, the parameters' side column, initial states, and
   the free nodes (input projections, output stacks, the loss);
2. each block is laid out once with a small layered layout (longest-path layers,
   barycentre ordering, then coordinates), inputs at the bottom;
3. blocks go into columns by t (left to right); parameters and initial states get a
   column at the left;
4. rows (by layer and direction, bottom to top) and free nodes get heights from one
   longest-path layering; every step of a row uses the same layer heights, so the same
   op sits at the same height in every step and state edges run from t to t+1;
5. free nodes are centred over what they connect to; parameters and initial states sit
   at the height of the ops that first read them; row labels and cluster boxes;
6. edges are routed: parameters along lanes under their row, the rest straight or
   around the boxes in their way; numbers go where they cover nothing.

Sizes are estimated from the label text (no Graphviz call), so the layout, and the
DOT text, is the same on every machine.
"""
import heapq
import unicodedata

from .names import alias
from .route import Grid, place_label, route
from .style import clean

GAP_X = 22          # between boxes in a layer (points)
GAP_Y = 30          # between layers
COL_GAP = 34        # between timestep columns
MARGIN = 14         # inside a cluster
CORRIDOR0 = 8       # the bus corridor at a block's left: first lane's offset
LANE_X = 8          # between the vertical lanes of two parameters
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

    def __init__(self, id, lines):
        self.id = id
        self.w, self.h = text_size(lines)
        self.x = self.y = 0.0
        self.layer = 0


class Placement:
    """Where everything goes: ``pos`` and ``size`` {node id: (x, y) / (w, h)} in points,
    ``cluster_bb`` {cluster id: (x0, y0, x1, y1)}, ``row_labels`` [(node id, row index, (x, y))],
    one route (a polyline) per edge and where its number goes."""

    def __init__(self):
        self.pos, self.size, self.cluster_bb = {}, {}, {}
        self.row_labels = []
        self.routes, self.label_at = [], []

    def edge_pos(self, k, head, tail):
        """Graphviz's ``pos`` of edge ``k``, with an arrowhead at its end and/or start."""
        return spline(self.routes[k], arrow_head=head, arrow_tail=tail)

    def label_pos(self, k, text):
        """Graphviz's ``lp`` of edge ``k``'s number ``text`` (the centre of the text)."""
        (x, y), anchor = self.label_at[k]
        if anchor == "left":            # the point is where the text starts
            x += text_width(text, "small") / 2
        return "%.1f,%.1f" % (x, y)


def layout(pic):
    """The Placement of a Picture of an unrolled graph (one with rows)."""
    lay = _Layout(pic)
    lay.assign()
    lay.lay_blocks()
    lay.columns()
    lay.bands()
    lay.constraints()
    lay.levels()
    lay.heights()
    lay.free_x()
    lay.place_anchors()
    lay.side_columns()
    lay.row_labels()
    lay.cluster_boxes()
    lay.route_edges()
    lay.place_numbers()
    return lay.placement()


class _Layout:
    """The working state of one layout; each method is one phase (see the module docstring)."""

    def __init__(self, pic):
        self.pic, self.g, self.rows = pic, pic.graph, pic.unrolled.rows
        self.row_index = {r.key: i for i, r in enumerate(self.rows)}
        self.boxes = {n: Box(n, pic.boxes[n].lines) for n in self.g.nodes}
        for n, node in self.g.nodes.items():
            if node.kind == "anchor":
                self.boxes[n].w = self.boxes[n].h = 6.0
        self.into, self.out = {}, {}
        for e in self.g.edges:
            self.out.setdefault(e.src, []).append(e)
            self.into.setdefault(e.dst, []).append(e)
        self.order = {nid: k for k, nid in enumerate(self.g.nodes)}
        self.routes, self.labels = {}, {}        # edge index -> polyline / ((x, y), anchor)

    # --- 1. who goes where ------------------------------------------------------------------
    def assign(self):
        """Blocks (row, t), the side column (parameters), initial states, free nodes; the bus."""
        self.blocks = {}                                  # (ri, column key) -> [node ids]
        for node in self.g.nodes.values():
            ri = self.row_index.get(node.row)
            if ri is not None and (node.kind == "ellipsis" or node.t is not None):
                self.blocks.setdefault((ri, _col_key(node)), []).append(node.id)
        self.in_block = {nid: key for key, ids in self.blocks.items() for nid in ids}
        self.side, self.inits, self.free, self.anchors = [], [], [], []
        for node in self.g.nodes.values():
            if node.id in self.in_block:
                continue
            if node.kind == "anchor":
                self.anchors.append(node.id)
                continue
            consumers = [e.dst for e in self.out.get(node.id, ())]
            if node.kind in ("param", "leaf") and any(c in self.in_block or self.g.nodes[c].kind == "anchor"
                                                      for c in consumers):
                (self.inits if node.part == "init" else self.side).append(node.id)
            else:
                self.free.append(node.id)
        self.param_row = {}                               # parameter -> the lowest row that reads it
        for nid in self.side:
            rows = [self.in_block[e.dst][0] if e.dst in self.in_block else self.row_index[self.g.nodes[e.dst].row]
                    for e in self.out.get(nid, ()) if e.dst in self.in_block or self.g.nodes[e.dst].kind == "anchor"]
            if rows:
                self.param_row[nid] = min(rows)
        # parameters read in the steps travel on a bus: one lane per parameter under its row
        self.line_of = {ri: self.rows.index(r.line) for ri, r in enumerate(self.rows)}
        self.bus = {}                                     # line -> [param ids]
        for nid in self.side:
            if self.g.nodes[nid].kind != "param":
                continue
            for li in sorted({self.line_of[self.in_block[e.dst][0]] for e in self.out.get(nid, ())
                              if e.dst in self.in_block}):
                self.bus.setdefault(li, []).append(nid)
        self.corridor = {ri: (CORRIDOR0 + LANE_X * len(self.bus[self.line_of[ri]]))
                         if self.bus.get(self.line_of[ri]) else 0 for ri in range(len(self.rows))}
        self.lane_gap = LANE_Y_GRAD if self.pic.opts.get("gradients") else LANE_Y

    # --- 2. each block ------------------------------------------------------------------------
    def lay_blocks(self):
        """Layers and x of every block; a row's blocks share layer heights, so equal ops line up."""
        self.block_layout = {key: _layout_block(ids, self.boxes, self.into, self.out, self.order, self.g)
                             for key, ids in self.blocks.items()}
        self.n_layers, self.layer_h = {}, {}
        for (ri, col), (layers, width) in self.block_layout.items():
            self.n_layers[ri] = max(self.n_layers.get(ri, 0), len(layers))
            heights = self.layer_h.setdefault(ri, [])
            for k, layer in enumerate(layers):
                hk = max(self.boxes[n].h for n in layer)
                if k < len(heights):
                    heights[k] = max(heights[k], hk)
                else:
                    heights.append(hk)
        for ri in range(len(self.rows)):
            self.n_layers.setdefault(ri, 0)
            self.layer_h.setdefault(ri, [])

    # --- 3. columns -----------------------------------------------------------------------------
    def columns(self):
        """Time left to right: row labels, the side column, initial states, then one column per t."""
        rows, boxes = self.rows, self.boxes
        self.cols = sorted({col for (_, col) in self.blocks})
        self.col_w = {c: max(self.block_layout[(ri, c)][1] + self.corridor.get(ri, 0) for ri in range(len(rows))
                             if (ri, c) in self.block_layout) for c in self.cols}
        x = 0.0
        self.label_x = None
        if any(r.layer is not None for r in rows) or len(rows) > 1:
            label_w = max(text_size(self.pic.row_labels[ri])[0] for ri in range(len(rows)))
            self.label_x = x + label_w / 2
            x += label_w + COL_GAP
        side_w = max((boxes[n].w for n in self.side), default=0)
        self.side_x = x + side_w / 2 if self.side else None
        if self.side:
            x += side_w + COL_GAP * 1.5
        init_w = max((boxes[n].w for n in self.inits), default=0)
        self.init_x = x + init_w / 2 if self.inits else None
        if self.inits:
            x += init_w + COL_GAP
        self.col_x = {}
        for c in self.cols:
            self.col_x[c] = x + self.col_w[c] / 2 + MARGIN
            x += self.col_w[c] + 2 * MARGIN + COL_GAP
        for (ri, c), (layers, width) in self.block_layout.items():
            cw = self.corridor.get(ri, 0)
            for layer in layers:
                for n in layer:
                    boxes[n].x += self.col_x[c] - self.col_w[c] / 2 + cw + (self.col_w[c] - cw - width) / 2

    # --- 4. heights -----------------------------------------------------------------------------
    def bands(self):
        """Rows of one layer (forward and reverse) form a band, laid out as one unit; every other
        node is a unit of its own. Rows drawn on one line share the tallest layers."""
        rows = self.rows
        self.band_of, self.band_rows = {}, []
        for ri, r in enumerate(rows):
            for bi, members in enumerate(self.band_rows):
                if rows[members[0]].band == r.band:
                    members.append(ri)
                    self.band_of[ri] = bi
                    break
            else:
                self.band_of[ri] = len(self.band_rows)
                self.band_rows.append([ri])
        self.unit_of = {nid: ("row", self.band_of[ri]) for nid, (ri, _) in self.in_block.items()}
        for nid in self.free:
            self.unit_of[nid] = ("node", nid)
        first, self.units = {}, []
        for nid in self.g.nodes:
            u = self.unit_of.get(nid)
            if u is not None and u not in first:
                first[u] = self.order[nid]
                self.units.append(u)
        self.units.sort(key=lambda u: first[u])
        self.upos = {u: k for k, u in enumerate(self.units)}
        self._share_lines()
        self.row_offset, band_h = {}, {}             # ri -> first level of the row inside its band
        for bi, members in enumerate(self.band_rows):
            off = 0
            for ri in members:
                if self.line_of[ri] != ri:
                    continue
                self.row_offset[ri] = off
                off += max(self.n_layers[ri], 1)
            band_h[bi] = off
        for ri in self.line_of:
            self.row_offset[ri] = self.row_offset[self.line_of[ri]]
        self.height = {u: (band_h[u[1]] if u[0] == "row" else 1) for u in self.units}

    def _share_lines(self):
        line_of, n_layers, layer_h = self.line_of, self.n_layers, self.layer_h
        for ri in line_of:
            li = line_of[ri]
            n_layers[li] = max(n_layers[li], n_layers[ri])
            for k, hk in enumerate(layer_h[ri]):
                if k < len(layer_h[li]):
                    layer_h[li][k] = max(layer_h[li][k], hk)
                else:
                    layer_h[li].append(hk)
        for ri in line_of:
            n_layers[ri], layer_h[ri] = n_layers[line_of[ri]], layer_h[line_of[ri]]

    def constraints(self):
        """Which unit goes above which: data flows up; bands stack in row order; outputs and
        losses go above every band they come after."""
        units, upos = self.units, self.upos
        self.preds = {u: set() for u in units}
        self.succs = {u: set() for u in units}
        for e in self.g.edges:
            a, b = self.unit_of.get(e.src), self.unit_of.get(e.dst)
            if a is None or b is None or a == b or e.kind == "accum":
                continue
            if upos[a] < upos[b]:
                self.preds[b].add(a)
                self.succs[a].add(b)
        self.row_units = [("row", bi) for bi in range(len(self.band_rows)) if ("row", bi) in upos]
        for a, b in zip(self.row_units, self.row_units[1:]):     # bands stack bottom to top in row order
            self._constrain(a, b)
            for u in list(self.preds[b]):                         # what feeds band b goes between a and b
                if u[0] == "node":
                    self._constrain(a, u)
        leads = {}
        for u in reversed(_topological(units, self.preds, self.succs, upos)):
            leads[u] = any(s[0] == "row" or leads.get(s) for s in self.succs[u])
        for u in units:
            if u[0] == "node" and not leads[u] and _has_row_before(u, self.preds):
                for r in self.row_units:
                    self._constrain(r, u)

    def _constrain(self, a, b):
        """b above a, unless that would make a cycle."""
        if a != b and b not in self.succs[a] and not self._reaches(b, a):
            self.preds[b].add(a)
            self.succs[a].add(b)

    def _reaches(self, x, y):
        seen, stack = {x}, [x]
        while stack:
            for s in self.succs[stack.pop()]:
                if s == y:
                    return True
                if s not in seen:
                    seen.add(s)
                    stack.append(s)
        return False

    def levels(self):
        """Longest-path levels; then nodes that feed later units move up next to their consumers
        (an input under its op, a layer's projection right under the layer): "as late as
        possible", which never passes a consumer and never lands inside a band of rows."""
        topo = _topological(self.units, self.preds, self.succs, self.upos)
        level = self.level = {}
        for u in topo:
            level[u] = max((level[p] + self.height[p] for p in self.preds[u]), default=0)
        bands_at = [(level[u], level[u] + self.height[u]) for u in self.row_units]
        for u in reversed(topo):
            if u[0] == "node" and self.succs[u]:
                new = min(level[s] for s in self.succs[u]) - 1
                for lo, hi in bands_at:
                    if lo <= new < hi:
                        new = lo - 1
                level[u] = max(level[u], new)
        self.max_level = max((level[u] + self.height[u] for u in self.units), default=0)

    def row_level(self, ri):
        return self.level[("row", self.band_of[ri])] + self.row_offset[ri]

    def heights(self):
        """The y of every level (room under each row for its bus lanes, above it for its
        timestep titles and for the parameters beside it), and so of every box."""
        level_h = [0.0] * (self.max_level + 1)
        for u in self.units:
            if u[0] == "row":
                for ri in self.band_rows[u[1]]:
                    for k, hk in enumerate(self.layer_h[ri]):
                        level_h[self.row_level(ri) + k] = max(level_h[self.row_level(ri) + k], hk)
            else:
                level_h[self.level[u]] = max(level_h[self.level[u]], self.boxes[u[1]].h)
        pad_below = [0.0] * (self.max_level + 2)
        pad_above = [0.0] * (self.max_level + 2)
        self.title_h = {ri: _cluster_label_h(self.pic, ri) for ri in range(len(self.rows))}
        for ri in range(len(self.rows)):
            if ("row", self.band_of[ri]) not in self.level:
                continue
            lanes = len(self.bus.get(ri, ())) if self.line_of[ri] == ri else 0
            lo = self.row_level(ri)
            pad_below[lo] = max(pad_below[lo], MARGIN + 6 + (lanes + 1) * self.lane_gap if lanes else MARGIN + 6)
            top = lo + max(self.n_layers[ri], 1) - 1
            pad_above[top] = max(pad_above[top], MARGIN + self.title_h[ri])
        self._level_ys(level_h, pad_below, pad_above)
        self._room_for_parameters(level_h, pad_above)
        self._level_ys(level_h, pad_below, pad_above)
        for u in self.units:
            if u[0] != "row":
                self.boxes[u[1]].y = self.y_of_level[self.level[u]]
        for (ri, c), (layers, _) in self.block_layout.items():
            for k, layer in enumerate(layers):
                for n in layer:
                    self.boxes[n].y = self.y_of_level[self.row_level(ri) + k]

    def _level_ys(self, level_h, pad_below, pad_above):
        self.y_of_level = []
        y = 0.0
        for k in range(self.max_level + 1):
            y += pad_below[k]
            self.y_of_level.append(y + level_h[k] / 2)
            if level_h[k] or pad_above[k]:           # an empty level takes no room
                y += level_h[k] + GAP_Y + pad_above[k]

    def _room_for_parameters(self, level_h, pad_above):
        """A row's parameters stand in a column beside it, upward from the height of its steps:
        the row gets taller where they need more room than its steps do (a stacked layer's
        weights stay beside their own layer)."""
        for ri in range(len(self.rows)):
            params = [p for p in self.side if self.param_row.get(p) == ri]
            if not params or ("row", self.band_of[ri]) not in self.level:
                continue
            lo = self.row_level(ri)
            top = lo + max(self.n_layers[ri], 1) - 1
            first = min(params, key=lambda p: self.order[p])
            need = sum(self.boxes[p].h + 10 for p in params) - 10 - self.boxes[first].h / 2
            room = self.y_of_level[top] + level_h[top] / 2 + pad_above[top] - self.y_of_level[lo]
            if need > room:
                pad_above[top] += need - room

    # --- 5. the rest of the boxes -------------------------------------------------------------
    def free_x(self):
        """Free nodes centred over what they connect to, spread apart, and kept off the bands."""
        boxes, free, placed = self.boxes, self.free, set(self.in_block)
        for nid in free:
            boxes[nid].x = None
        for _ in range(4):
            for sweep in (free, list(reversed(free))):
                for nid in sweep:
                    xs = [boxes[e.src].x for e in self.into.get(nid, ()) if boxes[e.src].x is not None and
                          (e.src in placed or e.src in free)]
                    xs += [boxes[e.dst].x for e in self.out.get(nid, ()) if boxes[e.dst].x is not None and
                           (e.dst in placed or e.dst in free)]
                    if xs:
                        boxes[nid].x = sum(xs) / len(xs)
        col_x = self.col_x
        default_x = (min(col_x.values()) + max(col_x.values())) / 2 if col_x else 0.0
        for nid in free:
            if boxes[nid].x is None:
                boxes[nid].x = default_x
        by_level = {}
        for nid in free:
            by_level.setdefault(self.level[self.unit_of[nid]], []).append(nid)
        for lv, ids in by_level.items():
            ids.sort(key=lambda n: (boxes[n].x, self.order[n]))
            _spread(ids, boxes)
            for bi in range(len(self.band_rows)):     # keep free nodes off the blocks that share their height
                u = ("row", bi)
                if u in self.level and self.level[u] <= lv < self.level[u] + self.height[u] and col_x:
                    right = max(col_x[c] + self.col_w[c] / 2 + MARGIN for c in self.cols)
                    shift = right + COL_GAP - min(boxes[n].x - boxes[n].w / 2 for n in ids)
                    if shift > 0:
                        for n in ids:
                            boxes[n].x += shift

    def place_anchors(self):
        """Where a row's input projection weights point: the left edge of the row's first step."""
        for nid in self.anchors:
            ri = self.row_index[self.g.nodes[nid].row]
            cols = [c for (rj, c) in self.blocks if rj == ri]
            if not cols:
                continue
            c = min(cols)
            self.boxes[nid].x = self.col_x[c] - self.col_w[c] / 2 - MARGIN - self.boxes[nid].w / 2
            self.boxes[nid].y = self.y_of_level[self.row_level(ri)]

    def side_columns(self):
        """Parameters, then initial states (h_0, just left of the first step), each in a column,
        as high as the first op that reads it, without overlapping."""
        for ids, x in ((self.side, self.side_x), (self.inits, self.init_x)):
            if not ids:
                continue
            wants = []
            for nid in ids:
                ys = [self.boxes[e.dst].y for e in self.out.get(nid, ())
                      if e.dst in self.in_block or e.dst in self.anchors]
                wants.append((min(ys) if ys else 0.0, self.order[nid], nid))
            top = None
            for want, _, nid in sorted(wants):
                b = self.boxes[nid]
                b.x = x
                b.y = want if top is None else max(want, top + b.h / 2 + 10)
                top = b.y + b.h / 2

    def row_labels(self):
        """A label left of each row (one per line of truncated-BPTT chunks)."""
        self.label_boxes = []
        if self.label_x is None:
            return
        for ri, row in enumerate(self.rows):
            u = ("row", self.band_of[ri])
            if u not in self.level or self.line_of[ri] != ri:
                continue
            b = Box(f"rowlabel_r{ri}", self.pic.row_labels[ri])
            b.x = self.label_x
            lo = self.y_of_level[self.row_level(ri)]
            hi = self.y_of_level[self.row_level(ri) + max(self.n_layers[ri], 1) - 1]
            b.y = (lo + hi) / 2
            self.label_boxes.append((b, ri))

    def cluster_boxes(self):
        """The box around each timestep: its column's width, its boxes' height, and its title."""
        self.cluster_bb = {}
        cluster_of = self.pic.unrolled.cluster_of
        for (ri, c), ids in sorted(self.blocks.items(), key=lambda kv: (kv[0][0], kv[0][1])):
            cid = cluster_of.get(ids[0])
            if self.g.nodes[ids[0]].kind == "ellipsis" or cid is None:
                continue
            x0 = self.col_x[c] - self.col_w[c] / 2 - MARGIN
            x1 = self.col_x[c] + self.col_w[c] / 2 + MARGIN
            y0 = min(self.boxes[n].y - self.boxes[n].h / 2 for n in ids) - MARGIN
            y1 = max(self.boxes[n].y + self.boxes[n].h / 2 for n in ids) + MARGIN + self.title_h[ri]
            self.cluster_bb[cid] = (x0, y0, x1, y1)

    # --- 6. edges -------------------------------------------------------------------------------
    def route_edges(self):
        """The bus lanes first, then every other edge: straight, or around the boxes in its way."""
        for li, params in self.bus.items():
            self._route_bus(li, params)
        corridors = []
        edges_x = sorted((self.col_x[c] - self.col_w[c] / 2 - MARGIN, self.col_x[c] + self.col_w[c] / 2 + MARGIN)
                         for c in self.cols)
        for (l0, r0), (l1, r1) in zip(edges_x, edges_x[1:]):
            corridors.append((r0 + l1) / 2)
        if edges_x:
            corridors += [edges_x[0][0] - COL_GAP / 2, edges_x[-1][1] + COL_GAP / 2]
        self.rects = {nid: (b.x, b.y, b.w, b.h) for nid, b in self.boxes.items()}
        for b, _ in self.label_boxes:
            self.rects[b.id] = (b.x, b.y, b.w, b.h)
        # each timestep's title (t, ||dL/dh_t||) is an obstacle too: no edge or number runs across it
        for cid, bb in self.cluster_bb.items():
            label = self.pic.cluster_labels.get(cid)
            if label:
                w, h = text_size(label)
                self.rects[f"title:{cid}"] = ((bb[0] + bb[2]) / 2, bb[3] - h / 2, min(w, bb[2] - bb[0]), h)
        grid = Grid({k: r for k, r in self.rects.items() if k not in self.anchors})   # edges end at anchors
        self.parallel = {}                         # an LSTM's h and c edges: side by side, not on top
        for e in self.g.edges:
            if e.kind == "state":
                self.parallel.setdefault((e.src, e.dst), []).append(e)
        for k, e in enumerate(self.g.edges):
            if k in self.routes:
                continue
            a, b = self.boxes[e.src], self.boxes[e.dst]
            side, dy = None, 0.0
            if e.kind in ("state", "cut") and abs(a.y - b.y) < 1 and a.id in self.in_block and b.id in self.in_block:
                side = "lr" if b.x > a.x else "rl"
                twins = self.parallel.get((e.src, e.dst), [e])
                dy = (twins.index(e) - (len(twins) - 1) / 2) * -PARALLEL_GAP
            self.routes[k] = route(self.rects[e.src], self.rects[e.dst], grid, {e.src, e.dst}, corridors, side, dy)

    def place_numbers(self):
        """Numbers go where they cover no box, no title and no other edge (long horizontal runs,
        the bus lanes under the rows, are left out: they hold no numbers but their own)."""
        marks = dict(self.rects)
        for k in range(len(self.g.edges)):
            for (x0, y0), (x1, y1) in zip(self.routes[k], self.routes[k][1:]):
                if abs(x1 - x0) < 400:
                    marks[("edge", k, x0, y0)] = ((x0 + x1) / 2, (y0 + y1) / 2, abs(x1 - x0) + 2, abs(y1 - y0) + 2)
        for k, e in enumerate(self.g.edges):       # the bus numbers are placed already: keep off them
            if k in self.labels:
                (x, y), (w, h) = self.labels[k][0], _label_size(self.g, e, 1)
                marks[("label", k)] = (x + w / 2, y, w, h)
        label_grid = Grid(marks)
        for k, e in enumerate(self.g.edges):
            if k not in self.labels:
                size = _label_size(self.g, e, len(self.parallel.get((e.src, e.dst), ())))
                self.labels[k] = place_label(self.routes[k], size, label_grid, k)

    def _route_bus(self, ri, params):
        """Param -> right -> down to its lane under the row -> along the lane -> up the block's left
        corridor -> across the gap under the target's layer -> up into the target."""
        boxes, in_block, line_of = self.boxes, self.in_block, self.line_of
        ids = [n for (rj, _), members in self.blocks.items() if line_of[rj] == ri for n in members]
        row_bottom = min(boxes[n].y - boxes[n].h / 2 for n in ids) - MARGIN
        params = sorted(params, key=lambda p: (boxes[p].y, p))      # lowest first
        side_right = max(boxes[p].x + boxes[p].w / 2 for p in params)
        layer_bottom = {}
        for (rj, c), (layers, _) in self.block_layout.items():
            if line_of[rj] == ri:
                for layer in layers:
                    lb = min(boxes[m].y - boxes[m].h / 2 for m in layer)
                    for m in layer:
                        layer_bottom[m] = lb
        index = {id(e): k for k, e in enumerate(self.g.edges)}
        uses = {p: [e for e in self.out.get(p, ()) if e.dst in in_block and line_of[in_block[e.dst][0]] == ri]
                for p in params}
        entries = {}
        for j, p in enumerate(params):
            for e in uses[p]:
                entries.setdefault(e.dst, []).append(j)
        for j, p in enumerate(params):
            bp = boxes[p]
            start = (bp.x + bp.w / 2, bp.y)
            x_down = side_right + 12 + LANE_X * j
            lane_y = row_bottom - self.lane_gap * (len(params) - j)
            for e in uses[p]:
                c = in_block[e.dst][1]
                bt = boxes[e.dst]
                x_up = self.col_x[c] - self.col_w[c] / 2 - MARGIN + CORRIDOR0 + LANE_X * j
                same = sorted(entries[e.dst])
                x_in = bt.x + (same.index(j) - (len(same) - 1) / 2) * 10
                y_gap = layer_bottom[e.dst] - 9 - 4 * j
                points = [start, (x_down, start[1]), (x_down, lane_y), (x_up, lane_y), (x_up, y_gap), (x_in, y_gap),
                          (x_in, bt.y - bt.h / 2)]
                self.routes[index[id(e)]] = _dedupe(points)
                self.labels[index[id(e)]] = ((x_up + 4, lane_y + 10), "left")

    def placement(self):
        p = Placement()
        for nid, b in self.boxes.items():
            p.pos[nid] = (round(b.x, 1), round(b.y, 1))
            p.size[nid] = (b.w, b.h)
        for b, ri in self.label_boxes:
            p.row_labels.append((b.id, ri, (round(b.x, 1), round(b.y, 1))))
        p.cluster_bb = self.cluster_bb
        p.routes = [self.routes[k] for k in range(len(self.g.edges))]
        p.label_at = [self.labels[k] for k in range(len(self.g.edges))]
        return p


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


def _label_size(g, e, twins):
    """The size of an edge's number, before the number is known: the widest it can be
    ("W_hh += 0.00e-00" on a parameter's use, "c 0.00e-00" on one of two parallel state edges)."""
    if e.kind == "cut":
        text = "detach() \u2702"
    elif e.kind == "param":
        text = f"{alias(g.nodes[e.src].name) or 'param'} += 0.00e-00"
    elif e.kind == "state" and twins > 1:
        text = f"{e.info.get('state_name') or 'h'} 0.00e-00"
    else:
        text = "0.00e-00"
    return text_width(text, "small"), FONT_SIZE["small"] + 4


def _cluster_label_h(pic, ri):
    h = 0.0
    for cid, c in pic.unrolled.clusters.items():
        if c.order and c.order[0] == ri:
            h = max(h, text_size(pic.cluster_labels.get(cid))[1])
    return h


def _layout_block(ids, boxes, into, out, order, g):
    """Layers (bottom to top) of one block, and its width; sets each box's x relative to the block."""
    members = set(ids)
    inside_preds = {n: [e.src for e in into.get(n, ()) if e.src in members] for n in ids}
    inside_succs = {n: [e.dst for e in out.get(n, ()) if e.dst in members] for n in ids}
    layers = _block_layers(ids, inside_preds, inside_succs, order, g)
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
        for k in list(range(1, len(layers))) + list(range(len(layers) - 2, -1, -1)):
            def bary(n):
                nb = [pos[p] for p in inside_preds[n] + inside_succs[n] if p in pos]
                return (sum(nb) / len(nb) if nb else pos[n]) + bias[n]
            layers[k].sort(key=lambda n: (bary(n), order[n]))
            for i, n in enumerate(layers[k]):
                pos[n] = float(i)
    _block_x(layers, boxes, inside_preds, inside_succs)
    left = min(boxes[n].x - boxes[n].w / 2 for n in ids)
    right = max(boxes[n].x + boxes[n].w / 2 for n in ids)
    for n in ids:
        boxes[n].x -= left
    return layers, right - left


def _block_layers(ids, inside_preds, inside_succs, order, g):
    """Longest-path layers of a block (inputs and constants right under their first consumer)."""
    leafish = {n for n in ids if g.nodes[n].kind in ("input", "const", "cut")}
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
    return layers


def _block_x(layers, boxes, inside_preds, inside_succs):
    """Coordinates: pack each layer, then pull nodes over their neighbours."""
    for lay in layers:
        x = 0.0
        for n in lay:
            boxes[n].x = x + boxes[n].w / 2
            x += boxes[n].w + GAP_X
    for _ in range(6):
        for k in list(range(len(layers))) + list(range(len(layers) - 1, -1, -1)):
            lay = layers[k]
            desired = []
            for n in lay:
                nb = [boxes[p].x for p in inside_preds[n] + inside_succs[n]]
                desired.append(sum(nb) / len(nb) if nb else boxes[n].x)
            for n, d in zip(lay, desired):
                boxes[n].x = d
            _spread(lay, boxes)


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
