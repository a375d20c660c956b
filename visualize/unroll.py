"""Scopes -> the unrolled layout: rows (layer, direction), timesteps, and the detail level.

The engine records where each op ran: ``("LSTM", "layer1_reverse", "t=3", "LSTMCell")``.
``place`` reads that into ``node.row`` (everything before ``t=<t>``), ``node.t`` and
``node.part`` (the cell, the readout, the layer's input projection...). ``collapse``
then redraws the graph at a level of detail:

* ``"op"``: every primitive op;
* ``"cell"``: one box per cell call and timestep (the notes' "representational shortcut");
* ``"layer"``: one box per layer and direction, all timesteps inside.

Elided timesteps (``timesteps=``) fold into one "..." box per row. ``arrange`` finally
decides clusters, heights and left-to-right order for the renderer.
"""
import heapq
import re

from .graph import Edge, Graph, Node
from .trace import _safe_id

TIME = re.compile(r"^t=(-?\d+)$")
LAYER = re.compile(r"^layer(\d+)(_reverse)?$")
STATE_NAME = re.compile(r"^(h|c|s|state|hidden|cell)(_?\{?-?\d+\}?|_t|_prev)?$")
LEVELS = ("op", "cell", "layer")


def _time_index(scope):
    for i, s in enumerate(scope):
        if TIME.match(s):
            return i
    return None


def _is_scalar(node, index):
    shape = node.outputs[index]["shape"] if index < len(node.outputs) else ()
    n = 1
    for s in shape:
        n *= s
    return n == 1


class RowInfo:
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
        return _row_label(self.key, self.layer, self.reverse)


def _row_label(key, layer, reverse):
    head = " / ".join(s for s in key if not LAYER.match(s))
    if layer is None:
        return head
    direction = "reverse  \u2190" if reverse else "forward  \u2192"
    return f"{head + ' ' if head else ''}layer {layer}\n{direction}"


def place(g):
    """Give every node of a traced graph its row, timestep and part; mark state edges.

    Returns the rows in drawing order (bottom to top)."""
    rows = {}
    for node in g.nodes.values():
        if node.kind != "op":
            continue
        i = _time_index(node.scope)
        if i is not None:
            node.t = int(TIME.match(node.scope[i]).group(1))
            node.row = node.scope[:i]
            node.part = node.scope[i + 1] if len(node.scope) > i + 1 else None
            if node.row not in rows:
                rows[node.row] = RowInfo(node.row, len(rows))
    # ops of a row outside its time loop (the hoisted input projection, the output stack)
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
    _place_leaves(g, rows)
    _split_cells(g, rows)
    _mark_edges(g)
    for info in rows.values():
        info.times = sorted({n.t for n in g.nodes.values() if n.row == info.key and n.t is not None})
    ordered = sorted(rows.values(), key=lambda r: r.order)
    _join_cuts_to_rows(g, ordered)
    _chain_rows(g, ordered)
    return _order_rows(g, ordered)


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
    states = None
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
    for (key, t), cuts in pending.items():
        if states is None:
            from .draw import state_outputs
            states = state_outputs(g)
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
            node.t += by_key[node.row].offset
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
    label = _row_label(tuple(line.key[i] for i in shared), line.layer, line.reverse)
    line.line_label = f"{label}\n{chunks}" if label else chunks


def _place_leaves(g, rows):
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


def _split_cells(g, rows):
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


# --- collapsing ---------------------------------------------------------------------------
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


def collapse(g, rows, level="op", timesteps=None):
    """A new Graph at ``level`` with timesteps outside ``timesteps`` folded into one box per row."""
    if level not in LEVELS:
        raise ValueError(f"level: expected one of {', '.join(repr(x) for x in LEVELS)}, got {level!r}")
    row_index = {r.key: i for i, r in enumerate(rows)}
    shown = {r.key: set(shown_times(r.times, timesteps)) for r in rows}
    blocks = {r.key: _blocks([t for t in r.times if t not in shown[r.key]]) for r in rows}
    group_of = {}
    groups = {}

    def add_group(gid, kind, template, label, **info):
        if gid not in groups:
            node = Node(gid, kind, scope=template.scope)
            node.members = []
            node.row, node.t, node.part = template.row, template.t, template.part
            node.name = label
            node.info.update(info)
            groups[gid] = node
        return groups[gid]

    for node in g.nodes.values():
        ri = row_index.get(node.row)
        gid = None
        if ri is not None and node.t is not None and node.t not in shown[node.row]:
            block = blocks[node.row][node.t]
            gid = f"etc_r{ri}_{_tid(block[0])}"
            grp = add_group(gid, "ellipsis", node, f"{len(block)} steps", elided=block)
            grp.t = None
            grp.part = "ellipsis"
        elif level == "layer" and ri is not None:
            gid = f"layer_r{ri}"
            grp = add_group(gid, "group", node, rows[ri].label or "loop", level="layer")
            grp.t, grp.part = None, "layer"
        elif level == "cell" and ri is not None and node.t is not None and node.kind in ("op", "input", "const", "cut"):
            part = node.part or "cell"
            if node.kind != "cut" and (node.kind != "input" or part != "cell"):   # x_t and cuts stay visible
                gid = f"cell_r{ri}_t{_tid(node.t)}_{_safe_id(part, 20)}"
                add_group(gid, "group", node, part, level="cell")
        elif level == "cell" and ri is not None and node.part in ("pre", "post"):
            gid = f"{node.part}_r{ri}"
            add_group(gid, "group", node, node.part, level="cell")
        if gid is not None:
            groups[gid].members.append(node.id)
            group_of[node.id] = gid
    out = Graph()
    out.roots = [(group_of.get(n, n), i) for n, i in g.roots]
    out.objects = g.objects
    out.lookup = g.lookup
    out.notes = list(g.notes)
    emitted = set()
    for node in g.nodes.values():
        gid = group_of.get(node.id)
        if gid is None:
            out.add(node)
        elif gid not in emitted:
            emitted.add(gid)
            out.add(groups[gid])
    for grp in groups.values():
        grp.outputs = []
        grp.info["member_ops"] = [g.nodes[m].op for m in grp.members if g.nodes[m].kind == "op"]
    merged = {}
    for e in g.edges:
        a, b = group_of.get(e.src, e.src), group_of.get(e.dst, e.dst)
        if a == b:
            continue
        key = (a, b, e.kind)
        if e.kind == "state":          # h and c of an LSTM stay two edges, each with its own gradient
            key += (e.src, e.src_index)
        m = merged.get(key)
        if m is None:
            m = Edge(a, e.src_index if a == e.src else 0, b, e.slot if b == e.dst else 0, e.kind)
            m.info["members"] = []
            if e.kind == "state":
                m.info["state_name"] = g.nodes[e.src].outputs[e.src_index]["name"]
            merged[key] = m
            out.connect(m)
        m.info["members"].append(e)
        if e.grads:
            m.grads = dict(m.grads or {})
            for k, v in e.grads.items():
                m.grads[k] = v if k not in m.grads else m.grads[k] + v
    for m in out.edges:
        if len(m.info["members"]) == 1:
            m.info.update({k: v for k, v in m.info["members"][0].info.items() if k != "members"})
    out.member_graph = g
    out.group_of = group_of
    return out


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


def _tid(t):
    return str(t) if t >= 0 else f"m{-t}"
