"""The words and numbers inside each box: names, shapes, values, gradient norms, formulas.

Used by the annotate stage. Labels are lists of rows ``(text, font)`` (fonts in render.py),
escaped by render.py. ``facts`` is what the stages found out about a box (its uses, its
per-use gradient terms, ...); gradients come as arrays, already summed by the caller.
"""
import re

import numpy as np

from .names import STATE_NAME, alias, short
from .record import array_norm, norm
from .style import fmt, fmt_bytes
from .trace import host

OP_TITLES = {"logsoftmax": "log_softmax", "getitem": "index [ ]", "matmul": "matmul @"}
SHOWS_ARGS = ("linear", "matmul", "mul", "add", "sub", "div", "lerp", "embedding", "where", "pick")
PART_TITLES = {"cell": "cell", "readout": "output + loss", "pre": "input projection", "post": "stack outputs"}


def summarize(a, limit=6):
    """A few numbers for a small tensor, a one-line summary for a big one."""
    if a is None:
        return None
    a = np.asarray(host(a))
    if a.size == 0:
        return "[]"
    flat = a.reshape(-1)
    if a.dtype.kind == "b":
        return f"{int(flat.sum())} of {a.size} true"
    if a.dtype.kind in "iu" and a.size <= limit:      # ids and counts: as integers, not 1.00
        return str(int(flat[0])) if a.size == 1 else "[" + ", ".join(str(int(x)) for x in flat) + "]"
    if a.size == 1:
        return fmt(flat[0])
    if a.size <= limit:
        return "[" + ", ".join(fmt(x) for x in flat) + "]"
    f = flat.astype(np.float64)
    finite = f[np.isfinite(f)]
    bad = f.size - finite.size
    if finite.size == 0:
        return f"all {f.size} non-finite"
    s = f"mean {fmt(finite.mean())}, range [{fmt(finite.min())}, {fmt(finite.max())}]"
    return s + (f", {bad} non-finite" if bad else "")


def shape_text(shape):
    return "scalar" if shape == () else "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def grad_symbol(name):
    """dL/d(name); an unnamed op output is "out" (not "y", which the lecture uses for y_t)."""
    return f"\u2202L/\u2202{short(name) or 'out'}"


def time_range(ts):
    ts = sorted(ts)
    if not ts:
        return ""
    if len(ts) == 1:
        return f"t = {ts[0]}"
    if ts == list(range(ts[0], ts[-1] + 1)):
        return f"t = {ts[0]}\u2026{ts[-1]}"
    return "t = " + ", ".join(str(t) for t in ts)


def op_title(node, into, nodes):
    """``linear(·, W_hh, b_hh)``: the op and the parameters it reads, so W_hh can be counted along a path.
    ``into``: {node id: edges into it}, ``nodes``: {id: node} of the graph ``node`` belongs to."""
    title = OP_TITLES.get(node.op, node.op)
    names = []
    for e in sorted(into.get(node.id, ()), key=lambda e: e.slot):
        src = nodes[e.src]
        if src.kind in ("param", "leaf"):
            names.append(alias(src.name) or "leaf")
        elif src.kind == "const":
            names.append(src.name or const_text(src))
        else:
            names.append("\u00b7")
    if node.op in SHOWS_ARGS and any(n != "\u00b7" for n in names):
        return f"{title}({', '.join(names)})"
    return title


def const_text(node):
    """A constant's value: the number, "0" for zeros of any shape, or its shape."""
    out = node.outputs[0] if node.outputs else {"shape": (), "value": None}
    v = out["value"]
    a = np.asarray(host(v)) if v is not None else None
    if a is not None and a.size > 1 and a.dtype.kind != "b" and not a.any():
        return "0"
    if a is not None and a.size <= 6:
        return summarize(a)
    return shape_text(out["shape"])


def op_lines(node, into, nodes, grads, opts):
    """An op's box: what it computes, its outputs, their values and gradients (``grads``: one
    array or None per output)."""
    lines = [(op_title(node, into, nodes), "title")]
    for i, out in enumerate(node.outputs):
        name = out["name"]
        shape = shape_text(out["shape"])
        prefix = f"{name}  " if name else ""
        lines.append((f"{prefix}{shape}" if name or len(node.outputs) == 1 else f"[{i}] {shape}",
                      "main" if name else "small"))
        if len(node.outputs) > 4 and i == 1:
            lines.append((f"\u2026 {len(node.outputs) - 2} more outputs", "small"))
            break
    if opts.get("show_values"):
        vals = [out["value"] for out in node.outputs]
        if len(vals) == 1 and vals[0] is not None:
            lines.append((summarize(vals[0]), "value"))
    _grad_lines(node, grads, lines, opts)
    if opts.get("formulas") and node.formula:
        lines.append((node.formula, "formula"))
    return lines


