"""Stage 2, unroll: scopes -> rows (layer, direction) and time columns.

The engine records where each op ran: ``("LSTM", "layer1_reverse", "t=3", "LSTMCell")``.
``place`` copies the traced graph and reads that into each node's ``row`` (everything
before ``t=<t>``), ``t`` and ``part`` (the cell, the readout, the layer's input
projection...), numbers the steps as the lecture notes do (t = 1..T), chains the chunks
of truncated BPTT, and orders the rows bottom to top. collapse.py then draws the placed
graph at a level of detail (zones.py: the inputs of stacked layers, one box per step).
"""
import heapq

from .graph import Graph
from .names import LAYER, STATE_NAME, time_of

LEVELS = ("op", "cell", "layer")
DEFAULT_MAX_NODES = 400


class Unrolled:
    """The boxes of one picture (``graph``), the placed graph they stand for (``placed``: every
    traced node with its row, t and part), ``group_of`` (placed id -> box id), the rows in
    drawing order, the clusters (one per shown (row, t)) and notes for the reader."""

    def __init__(self, graph, placed, rows, group_of, level):
        self.graph, self.placed, self.rows, self.group_of, self.level = graph, placed, rows, group_of, level
        self.clusters = {}      # cluster id -> Cluster
        self.cluster_of = {}    # box id -> cluster id
        self.hidden = {}        # a group drawn as several boxes (ops between layers) -> those boxes
        self.notes = graph.notes


class Cluster:
    """A box around the nodes of one timestep of one row."""

    __slots__ = ("id", "style", "order")

    def __init__(self, id, style, order):
        self.id, self.style, self.order = id, style, order


def _is_scalar(node, index):
    shape = node.outputs[index]["shape"] if index < len(node.outputs) else ()
    n = 1
    for s in shape:
        n *= s
    return n == 1


class Row:
    """One row of the unrolled picture: one layer and direction (or one user loop)."""

    def __init__(self, key, order):
        self.key = key
        self.order = order
        self.follows = None     # the row this one continues in time (truncated BPTT chunks)
        self.offset = 0         # added to t (chunks are numbered on from the row they follow)
        self.part_name = ""     # what tells this chunk from the others on its line ("chunk2")
        self.line_label = None  # the label of a line of chunks: what they share, then the chunks
        self.layer = None
        self.reverse = False
        self.times = []
        self.zone = None        # a row of input boxes: the Zone it draws
        for s in key:
            m = LAYER.match(s)
            if m:
                self.layer, self.reverse = int(m.group(1)), bool(m.group(2))

    @property
    def band(self):
        """Rows of one layer (both directions) share a band; a chunk shares its predecessor's."""
        if self.follows is not None:
            return self.follows.band
        return tuple(s[:-len("_reverse")] if s.endswith("_reverse") and LAYER.match(s) else s for s in self.key)

    @property
    def line(self):
        """The row whose horizontal line this row is drawn on."""
        r = self
        while r.follows is not None:
            r = r.follows
        return r

    @property
    def label(self):
        if self.line_label is not None:
            return self.line_label
        return row_label(self.key, self.layer, self.reverse)


def row_label(key, layer, reverse):
    """"RNN layer 0 / forward  →": a row's scopes without its layer, then the layer and direction."""
    head = " / ".join(s for s in key if not LAYER.match(s))
    if layer is None:
        return head
    direction = "reverse  \u2190" if reverse else "forward  \u2192"
    return f"{head + ' ' if head else ''}layer {layer}\n{direction}"


