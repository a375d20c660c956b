"""Debug overlays on the unrolled picture: where the first NaN/inf appeared, which gradients
disagree with finite differences, and what each timestep keeps in memory for backward.

* ``draw_anomaly(loss)`` finds the first non-finite value the way ``tg.detect_anomaly()``
  does (forward in the order ops ran, then backward in the order gradients were made),
  but without stopping the program: the op is outlined in vermillion and every path
  from it to the loss is drawn. Forward values of intermediates exist only if the
  graph was built inside ``with tg.retain_values():``; otherwise the first non-finite
  *gradient* is marked (the legend says which).
* ``draw_gradcheck(fn, inputs)`` compares each input's analytic gradient with central
  differences along a random direction; inputs that disagree are marked, and so are
  the ops that lie only on paths to them (the suspects).
* ``memory_by_step(loss)`` / ``draw_bptt(loss, memory=True)``: bytes of the arrays that
  the ops of each timestep saved for backward. After ``h = h.detach()`` the next chunk's
  graph no longer reaches the earlier chunk, whose arrays its own backward freed.
"""
import numpy as np

import tinygrad_rnn as tg
from tinygrad_rnn.tensor import Tensor

from . import style as S
from .annotate import annotate, gradient_paths, mark
from .draw import roots_of, to_picture
from .layout import layout
from .record import record
from .trace import host, leaf_node, trace
from .collapse import fit
from .unroll import place, row_label


# ----------------------------------------------------------------------------------- anomaly
def find_anomaly(loss):
    """Where the first NaN/inf of ``loss``'s forward and backward passes appears, as a dict with
    ``phase`` ("forward" or "backward"), ``op``, ``scope`` and ``node`` (the picture's node id),
    or None when everything is finite. Like ``tg.detect_anomaly()``, but after the fact."""
    return draw_anomaly(loss).anomaly


def _first_bad_value(g):
    """The first non-finite value in a traced graph, in the order the forward pass made them."""
    for node in g.nodes.values():          # forward order: the order ops ran
        if node.kind == "op":
            for out in node.outputs:
                v = out.get("value")
                if v is not None and not _finite(v):
                    return {"phase": "forward", "node": node.id, "op": node.op, "scope": node.scope}
        elif node.kind in ("param", "leaf", "input"):
            v = node.outputs[0].get("value") if node.outputs else None
            if v is not None and not _finite(v):
                return {"phase": "forward", "node": node.id, "op": None, "scope": (), "leaf": node.name}
    return None


def _first_bad_gradient(g, grads):
    for consumer, contributions in grads.events:       # the order backward produced them
        for edge_key, grad in contributions:
            if not _finite(grad):
                node = g.nodes[consumer]
                return {"phase": "backward", "node": consumer, "op": node.op, "scope": node.scope,
                        "into": edge_key[0]}
    return None


def _finite(a):
    a = np.asarray(host(a))
    return a.dtype.kind not in "fc" or bool(np.all(np.isfinite(a)))


def draw_anomaly(loss, level="op", timesteps=None, params=None, max_nodes=400, title=None):
    """The unrolled picture with the first NaN/inf marked and its paths to the loss highlighted.

    Returns a Digraph whose ``.anomaly`` is the dict of ``find_anomaly`` (None if all is finite;
    ``"located": False`` when only the loss is known to be non-finite)."""
    roots = roots_of(loss)
    traced = trace(roots, params)
    grads = record(traced, roots)
    g, rows = place(traced)
    found = _first_bad_value(g)
    values_known = any(o.get("value") is not None for n in g.nodes.values() if n.kind == "op" for o in n.outputs)
    if found is None:
        found = _first_bad_gradient(g, grads)
    if found is None and not values_known:
        for (node_id, index), root in zip(g.roots, roots):
            if not _finite(root.data):           # the loss itself is NaN/inf: forward, somewhere before it
                node = g.nodes[node_id]
                found = {"phase": "forward", "node": node_id, "op": node.op, "scope": node.scope, "located": False}
                break
    opts = dict(gradients=True, show_values=True, formulas=False, edge_labels=True, level=level)
    unrolled = fit(g, rows, level, timesteps, max_nodes)
    notes = []
    if found is None:
        notes.append("every value and gradient is finite")
    else:
        where = "/".join(g.nodes[found["node"]].scope) or "top level"      # as drawn: steps from t = 1
        what = f"{found['op']} at {where}" if found["op"] else f"leaf {found.get('leaf')}"
        found["scope"] = traced.nodes[found["node"]].scope      # as the engine names it (tg.detect_anomaly())
        if found.get("located") is False:
            notes.append(f"the output of {what} is not finite, but forward values were not kept: build the graph "
                         f"inside `with tg.retain_values():` to find the op that made the first NaN/inf")
        else:
            notes.append(f"first non-finite value: {found['phase']} of {what} (vermillion), with every path to the loss")
        if found["phase"] == "backward" and not values_known:
            notes.append("forward values were not kept: build the graph inside `with tg.retain_values():` to check "
                         "the forward pass too")
    pic = annotate(unrolled, grads, opts, title=title)
    pic.notes = notes + pic.notes
    placement = layout(pic) if pic.positioned else None
    if found is not None:
        mark(pic, *_paths_to_roots(g, found["node"]))
    out = to_picture(pic, placement)
    out.anomaly = found
    return out