def _grad_lines(node, grads, lines, opts):
    if not opts.get("gradients"):
        return
    outs = node.outputs if len(node.outputs) <= 2 else []
    for out, grad in zip(outs, grads):
        if grad is not None:
            lines.append((f"\u2016{grad_symbol(out['name'])}\u2016 = {fmt(array_norm(grad))}", "grad"))
    if len(node.outputs) > 2:
        n = norm({i: grad for i, grad in enumerate(grads) if grad is not None})
        if n is not None:
            lines.append((f"\u2016\u2202L/\u2202outputs\u2016 = {fmt(n)}", "grad"))


def leaf_lines(node, facts, grad, opts):
    """A leaf's box (parameter, initial state, data, constant, detached state); ``grad``: its
    gradient (the total of its uses) or None."""
    out = node.outputs[0] if node.outputs else {"shape": (), "name": None, "value": None, "grad": None}
    kind = node.kind
    if kind in ("param", "leaf"):
        name = node.name or "leaf"
        a = alias(name)
        lines = [(name, "title")]
        lines.append((f"{a + '  ' if a and a != name else ''}{shape_text(out['shape'])}", "main"))
        uses = facts.get("uses_t", [])
        n_uses = facts.get("uses", 0)
        steps = facts.get("uses_steps", len(uses))
        if steps > 1:
            lines.append((f"shared: used at {steps} steps ({time_range(uses)})", "small"))
        elif n_uses > 1:
            lines.append((f"used by {n_uses} ops", "small"))
        if opts.get("show_values") and out["value"] is not None and np.asarray(host(out["value"])).size <= 6:
            lines.append((summarize(out["value"]), "value"))
        if opts.get("gradients") or (opts.get("show_grads") and grad is not None):
            lines.extend(param_grad_lines(node, facts, grad, opts))
        return lines
    if kind == "cut":
        cut = facts.get("cut") or {}
        where = "/".join(cut.get("scope", ())) or "top level"
        what = cut.get("name") or "tensor"
        lines = [(f"\u2702 detached {what}", "title"), (shape_text(out["shape"]), "small"),
                 (f"cut from {cut.get('op', '?')} at {where}", "small"), ("no gradient flows back", "small")]
        return lines
    if kind == "const":
        shape = out["shape"]
        value = const_text(node)
        text = value if value == shape_text(shape) or shape == () else f"{value}  {shape_text(shape)}"
        if node.name:                       # a named constant: "-1 / n = -0.167", "[t = true] (6, 4)"
            v = out["value"]
            is_mask = v is not None and np.asarray(host(v)).dtype.kind == "b"
            if is_mask or value == shape_text(shape):
                text = f"{node.name}  {shape_text(shape)}"
            else:
                text = f"{node.name} = {text}"
        return [(text, "small")]
    # data input
    name = node.name or "data"
    lines = [(name, "title" if node.name else "main"), (shape_text(out["shape"]), "small")]
    if opts.get("show_values", True) and out["value"] is not None:
        a = np.asarray(host(out["value"]))
        if a.size <= 8 or opts.get("show_values"):
            lines.append((summarize(a, limit=8), "value"))
    return lines + input_grad_lines(node, facts)