def place(traced):
    """A copy of the traced graph whose nodes know their row, timestep and part, and whose
    edges know which carry the state from step to step. Returns (placed graph, rows in
    drawing order, bottom to top)."""
    g = Graph()
    for node in traced.nodes.values():
        g.add(node.copy())
    for e in traced.edges:
        g.connect(e.copy())
    g.roots = list(traced.roots)
    g.notes = list(traced.notes)
    rows = _find_rows(g)
    _place_leaves(g)
    _split_cells(g)
    _mark_edges(g)
    for info in rows.values():
        info.times = sorted({n.t for n in g.nodes.values() if n.row == info.key and n.t is not None})
    ordered = sorted(rows.values(), key=lambda r: r.order)
    _join_cuts_to_rows(g, ordered)
    _chain_rows(g, ordered)
    return g, _order_rows(g, ordered)


def _find_rows(g):
    """Each op's row, t and part from its scope; the ops of a row outside its time loop (the
    hoisted input projection, the output stack) are its "pre" and "post" parts."""
    rows = {}
    for node in g.nodes.values():
        if node.kind != "op":
            continue
        i, t = time_of(node.scope)
        if i is not None:
            node.t = t
            node.row = node.scope[:i]
            node.part = node.scope[i + 1] if len(node.scope) > i + 1 else None
            if node.row not in rows:
                rows[node.row] = Row(node.row, len(rows))
    _number_from_one(g, rows)
    timed = {k: [n.id for n in g.nodes.values() if n.kind == "op" and n.t is not None and n.row == k] for k in rows}
    for node in g.nodes.values():
        if node.kind == "op" and node.t is None:
            if node.scope in rows and node.scope:   # a layer scope ("RNN", "layer0"), not the top level
                node.row = node.scope
            else:
                node.part = "top"
    for key in rows:
        row_nodes = [n for n in g.nodes.values() if n.kind == "op" and n.t is None and n.row == key]
        if not row_nodes:
            continue
        before = g.ancestors(timed[key])
        for n in row_nodes:
            n.part = "pre" if n.id in before else "post"
    return rows


def _number_from_one(g, rows):
    """The lecture notes' convention in every picture: steps t = 1..T, after the initial state
    h_0. The layers name their steps so ("t=1" first); a program whose own scopes count from 0
    is drawn one higher, and so is its "t=<t>" in every scope shown."""
    first = {}
    for node in g.nodes.values():
        if node.t is not None:
            first[node.row] = min(first.get(node.row, node.t), node.t)
    for node in g.nodes.values():
        if node.t is not None and first[node.row] == 0:
            _move(node, 1)


def _move(node, dt):
    """Step ``node`` dt steps on in time, in its t and in the "t=<t>" of its scope."""
    node.t += dt
    i, _ = time_of(node.scope)
    if i is not None:
        node.scope = node.scope[:i] + (f"t={node.t}",) + node.scope[i + 1:]


def _order_rows(g, rows):
    """Rows that feed others come first, so they are drawn lower and data flows up the picture
    (an encoder below the decoder its last state starts). Otherwise rows keep the order in
    which they first appear. Only the nearest rows count: each node passes on the rows that
    reach it through no other row's node, so this is one pass over the edges."""
    by_key = {r.key: r for r in rows}
    into = g.parents_of()
    near = {}                                   # node id -> keys of the rows that reach it
    feeds = {r.key: set() for r in rows}
    for node in g.nodes.values():               # forward order: parents first
        found = set()
        for e in into.get(node.id, ()):
            src = g.nodes[e.src]
            if src.row in by_key:
                found.add(src.row)
            else:
                found |= near.get(e.src, set())
        if node.row in by_key:
            for key in found - {node.row}:
                feeds[key].add(node.row)
        else:
            near[node.id] = found
    waiting = {r.key: 0 for r in rows}
    for key, targets in feeds.items():
        for k in targets:
            waiting[k] += 1
    ready = [(r.order, r.key) for r in rows if not waiting[r.key]]
    heapq.heapify(ready)
    out = []
    while ready:
        _, key = heapq.heappop(ready)
        out.append(by_key[key])
        for k in sorted(feeds[key]):
            waiting[k] -= 1
            if not waiting[k]:
                heapq.heappush(ready, (by_key[k].order, k))
    done = {r.key for r in out}
    out += [r for r in rows if r.key not in done]       # rows that feed each other: first appearance
    for i, r in enumerate(out):
        r.order = i
    return out


