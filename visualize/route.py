"""Edge geometry for the precomputed layout: straight where possible, around boxes where not.

Graphviz's own router (``neato`` with ``splines=true``) takes many seconds on a
50-step LSTM, so edges are routed here: a straight segment between the two box
borders when it crosses no other box, otherwise a three-leg detour through a free
vertical corridor (a gap between columns or next to the blocking box). Corners are
rounded. Every edge then carries its own ``pos``, and rendering is just drawing.
"""

PAD = 3.0


def border_point(box, toward):
    """Where the segment from the centre of ``box`` (x, y, w, h) to ``toward`` leaves the box."""
    x, y, w, h = box
    dx, dy = toward[0] - x, toward[1] - y
    if dx == 0 and dy == 0:
        return (x, y)
    sx = (w / 2) / abs(dx) if dx else float("inf")
    sy = (h / 2) / abs(dy) if dy else float("inf")
    s = min(sx, sy)
    return (x + dx * s, y + dy * s)


def hits(p, q, box, pad=PAD):
    """Does segment p-q pass through the rectangle (x, y, w, h) grown by ``pad``? (Liang-Barsky clip)"""
    x, y, w, h = box
    x0, x1, y0, y1 = x - w / 2 - pad, x + w / 2 + pad, y - h / 2 - pad, y + h / 2 + pad
    t0, t1 = 0.0, 1.0
    dx, dy = q[0] - p[0], q[1] - p[1]
    for d, lo, hi, v in ((dx, x0, x1, p[0]), (dy, y0, y1, p[1])):
        if d == 0:
            if v < lo or v > hi:
                return False
            continue
        a, b = (lo - v) / d, (hi - v) / d
        if a > b:
            a, b = b, a
        t0, t1 = max(t0, a), min(t1, b)
        if t0 > t1:
            return False
    return t1 - t0 > 1e-6


class Grid:
    """Boxes bucketed by x, so "what does this segment cross" looks at a few boxes only."""

    def __init__(self, boxes, cell=150.0):
        self.cell = cell
        self.buckets = {}
        for key, box in boxes.items():
            self.add(key, box)

    def add(self, key, box):
        x, y, w, h = box
        for i in range(int((x - w / 2) // self.cell), int((x + w / 2) // self.cell) + 1):
            self.buckets.setdefault(i, []).append((key, box))

    def cost(self, rect, own=None):
        """What the rectangle (x, y, w, h) would cover: 100 per box or timestep title, 5 per
        number, 1 per edge segment. Keys ("edge", own, ...) are the segments of the edge
        being labelled, which its own number may touch."""
        x, y, w, h = rect
        total, seen = 0, set()
        for i in range(int((x - w / 2) // self.cell), int((x + w / 2) // self.cell) + 1):
            for key, (bx, by, bw, bh) in self.buckets.get(i, ()):
                if key in seen or not (abs(bx - x) < (bw + w) / 2 and abs(by - y) < (bh + h) / 2):
                    continue
                seen.add(key)
                if not isinstance(key, tuple):
                    total += 100
                elif key[0] == "label":
                    total += 5
                elif key[1] != own:
                    total += 1
        return total

    def crossed(self, p, q, skip):
        lo, hi = sorted((p[0], q[0]))
        seen, out = set(), []
        for i in range(int(lo // self.cell) - 1, int(hi // self.cell) + 2):
            for key, box in self.buckets.get(i, ()):
                if key in skip or key in seen:
                    continue
                seen.add(key)
                if hits(p, q, box):
                    out.append(box)
        return out


def route(a_box, b_box, grid, skip, corridors=(), side=None, dy=0.0):
    """A polyline from box a to box b (each (x, y, w, h)) that avoids the grid's other boxes.

    ``side``: "lr" to leave a's right side and enter b's left (a state edge to the next
    step), "rl" for the opposite direction, None for centre-to-centre; ``dy`` moves a
    side-to-side edge up or down (two parallel state edges, h and c)."""
    ax, ay, aw, ah = a_box
    bx, by, bw, bh = b_box
    if side == "lr":
        p, q = (ax + aw / 2, ay + dy), (bx - bw / 2, by + dy)
    elif side == "rl":
        p, q = (ax - aw / 2, ay + dy), (bx + bw / 2, by + dy)
    else:
        p, q = border_point(a_box, (bx, by)), border_point(b_box, (ax, ay))
    blocking = grid.crossed(p, q, skip)
    if not blocking:
        return [p, q]
    going_up = by > ay
    y1 = ay + (ah / 2 + 10) * (1 if going_up else -1)
    y2 = by - (bh / 2 + 10) * (1 if going_up else -1)
    start = (ax, ay + ah / 2 * (1 if going_up else -1))
    end = (bx, by - bh / 2 * (1 if going_up else -1))
    candidates = []
    for box in blocking:
        candidates += [box[0] - box[2] / 2 - 9, box[0] + box[2] / 2 + 9]
    candidates += list(corridors)
    best, best_n = None, None
    for x in sorted(set(round(c, 1) for c in candidates), key=lambda c: abs(c - (ax + bx) / 2)):
        pts = [start, (start[0], y1), (x, y1), (x, y2), (end[0], y2), end]
        n = sum(len(grid.crossed(u, v, skip)) for u, v in zip(pts, pts[1:]))
        if best_n is None or n < best_n:
            best, best_n = pts, n
            if n == 0:
                break
    return _simplify(best)


def _simplify(points):
    out = []
    for pt in points:
        pt = (round(pt[0], 1), round(pt[1], 1))
        if out and out[-1] == pt:
            continue
        if len(out) >= 2 and _collinear(out[-2], out[-1], pt):
            out[-1] = pt
            continue
        out.append(pt)
    return out


def _collinear(a, b, c):
    return abs((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])) < 1e-6


def place_label(points, size, grid, own=None):
    """Where an edge's number goes: beside the middle of a leg, the longest first, on the first
    side where a text of ``size`` (w, h) covers no box (no timestep title, no other edge or
    number) of the grid, else where it covers least. The number is then added to the grid.

    Returns ((x, y), anchor): "left" means the text starts at x (beside a vertical leg),
    "center" that it is centred on x (above a horizontal leg)."""
    w, h = size
    legs = sorted(zip(points, points[1:]), key=lambda s: -((s[1][0] - s[0][0]) ** 2 + (s[1][1] - s[0][1]) ** 2))
    candidates = []
    for (x0, y0), (x1, y1) in legs:
        for f in (0.5, 0.3, 0.7, 0.15, 0.85):
            mx, my = x0 + (x1 - x0) * f, y0 + (y1 - y0) * f
            if abs(x1 - x0) < abs(y1 - y0):      # mostly vertical: text to the right, else to the left
                candidates += [((mx + 4, my), "left", (mx + 4 + w / 2, my)),
                               ((mx - 4 - w, my), "left", (mx - 4 - w / 2, my))]
            else:                                # mostly horizontal: text above, else below
                candidates += [((mx, my + 10), "center", (mx, my + 10)), ((mx, my - 10), "center", (mx, my - 10))]
    chosen, best = candidates[0], None
    for candidate in candidates:             # the first free place, else the one that covers least
        cost = grid.cost((candidate[2][0], candidate[2][1], w, h), own)
        if best is None or cost < best:
            chosen, best = candidate, cost
            if cost == 0:
                break
    grid.add(("label", own), (chosen[2][0], chosen[2][1], w, h))      # the next number keeps off this one
    return chosen[0], chosen[1]