def _paths_to_roots(g, start):
    """Nodes and edges on every path from ``start`` up to a root (data flow, cut edges excluded)."""
    roots = [r for r, _ in g.roots]
    down = g.descendants([start])
    up = g.ancestors(roots)
    nodes = down & up
    edges = [e for e in g.edges if e.src in nodes and e.dst in nodes and e.kind != "cut"]
    return nodes, edges


# ----------------------------------------------------------------------------------- gradcheck
def check_leaves(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0):
    """For each input that requires grad: (analytic <g, v>, numeric (L(x+eps v) - L(x-eps v)) / 2 eps)
    along a random direction v. Returns {input position: (analytic, numeric, ok)}."""
    inputs = list(inputs)
    rng = np.random.default_rng(seed)
    out = {}
    loss = fn(*inputs)
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        raise ValueError(f"draw_gradcheck: fn must return a scalar Tensor, got "
                         f"{'shape ' + str(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__}")
    g = trace([loss])
    grads = record(g, [loss])
    for i, x in enumerate(inputs):
        if not (isinstance(x, Tensor) and x.requires_grad):
            continue
        if x.dtype != "float64":
            raise TypeError(f"draw_gradcheck: input {i} is {x.dtype}; finite differences need float64")
        node_id = leaf_node(g, x)
        grad = grads.grad(node_id) if node_id in g.nodes else None
        v = rng.standard_normal(x.shape)
        analytic = float(np.sum(np.asarray(grad) * v)) if grad is not None else 0.0
        base = x.data
        values = []
        try:                              # x is the caller's tensor: put its values back whatever fn does
            for sign in (1, -1):
                x.data = x.backend.asarray(host(base) + sign * eps * v, "float64")
                with tg.no_grad():
                    values.append(float(fn(*inputs).item()))
        finally:
            x.data = base
        numeric = (values[0] - values[1]) / (2 * eps)
        out[i] = (analytic, numeric, abs(analytic - numeric) <= atol + rtol * abs(numeric))
    return out, loss, g, grads


def draw_gradcheck(fn, inputs, level="op", eps=1e-6, atol=1e-5, rtol=1e-3, params=None, max_nodes=400, title=None):
    """The unrolled picture of ``fn(*inputs)`` (a scalar) with every input whose gradient disagrees
    with finite differences marked, and the ops only on paths to those inputs marked as suspects.

    Returns a Digraph whose ``.mismatches`` lists (input position, name, analytic, numeric)."""
    inputs = list(inputs)
    results, loss, traced, grads = check_leaves(fn, inputs, eps, atol, rtol)
    if params is not None:
        traced = trace([loss], params)
        grads = record(traced, [loss])
    g, rows = place(traced)
    opts = dict(gradients=True, show_values=False, formulas=True, edge_labels=True, level=level)
    pic = annotate(fit(g, rows, level, None, max_nodes), grads, opts, title=title)
    placement = layout(pic) if pic.positioned else None
    group_of = pic.unrolled.group_of
    bad, good, mismatches = [], [], []
    for i, (a, n, ok) in results.items():
        x = inputs[i]
        node_id = leaf_node(traced, x)
        if node_id is None:
            continue
        (good if ok else bad).append(node_id)
        if not ok:
            mismatches.append((i, x.name, a, n))
            box = pic.boxes[group_of.get(node_id, node_id)]
            box.lines = box.lines + [(f"analytic {S.fmt(a)} \u2260 numeric {S.fmt(n)}", "warn")]
    roots = list(g.roots)
    bad_paths, _ = gradient_paths(g, [(b, 0) for b in bad], roots) if bad else (set(), [])
    good_paths, _ = gradient_paths(g, [(b, 0) for b in good], roots) if good else (set(), [])
    suspects = {n for n in bad_paths - good_paths if g.nodes[n].kind == "op"}
    mark(pic, set(bad), [], colour=S.SUSPECT)
    mark(pic, suspects, [e for e in g.edges if e.src in suspects and e.dst in suspects], colour=S.SUSPECT)
    notes = []
    if mismatches:
        names = ", ".join(repr(m[1] or f"input {m[0]}") for m in mismatches)
        notes.append(f"gradient check failed for {names}: marked, with the ops that only they depend on "
                     f"(suspects: {', '.join(sorted({g.nodes[s].op for s in suspects})) or 'none'})")
    else:
        notes.append(f"every input's gradient agrees with finite differences (eps={eps}, rtol={rtol}, atol={atol})")
    pic.notes = notes + pic.notes
    out = to_picture(pic, placement)
    out.mismatches = mismatches
    out.suspects = sorted(suspects)
    return out


# ----------------------------------------------------------------------------------- memory
def memory_by_step(loss):
    """{(row label, t): bytes} of the arrays saved for backward by the ops of each timestep
    (each array counted once, at the first op that saved it; ops outside any timestep under t=None)."""
    traced = trace(roots_of(loss))
    g, rows = place(traced)
    labels = {r.key: row_label(r.key, r.layer, r.reverse) for r in rows}
    out = {}
    for node in g.nodes.values():
        if "saved_bytes" in node.info:
            key = (labels.get(node.row, ""), node.t)
            out[key] = out.get(key, 0) + node.info["saved_bytes"]
    return out
