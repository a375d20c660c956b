"""The printed tables of a run, and ``--compare``: the ratios of one run to another's.

Targets of the issues (#6, and #14 for the training step) sit next to each measured ratio with a ✓ or ✗: a report, never
an assertion (a shared machine is noisy; a check mark is a reading, not a test).
"""
TRAINING_TARGETS = {"tiny": 2.0, "small": 1.15, "mid": 1.05}    # engine step / by-hand step
PER_OP_TARGET_US = 2.0                                          # forward overhead per recorded op
ACTIVATIONS_TARGET = 1.5                                        # engine activations / by-hand cache
MARK = {True: "✓", False: "✗", None: " "}


def mark(value, target):
    return MARK[None if value is None or target is None else value <= target]


def mb(n):
    return f"{n / 2**20:.2f}"


def kb(n):
    return f"{n / 2**10:.1f}"


def table(headers, rows, align=None):
    """Plain text table: a header, a rule, one line per row; numbers right-aligned."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or ["<"] + [">"] * (len(headers) - 1)
    lines = []
    for k, r in enumerate(cells):
        lines.append("  ".join(f"{c:{a}{w}}" for c, a, w in zip(r, align, widths)).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def header(result):
    m, s = result["machine"], result["settings"]
    threads = f"BLAS threads {m['blas_threads'] if m['blas_threads'] is not None else '?'}"
    threads += f" (requested: {s['threads']})"
    if m["torch"]:
        threads += f", torch threads {m['torch_threads']}"
    lines = [
        f"tinygrad_rnn benchmarks ({result['created']}{', --quick' if s['quick'] else ''})",
        f"machine: {m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable), load average {m['load_average']}",
        f"python {m['python']}, numpy {m['numpy']} ({m['blas']})",
        f"torch: {m['torch'] or 'not installed'}{'' if s['torch'] else ' (not used: --no-torch)'}; {threads}",
        f"heap: {s.get('heap', 'default')} " + ("(glibc keeps freed memory: no contender page-faults it back each "
                                               "step; --heap default to measure without)" if s.get("heap") == "steady"
                                              else "(the allocator as it comes)"),
        "The machine may be shared: read ratios (same-run, alternating, paired) rather than absolute times.",
    ]
    return "\n".join(lines)


def _ratio(r):
    return f"{r['ratio']:.2f}x ({r['p25']:.2f}-{r['p75']:.2f})"


def _cold(r, key):
    return f"{r[key]['ratio']:.2f}x" if key in r else "-"


def training_tables(rows, use_torch):
    calls = next((r["calls"] for r in rows if "calls" in r), 1)
    how = ("each timed call after a call of its own (warm, as in training); cold: the first call of each round, "
           "after the other contenders (timing.py)") if calls > 1 else \
        "one call per contender per round (--calls 1): warm and cold are that call"
    out = ["Training step (float32, V=65: forward over T + cross-entropy + backward + SGD); "
           "ratio = median over rounds of engine/by-hand (interquartile range), " + how]
    heads = ["cell", "shape", "B x T x H", "engine ms", "chars/s", "peak MB", "by-hand ms", "by-hand peak MB",
             "ratio (IQR)", "target", "ok", "cold"]
    if use_torch:
        heads += ["torch ops", "torch fused", "cold"]
    heads += ["rounds"]
    body = []
    for r in rows:
        if "error" in r:
            body.append([r["cell"], r["shape"], "ERROR: " + r["error"]] + [""] * (len(heads) - 3))
            continue
        line = [r["cell"], r["shape"], f"{r['B']}x{r['T']}x{r['H']}", f"{r['engine_ms']:.2f}",
                f"{r['chars_per_s']:,.0f}", mb(r["peak_bytes"]), f"{r['by_hand_ms']:.2f}",
                mb(r["by_hand_peak_bytes"]), _ratio(r["ratio"]), f"<= {r['target']:.2f}x",
                mark(r["ratio"]["ratio"], r["target"]), _cold(r, "cold_ratio")]
        if use_torch:
            line += [f"{r['torch_ops']['ratio']:.2f}x" if "torch_ops" in r else "-",
                     f"{r['torch_fused']['ratio']:.2f}x" if "torch_fused" in r else "-",
                     " / ".join(_cold(r, k + "_cold") for k in ("torch_ops", "torch_fused"))]
        line.append(r["rounds"])
        body.append(line)
    out.append(table(heads, body))
    if use_torch:
        out.append("torch ops / torch fused: the same step in PyTorch (primitive-op loop with autograd; "
                   "torch.nn fused layer), as ratios to by-hand in the same rounds (then both cold)")

    out.append("")
    out.append("Where the engine's step goes (medians, ms; ratio to the by-hand phase in brackets; "
               "µs per graph node = phase time / op nodes)")
    heads = ["cell", "shape", "forward", "backward", "update", "op nodes", "fwd µs/node", "bwd µs/node"]
    body = []
    for r in rows:
        if "error" in r:
            continue
        e, h = r["engine_phases_ms"], r["by_hand_phases_ms"]
        ph = [f"{e[k]:.2f} ({e[k] / h[k]:.1f}x)" for k in ("forward", "backward", "update")]
        body.append([r["cell"], r["shape"], *ph, r["op_nodes"], f"{r['forward_us_per_node']:.1f}",
                     f"{r['backward_us_per_node']:.1f}"])
    out.append(table(heads, body))
    return "\n".join(out)


def per_op_tables(per_op):
    fwd, bwd = per_op["forward"], per_op["backward"]
    n = next(iter(fwd.values()))["calls"]
    target, scaled = per_op["target_us"], per_op.get("scaled_target_us")
    has_torch = "torch_us" in next(iter(fwd.values()))
    out = [f"Per-op overhead: {n:,} calls on (32,128) float32 (W: (128,128)); µs per call, "
           f"overhead = engine - bare NumPy in the same run"]
    if scaled is not None:
        add = fwd["a + b"]["numpy_us"]
        out.append(f"target: {target:.1f} µs where np.add took {per_op['issue_numpy_add_us']:.2f} µs (the issue's "
                   f"machine); np.add takes {add:.2f} µs in this run, {add / per_op['issue_numpy_add_us']:.1f}x "
                   f"as long, so the same target here is {scaled:.1f} µs ('scaled')")
    heads = ["op", "numpy µs", "engine µs", "overhead µs", "target", "ok", "scaled", "ok",
             "no_grad µs", "no_grad overhead"] + (["torch µs", "torch overhead", "ours / torch's"] if has_torch else [])
    body = []
    for op, r in fwd.items():
        row = [op, f"{r['numpy_us']:.2f}", f"{r['engine_us']:.2f}", f"{r['overhead_us']:.2f}",
               f"<= {target:.1f}", mark(r["overhead_us"], target),
               "" if scaled is None else f"<= {scaled:.1f}", mark(r["overhead_us"], scaled),
               f"{r['no_grad_us']:.2f}", f"{r['no_grad_overhead_us']:.2f}"]
        if has_torch:
            # a ratio of overheads only where NumPy's own call is short: the product's time (10-15 µs)
            # moves from round to round by more than either overhead
            short = r["numpy_us"] < 5 and r["torch_overhead_us"] > 0
            ratio = f"{r['overhead_us'] / r['torch_overhead_us']:.2f}x" if short else "-"
            row += [f"{r['torch_us']:.2f}", f"{r['torch_overhead_us']:.2f}", ratio]
        body.append(row)
    out.append(table(heads, body))
    if has_torch:
        out.append(f"(torch: the same loops on tensors that require grad; the issue measured a recorded torch.add at "
                   f"{per_op['issue_torch_add_us']:.2f} µs, {per_op['issue_torch_add_us'] - per_op['issue_numpy_add_us']:.2f} "
                   f"µs above np.add, so its {target:.1f} µs target is {target / (per_op['issue_torch_add_us'] - per_op['issue_numpy_add_us']):.2f}x "
                   f"PyTorch's own recording overhead)")
    n = next(iter(bwd.values()))["nodes"]
    out.append("")
    out.append(f"Backward per node: one backward through a chain of {n:,} recorded ops, µs per node; "
               f"numpy = the same gradient arithmetic in a bare loop")
    heads = ["chain", "numpy µs", "engine µs", "overhead µs"]
    body = [[op, f"{r['numpy_us']:.2f}", f"{r['engine_us']:.2f}", f"{r['overhead_us']:.2f}"]
            for op, r in bwd.items()]
    out.append(table(heads, body))
    return "\n".join(out)


def memory_tables(mem):
    out = []
    if mem.get("activations"):
        out.append("Activations kept for backward: tracemalloc current after forward - before "
                   "(engine: the graph behind the loss; by-hand: its forward cache)")
        heads = ["cell", "shape", "engine MB", "by-hand MB", "(cache nbytes MB)", "ratio", "target", "ok"]
        body = [[r["cell"], r["shape"], mb(r["engine_bytes"]), mb(r["by_hand_bytes"]),
                 mb(r["by_hand_cache_nbytes"]), f"{r['ratio']:.2f}x", f"<= {ACTIVATIONS_TARGET:.1f}x",
                 mark(r["ratio"], ACTIVATIONS_TARGET)]
                for r in mem["activations"]]
        out.append(table(heads, body))
    if mem.get("growth"):
        g0 = mem["growth"][0]
        if out:
            out.append("")
        out.append(f"Backward memory growth (LSTM, B={g0['B']}, H={g0['H']}): activations per timestep should "
                   f"not depend on T; 'released' = what stays after dropping the loss and the grads")
        heads = ["T", "activations MB", "KB/step", "by-hand KB/step", "backward peak MB", "after backward MB",
                 "(param grads MB)", "released KB"]
        body = [[f"{r['T']:,}", mb(r["activations_bytes"]), kb(r["bytes_per_step"]), kb(r["by_hand_bytes_per_step"]),
                 mb(r["backward_peak_bytes"]), mb(r["after_backward_bytes"]), mb(r["param_grad_bytes"]),
                 kb(r["released_residue_bytes"])] for r in mem["growth"]]
        out.append(table(heads, body))
    return "\n".join(out)


def render_line(r):
    if "skipped" in r:
        return f"BPTT picture: skipped ({r['skipped']})"
    s = (f"BPTT picture ({r['layers']}-layer LSTM, T={r['T']}, H={r['H']}, level='cell'): "
         f"draw_bptt -> .source {r['draw_s']:.2f} s ({r['dot_bytes'] / 1024:.0f} KB of DOT)")
    if "dot_s" in r:
        s += f", dot -Tsvg {r['dot_s']:.2f} s ({r['svg_bytes'] / 1024:.0f} KB of SVG)"
    else:
        s += f"; dot skipped: {r['dot_skipped']}"
    return s


def report(result):
    parts = [header(result)]
    if result.get("training"):
        parts.append(training_tables(result["training"], result["settings"]["torch"]))
    if result.get("per_op"):
        parts.append(per_op_tables(result["per_op"]))
    if result.get("memory"):
        parts.append(memory_tables(result["memory"]))
    if result.get("render"):
        parts.append(render_line(result["render"]))
    if result.get("errors"):
        parts.append("ERRORS:\n" + "\n".join("  " + e for e in result["errors"]))
    parts.append(f"(took {result['duration_s']:.0f} s)")
    return "\n\n".join(parts)


# ---------------------------------------------------------------- --compare
def _q(new, old):
    return f"{new / old:.2f}" if old else "-"


def compare(new, old):
    """Ratios new/old of the headline numbers of two runs (< 1: the new run is faster / smaller)."""
    out = [f"Comparison: this run ({new['created']}) / {old['created']}; < 1.00 means better now. "
           f"'ratio' columns are ratios of the engine/by-hand ratios."]
    old_rows = {(r["cell"], r["shape"]): r for r in old.get("training", []) if "error" not in r}
    body = []
    for r in new.get("training", []):
        o = old_rows.get((r["cell"], r["shape"]))
        if o is None or "error" in r:
            continue
        line = [r["cell"], r["shape"], _q(r["engine_ms"], o["engine_ms"]), _q(r["by_hand_ms"], o["by_hand_ms"]),
                _q(r["ratio"]["ratio"], o["ratio"]["ratio"]), _q(r["peak_bytes"], o["peak_bytes"])]
        for k in ("torch_ops", "torch_fused"):
            line.append(_q(r[k]["ratio"], o[k]["ratio"]) if k in r and k in o else "-")
        body.append(line)
    if body:
        out.append(table(["cell", "shape", "engine ms", "by-hand ms", "ratio", "peak MB",
                          "torch ops ratio", "torch fused ratio"], body))
    if new.get("per_op") and old.get("per_op"):
        body = []
        for kind in ("forward", "backward"):
            for op, r in new["per_op"][kind].items():
                o = old["per_op"][kind].get(op)
                if o:
                    body.append([f"{kind} {op}", f"{o['overhead_us']:.2f}", f"{r['overhead_us']:.2f}",
                                 _q(r["engine_us"], o["engine_us"])])
        out.append(table(["per-op", "old overhead µs", "new overhead µs", "engine µs new/old"], body))
    new_act = {(r["cell"], r["shape"]): r for r in new.get("memory", {}).get("activations", [])}
    old_act = {(r["cell"], r["shape"]): r for r in old.get("memory", {}).get("activations", [])}
    body = [[c, s, f"{old_act[c, s]['ratio']:.2f}x", f"{r['ratio']:.2f}x", _q(r["engine_bytes"], old_act[c, s]["engine_bytes"])]
            for (c, s), r in new_act.items() if (c, s) in old_act]
    if body:
        out.append(table(["cell", "shape", "old act. ratio", "new act. ratio", "engine bytes new/old"], body))
    nr, orr = new.get("render", {}), old.get("render", {})
    if "draw_s" in nr and "draw_s" in orr:
        out.append(f"BPTT picture draw_bptt time new/old: {_q(nr['draw_s'], orr['draw_s'])}")
    return "\n\n".join(out)