def _join_cuts_to_rows(g, rows):
    """A detached state whose origin op is not drawn (h_n = stack of the last states, which no
    loss reads) is joined to the last step of the matching row of the earlier chunk: the row
    under the cut's scope with the same layer path (("chunk1", "RNN", "layer0") for a consumer
    in ("chunk2", "RNN", "layer0"))."""
    out = g.children_of()
    order = {n: k for k, n in enumerate(g.nodes)}
    pending = {}
    for node in list(g.nodes.values()):
        cut = node.info.get("cut")
        if node.kind != "cut" or cut is None:
            continue
        edges = out.get(node.id, [])
        consumers = [g.nodes[e.dst] for e in edges]
        timed = [c for c in consumers if c.t is not None and c.row is not None]
        if not timed:
            continue
        prefix = tuple(cut["scope"])
        d_row = timed[0].row
        if len(d_row) < len(prefix):
            continue
        suffix = d_row[len(prefix):]
        match = [r for r in rows if r.key[:len(prefix)] == prefix and r.key[len(prefix):] == suffix and r.key != d_row]
        if len(match) != 1 or not match[0].times:
            continue
        first = min(order[c.id] for c in consumers)
        pending.setdefault((match[0].key, match[0].times[-1]), []).append((first, node, edges))
    states = state_outputs(g) if pending else {}
    for (key, t), cuts in pending.items():
        origins = states.get((key, t), [])
        for (_, node, edges), (name, origin, index) in zip(sorted(cuts, key=lambda x: x[0]), origins):
            for e in edges:
                e.src, e.src_index = origin, index
                e.info["cut_from"] = node.id
            del g.nodes[node.id]


def _chain_rows(g, rows):
    """Truncated BPTT drawn whole: when a detach() cut carries row A's last state into row B
    (two chunks, each run in its own scope), B continues A's line in time, to its right."""
    by_key = {r.key: r for r in rows}
    into, out = g.parents_of(), g.children_of()

    def nearest_timed(start, table, end):
        seen, stack, found = {start}, [start], []
        while stack:
            n = stack.pop()
            node = g.nodes[n]
            if node.t is not None and node.row in by_key:
                found.append(node)
                continue
            for e in table.get(n, ()):
                m = getattr(e, end)
                if m not in seen:
                    seen.add(m)
                    stack.append(m)
        return found

    for e in g.edges:
        if e.kind != "cut" or e.src not in g.nodes or g.nodes[e.src].kind == "cut":
            continue
        before = nearest_timed(e.src, into, "src")
        after = nearest_timed(e.dst, out, "dst")
        if not before or not after:
            continue
        a = by_key[max(before, key=lambda n: n.t).row]
        b = by_key[min(after, key=lambda n: n.t).row]
        if a is b or b.follows is not None or len(a.key) != len(b.key) or not a.times or not b.times:
            continue
        b.follows = a
        b.offset = a.offset + a.times[-1] + 1 - b.times[0]
    # number the steps on across chunks: chunk 2 of a 3-step truncation starts at t = 3
    chained = [r for r in rows if r.offset]
    for node in g.nodes.values():
        if node.t is not None and node.row in by_key and by_key[node.row].offset:
            _move(node, by_key[node.row].offset)
    for r in chained:
        r.times = [t + r.offset for t in r.times]
    lines = {}
    for r in rows:
        lines.setdefault(id(r.line), []).append(r)
    for members in lines.values():
        if len(members) > 1:
            _name_chunks(members)