def input_box_lines(node, facts, rows, opts):
    """An input box of a stacked network at cell level: x_t under the first layer, or what the
    layer below hands up at step t ([h\u2192_t ; h\u2190_t]), with its gradient."""
    if node.kind == "ellipsis":
        ts = facts.get("elided", [])
        return [("\u22ef", "big"), (f"{len(ts)} steps not drawn", "main")]
    t = node.t
    if facts.get("data"):                 # x_t; a longer name says whose slice it is
        plain = node.name and re.fullmatch(r"[A-Za-z]\w{0,5}", node.name)
        name = f"{node.name if plain else 'x'}_{t}"
        lines = [(name, "title"), (f"the input of step {t}" if plain or not node.name else f"{node.name}, step {t}",
                                   "small")]
        show = opts.get("input_gradients")
    else:
        below = facts.get("rows_in") or []
        arrows = ["\u2190" if r.reverse else "\u2192" if len(below) > 1 else "" for r in below]
        parts = [f"h{arrow}_{t}" for arrow in arrows]
        name = "[" + " ; ".join(parts) + "]" if len(parts) > 1 else parts[0]
        layer = below[0].layer if below else None
        lines = [(name, "title"), (f"layer {layer}'s output at t = {t}" if layer is not None else "", "small")]
        show = opts.get("gradients")
    sent, whole = facts.get("in_parts", (0, 0))
    n = facts.get("in_grad")
    if show and n is not None and (sent == whole or not opts.get("stepping")):
        top = facts.get("input_grad_max")
        mark = "  \u25c0 largest" if facts.get("data") and top is not None and n == top else ""
        lines.append((f"\u2016\u2202L/\u2202{name}\u2016 = {fmt(n)}{mark}", "grad"))
    elif show and opts.get("stepping"):
        lines.append((f"{sent} of {whole} parts so far" if sent else "not reached yet", "small"))
    return lines


def input_grad_lines(node, facts):
    """||dL/dx_t|| of a data input (draw_bptt(..., input_gradients=True)), the largest one marked."""
    grads, top = facts.get("input_grads"), facts.get("input_grad_max")
    if not grads:
        return []
    x = "E[x_t]" if facts.get("input_grad_kind") == "embedding" else "x_t"

    def mark(n):
        return "  \u25c0 largest" if top is not None and n == top else ""
    if len(grads) == 1:
        t, n = grads[0]
        sym = short(node.name) if node.name and facts.get("input_grad_kind") != "embedding" else x.replace("t", str(t))
        return [(f"\u2016\u2202L/\u2202{sym}\u2016 = {fmt(n)}{mark(n)}", "grad")]
    lines = [(f"\u2016\u2202L/\u2202{x}\u2016 at each step:", "grad")]
    shown = grads if len(grads) <= 8 else grads[:3] + [(None, None)] + grads[-3:]
    for t, n in shown:
        lines.append((f"  t={t}: {fmt(n)}{mark(n)}" if t is not None else "  \u2026", "small"))
    return lines


def param_grad_lines(node, facts, total, opts):
    """The gradient of a leaf as the sum of its uses' shares (BPTT's "+=", one term per use).

    ``facts["terms"]``: one (label, share text, arrived) per use, the texts printed so that
    they add up to the printed ||total|| (style.fmt_sum)."""
    terms = facts.get("terms") or []
    sym = grad_symbol(alias(node.name) or node.name)
    stepping = opts.get("stepping")
    carried = [(label, text) for label, text, _ in terms if text is not None]
    arrived = [(label, text) for label, text, came in terms if text is not None and came]
    if stepping and len(terms) > 1 and len(arrived) < len(carried):
        lines = [(f"{sym} so far: {len(arrived)} of {len(terms)} terms added", "grad")]
        lines += _sum_rows(arrived)
        lines.append((f"sum so far: {fmt(facts['arrived_share'])}" if arrived else "not reached yet", "small"))
        return lines
    if total is None:
        if stepping:
            return [("not reached yet", "small")]
        return [("no gradient reached it", "small")] if opts.get("gradients") else []
    if len(carried) < 2 or not opts.get("gradients"):
        missing = len(terms) - len(carried) if opts.get("gradients") and len(terms) > 1 else 0
        extra = f" ({missing} of its {len(terms)} uses get no gradient)" if missing else ""
        return [(f"\u2016{sym}\u2016 = {fmt(array_norm(total))}{extra}", "grad")]
    missing = len(terms) - len(carried)
    head = f"\u2016{sym}\u2016 = {fmt(array_norm(total))}, the sum of its uses' shares"
    if missing:
        head += f" ({_plural(missing, 'use')} get{'s' if missing == 1 else ''} no gradient)"
    return [(head + ":", "grad")] + _sum_rows(carried)