def _name_chunks(members):
    """Rows drawn on one line (truncated-BPTT chunks): label the line with what their scopes
    share, and each chunk with what is its own ("chunk2")."""
    line = members[0].line
    keys = [r.key for r in members]
    shared = [i for i, s in enumerate(line.key) if all(k[i] == s for k in keys)]
    for r in members:
        r.part_name = " / ".join(s for i, s in enumerate(r.key) if i not in shared)
    names = [r.part_name for r in sorted(members, key=lambda r: r.times[0] if r.times else 0)]
    chunks = " \u2192 ".join(names) if len(names) <= 4 else f"{names[0]} \u2192 \u2026 \u2192 {names[-1]}"
    label = row_label(tuple(line.key[i] for i in shared), line.layer, line.reverse)
    line.line_label = f"{label}\n{chunks}" if label else chunks


def _place_leaves(g):
    out = g.children_of()
    for node in g.nodes.values():
        if node.kind == "op":
            continue
        consumers = [g.nodes[e.dst] for e in out.get(node.id, ())]
        places = {(c.row, c.t, c.part) for c in consumers}
        if node.kind in ("param",):
            node.part = "param"
        elif node.kind == "leaf":
            node.part = "init" if len(places) == 1 and consumers[0].t is not None else "param"
        elif len(places) == 1 and consumers and consumers[0].t is not None:
            c = consumers[0]
            node.row, node.t, node.part = c.row, c.t, c.part
            node.info["joined"] = True
        else:
            node.part = "input"


def _split_cells(g):
    """In a timestep without a named cell scope (a hand-written loop), tell the cell
    (what computes the next state) from the readout (outputs and losses)."""
    out = g.children_of()
    groups = {}
    for node in g.nodes.values():
        if node.t is not None and node.part is None:
            groups.setdefault((node.row, node.t), []).append(node)
    cell_sigs = {}
    members = {}
    for (row, t), nodes in groups.items():
        ids = {n.id for n in nodes}
        seeds = []
        for n in nodes:
            if n.kind != "op":
                continue
            for e in out.get(n.id, ()):
                d = g.nodes[e.dst]
                if d.row == row and d.t is not None and d.t != t and not _is_scalar(n, e.src_index):
                    seeds.append(n.id)
            if any(o["name"] and STATE_NAME.match(o["name"]) for o in n.outputs):
                seeds.append(n.id)
        cell = g.ancestors(seeds) & ids if seeds else set()
        members[(row, t)] = (nodes, cell)
        for sig in _signatures(nodes, cell):
            cell_sigs.setdefault(row, set()).add(sig)
    for (row, t), (nodes, cell) in members.items():
        known = cell_sigs.get(row, set())
        sigs = _signatures(nodes, None)
        for n, sig in zip(nodes, sigs):
            if n.kind != "op":
                continue
            n.part = "cell" if (n.id in cell or (not cell and sig in known)) else "readout"
    # leaves joined to a timestep follow their consumer's part
    for node in g.nodes.values():
        if node.kind != "op" and node.t is not None and node.part is None:
            consumers = [g.nodes[e.dst] for e in out.get(node.id, ())]
            node.part = consumers[0].part if consumers else "cell"


def _signatures(nodes, only):
    """(op name, how many times that op came before in the step) for each node: equal
    across timesteps that run the same code, so steps can be matched and aligned."""
    seen, sigs = {}, []
    for n in nodes:
        key = n.op or n.kind
        seen[key] = seen.get(key, 0) + 1
        sig = (key, seen[key])
        if only is None or n.id in only:
            sigs.append(sig)
    return sigs


def _mark_edges(g):
    for e in g.edges:
        if e.kind == "cut":
            continue
        a, b = g.nodes[e.src], g.nodes[e.dst]
        if a.t is not None and b.t is not None and a.row == b.row and a.t != b.t:
            e.kind = "accum" if _is_scalar(a, e.src_index) else "state"
        elif a.part == "init":
            e.kind = "state"


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


def time_id(t):
    return str(t) if t >= 0 else f"m{-t}"