def _sum_rows(terms):
    """"t=1: 0  +  t=2: 0.052  +  ...", four terms a row (the first and last three of many)."""
    shown = terms if len(terms) <= 8 else terms[:3] + [("\u2026", None)] + terms[-3:]
    parts = [f"{label}: {text}" if text is not None else label for label, text in shown]
    return [("  " + ("  +  " if k else "") + "  +  ".join(parts[k:k + 4]), "small") for k in range(0, len(parts), 4)]


def group_lines(node, facts, members, opts):
    """A collapsed box: what it computes, its outputs, and the gradient flowing through it.
    ``members``: the nodes it stands for."""
    ops = [m.op for m in members if m.kind == "op"]
    if node.kind == "ellipsis":
        return _ellipsis_lines(facts)
    if node.part == "layer":
        return _layer_lines(node, facts, members, ops, opts)
    if node.part == "pre":
        if "linear" in ops and "unbind" in ops:
            lines = [("W_ih x_t + b for every t", "title"), ("one matmul, then unbind into steps", "small")]
        else:
            lines = [("input projection", "title"), (op_summary(ops), "small")]
    elif node.part == "post":
        lines = [("stack h_t \u2192 output", "title"), (op_summary(ops), "small")]
    else:
        lines = [(PART_TITLES.get(node.part, node.part or "cell"), "title")]
        if node.part in PART_TITLES or node.t is None:      # a named cell (LSTMCell) needs no op list
            lines.append((op_summary(ops), "small"))
    outs = facts.get("out_names") or []
    if outs:
        lines.append(("\u2192 " + ", ".join(outs), "main"))
    if opts.get("show_values"):
        for name, value in facts.get("out_values", []):
            lines.append((f"{name} = {summarize(value)}", "value"))
    if opts.get("gradients"):
        for name, n in facts.get("out_grads", []):
            if node.t is not None and STATE_NAME.match(name or ""):
                continue        # the timestep's label shows it
            lines.append((f"\u2016{grad_symbol(name)}\u2016 = {fmt(n)}", "grad"))
    if opts.get("formulas"):
        formulas = []
        for m in members:
            if m.kind == "op" and m.formula and (m.op, m.formula) not in formulas:
                formulas.append((m.op, m.formula))
        for op, f in formulas[:6]:
            lines.append((f"{op}: {f}", "formula"))
    if facts.get("saved_bytes") is not None:
        lines.append((f"saves {fmt_bytes(facts['saved_bytes'])} for backward", "small"))
    return lines


def _ellipsis_lines(facts):
    if facts.get("dropped"):
        return [("\u22ef", "big"), (f"{facts['dropped']} earlier nodes not drawn", "main")]
    ts = facts.get("elided", [])
    lines = [("\u22ef", "big"), (f"{len(ts)} steps not drawn", "main"), (f"({time_range(ts)})", "small")]
    vals = [n for _, n in facts.get("state_norms") or () if n is not None]
    if vals:
        lines.append((f"\u2016\u2202L/\u2202h_t\u2016 from {fmt(min(vals))} to {fmt(max(vals))}", "grad"))
    return lines


def _layer_lines(node, facts, members, ops, opts):
    times = sorted({m.t for m in members if m.t is not None})
    lines = [(node.name or "loop", "title"), (f"{len(times)} steps, {time_range(times)}", "main"),
             (f"{len(ops)} ops: {op_summary(ops)}", "small")]
    strip = facts.get("state_norms")
    if strip and opts.get("gradients"):
        lines.append(("\u2016\u2202L/\u2202h_t\u2016 per step (left: first t):", "small"))
        lines.append(("strip", [(c, "") for c, _ in strip]))
        vals = [n for _, n in facts.get("state_values", []) if n is not None]
        if vals:
            lines.append((f"from {fmt(min(vals))} to {fmt(max(vals))}", "grad"))
    return lines


def _plural(n, word):
    return f"{n} {word}" + ("" if n == 1 else "s")


def op_summary(ops, limit=6):
    counts = {}
    for op in ops:
        counts[op] = counts.get(op, 0) + 1
    parts = [(f"{n}\u00d7 " if n > 1 else "") + OP_TITLES.get(op, op) for op, n in counts.items()]
    if len(parts) > limit:
        parts = parts[:limit] + [f"+{len(parts) - limit} more"]
    return ", ".join(parts) if parts else "(no ops)"


def host_array(a):
    """``a`` as a host NumPy array."""
    return np.asarray(host(a))
