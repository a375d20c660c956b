"""Benchmarks: the engine's training step against hand-written NumPy BPTT (and PyTorch).

    python benchmarks/run.py                      # everything (several minutes), table + JSON
    python benchmarks/run.py --quick              # tiny repetition counts (a smoke run, seconds)
    python benchmarks/run.py --only lstm,gru --shapes small,mid --sections training
    python benchmarks/run.py --compare old.json   # also print this run's numbers / old.json's
    python benchmarks/run.py --profile lstm:small # cProfile of the engine's step, then exit

Sections (``--sections``, default all):
    training   RNN, LSTM, GRU x tiny (B=1,T=25,H=100), small (32,50,128), mid (64,100,256):
               engine step time, chars/s, peak memory, ratio to by-hand NumPy BPTT (paired,
               alternating rounds, median),
               torch primitive-op loop and fused layer if installed
    per-op     forward overhead per recorded op above bare NumPy, backward cost per node
    memory     activations kept for backward vs by-hand's cache; growth for T = 100..10,000
    render     draw_bptt(level="cell") of a 2-layer LSTM over 50 steps, and dot -Tsvg

Threads: ``--threads 1`` (the default) pins NumPy's BLAS and torch to one thread each,
which keeps a shared 2-core machine's numbers steady (a spinning BLAS thread pool on
a busy machine can slow a step tenfold); ``--threads default`` leaves NumPy alone and
gives torch as many threads as NumPy's BLAS uses. The header says what was set.
Heap: ``--heap steady`` (the default) has glibc keep freed memory, so that no contender
page-faults its big arrays back in every step, which one pays or not depending on what
ran before it (machine.steady_heap); ``--heap default`` measures the allocator as it comes.
The JSON (``--json``, default benchmarks/results/latest.json, git-ignored) holds
everything printed, so runs can be compared later. Exit status 1 when the
implementations disagree on the first loss (then they would not compute the same thing).
"""
import argparse
import datetime
import importlib.util
import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):            # run as a script: make `benchmarks` and the repo importable
    sys.path.insert(0, str(ROOT))

from benchmarks import machine  # noqa: E402  (imports no NumPy: thread settings must come first)

CELLS = ("rnn", "lstm", "gru")
SHAPES = ("tiny", "small", "mid")
SECTIONS = ("training", "per-op", "memory", "render")
SETTINGS = {   # repetition counts: the full run, and --quick (a smoke run: every code path, little time)
    "full": dict(warmup=2, min_rounds=9, max_rounds=400, budget=10.0, per_op_calls=10_000, per_op_repeats=7,
                 chain=2_000, chain_repeats=5, growth_Ts=(100, 1_000, 10_000), render_T=50),
    "quick": dict(warmup=1, min_rounds=3, max_rounds=3, budget=0.0, per_op_calls=500, per_op_repeats=2,
                  chain=100, chain_repeats=2, growth_Ts=(20, 40, 80), render_T=6),
}
LOSS_RTOL = 1e-5    # float32, sums in different orders (they agree to ~1e-7)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--quick", action="store_true", help="tiny repetition counts (smoke run)")
    ap.add_argument("--only", default=",".join(CELLS), help="cells to run, e.g. lstm,gru (default all)")
    ap.add_argument("--shapes", default=",".join(SHAPES), help="shapes: tiny,small,mid (default all)")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"any of {','.join(SECTIONS)} (default all)")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch references even if installed")
    ap.add_argument("--threads", default="1", help="BLAS and torch threads: a number, or 'default' (default 1)")
    ap.add_argument("--heap", choices=("steady", "default"), default="steady",
                    help="steady (default): glibc keeps freed memory, so no contender page-faults it back "
                         "each step; default: the allocator as it comes (see machine.steady_heap)")
    ap.add_argument("--budget", type=float, default=None, help="seconds of timed rounds per training cell")
    ap.add_argument("--calls", type=int, default=2,
                    help="training calls per contender per round (default 2): the last is timed warm, after a "
                         "step of its own as in training, the first cold, after the other contenders "
                         "(see timing.py); 1: one call, both")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "latest.json"),
                    help="where to write the results (default benchmarks/results/latest.json)")
    ap.add_argument("--compare", metavar="OLD.json", help="print ratios of this run to an earlier one")
    ap.add_argument("--profile", metavar="CELL:SHAPE",
                    help="cProfile the engine's step (e.g. lstm:small), then exit")
    args = ap.parse_args(argv)
    args.cells = _choices("--only", args.only, CELLS)
    args.shape_list = _choices("--shapes", args.shapes, SHAPES)
    args.section_list = _choices("--sections", args.sections, SECTIONS)
    if args.calls < 1:
        ap.error(f"--calls: expected a positive number, got {args.calls}")
    if args.threads != "default" and not (args.threads.isdigit() and int(args.threads) > 0):
        ap.error(f"--threads: expected a positive number or 'default', got {args.threads!r}")
    if args.profile:
        cell, shape = (args.profile.split(":") + [""])[:2]
        if cell not in CELLS or shape not in SHAPES or args.profile.count(":") != 1:
            ap.error(f"--profile: expected CELL:SHAPE with CELL in {CELLS} and SHAPE in {SHAPES}, "
                     f"got {args.profile!r}")
    return args


def _choices(option, text, allowed):
    chosen = [c.strip() for c in text.split(",") if c.strip()]
    bad = [c for c in chosen if c not in allowed]
    if bad or not chosen:
        raise SystemExit(f"{option}: expected a comma-separated subset of {','.join(allowed)}, got {text!r}")
    return [c for c in allowed if c in chosen]


def setup_threads(threads, use_torch):
    """Pin BLAS (and torch) threads; returns torch's thread count (None without torch)."""
    if threads != "default":
        machine.limit_threads_env(threads)      # before NumPy loads OpenBLAS ...
        machine.set_blas_threads(int(threads))   # ... and at run time, should it be loaded already
    if not use_torch:
        return None
    import torch
    n = int(threads) if threads != "default" else (machine.blas_threads() or torch.get_num_threads())
    torch.set_num_threads(n)
    return torch.get_num_threads()


# ---------------------------------------------------------------- training
def training_cell(cell, shape, cfg, use_torch, budget):
    from benchmarks import memory, steps, timing
    from benchmarks.report import TRAINING_TARGETS
    s = steps.SHAPES[shape]
    B, T, H = s["B"], s["T"], s["H"]
    p = steps.params(cell, H)
    x, y = steps.batch(T, B)
    contenders = {"engine": steps.EngineStep(cell, p, x, y), "by_hand": steps.ByHandStep(cell, p, x, y)}
    if use_torch:
        contenders["torch_ops"] = steps.TorchOpsStep(cell, p, x, y)
        contenders["torch_fused"] = steps.TorchFusedStep(cell, p, x, y)

    # the same computation: every implementation's loss of the same weights on the same batch
    losses = {name: float(c.first_loss()) for name, c in contenders.items()}
    ref = losses["by_hand"]
    wrong = {k: v for k, v in losses.items() if not math.isclose(v, ref, rel_tol=LOSS_RTOL)}
    if wrong:
        raise AssertionError(f"first-step losses differ from by-hand's {ref:.7g}: "
                             + ", ".join(f"{k} {v:.7g}" for k, v in wrong.items()))
    ops, leaves = steps.count_nodes(contenders["engine"].loss())

    engine, hand = contenders["engine"], contenders["by_hand"]
    skip = {name: len(c.phases) for name, c in contenders.items() if hasattr(c, "phases")}
    calls = cfg["calls"]
    times, cold = timing.alternate(contenders, warmup=cfg["warmup"], min_rounds=cfg["min_rounds"],
                                   max_rounds=cfg["max_rounds"], budget=budget, calls=calls)
    n = len(times["engine"])

    def phases_ms(name):
        """Median ms of each phase over the timed (warm) calls of one contender (warm-up rounds left out)."""
        timed = contenders[name].phases[skip[name] + cfg["warmup"] * calls:][calls - 1::calls][:n]
        return {k: timing.median([ph[i] for ph in timed]) * 1e3 for i, k in enumerate(("forward", "backward", "update"))}
    engine_phases, hand_phases = phases_ms("engine"), phases_ms("by_hand")
    engine_s, hand_s = timing.median(times["engine"]), timing.median(times["by_hand"])
    row = {"cell": cell, "shape": shape, "B": B, "T": T, "H": H, "V": steps.V, "rounds": n,
           "engine_ms": engine_s * 1e3, "by_hand_ms": hand_s * 1e3,
           "chars_per_s": B * T / engine_s, "by_hand_chars_per_s": B * T / hand_s,
           "ratio": timing.paired_ratio(times["engine"], times["by_hand"]),
           "cold_ratio": timing.paired_ratio(cold["engine"], cold["by_hand"]), "calls": calls,
           "target": TRAINING_TARGETS[shape],
           "engine_phases_ms": engine_phases, "by_hand_phases_ms": hand_phases,
           "op_nodes": ops, "leaf_nodes": leaves,
           "forward_us_per_node": engine_phases["forward"] * 1e3 / ops,
           "backward_us_per_node": engine_phases["backward"] * 1e3 / ops,
           "first_loss": losses}
    row["ok"] = row["ratio"]["ratio"] <= row["target"]
    for k in ("torch_ops", "torch_fused"):
        if k in times:
            row[k] = timing.paired_ratio(times[k], times["by_hand"])
            row[k + "_cold"] = timing.paired_ratio(cold[k], cold["by_hand"])
            row[k + "_ms"] = timing.median(times[k]) * 1e3
    row["peak_bytes"] = memory.step_peak(engine)
    row["by_hand_peak_bytes"] = memory.step_peak(hand)
    return row


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    use_torch = not args.no_torch and importlib.util.find_spec("torch") is not None
    torch_threads = setup_threads(args.threads, use_torch)
    heap = "steady" if args.heap == "steady" and machine.steady_heap() else "default"
    cfg = dict(SETTINGS["quick" if args.quick else "full"], calls=args.calls)
    budget = args.budget if args.budget is not None else cfg["budget"]

    from benchmarks import report
    if args.profile:
        from benchmarks.profiling import profile
        cell, shape = args.profile.split(":")
        print(profile(cell, shape))
        return 0
    old = json.loads(Path(args.compare).read_text()) if args.compare else None   # before --json may overwrite it

    started = time.perf_counter()
    result = {
        "schema": 1,
        "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "argv": sys.argv[1:] if argv is None else list(argv),
        "settings": {"quick": args.quick, "threads": args.threads, "heap": heap, "torch": use_torch, "cells": args.cells,
                     "shapes": args.shape_list, "sections": args.section_list, "budget_s": budget,
                     **{k: v for k, v in cfg.items() if k != "budget"}},
        "machine": machine.describe(args.threads, torch_threads),
        "errors": [],
    }
    say = print if sys.stdout.isatty() else (lambda *a, **k: None)   # progress only on a terminal

    if "training" in args.section_list:
        result["training"] = []
        for cell in args.cells:
            for shape in args.shape_list:
                say(f"  training {cell} {shape} ...", end="\r", flush=True)
                try:
                    row = training_cell(cell, shape, cfg, use_torch, budget)
                except AssertionError as e:
                    row = {"cell": cell, "shape": shape, "error": str(e)}
                    result["errors"].append(f"training {cell} {shape}: {e}")
                result["training"].append(row)

    if "per-op" in args.section_list:
        from benchmarks import overhead
        say("  per-op overhead ...        ", end="\r", flush=True)
        forward = overhead.forward_overhead(cfg["per_op_calls"], cfg["per_op_repeats"], torch=use_torch)
        result["per_op"] = {"forward": forward,
                            "backward": overhead.backward_per_node(cfg["chain"], cfg["chain_repeats"]),
                            "target_us": report.PER_OP_TARGET_US,
                            "scaled_target_us": overhead.scaled_target(forward, report.PER_OP_TARGET_US),
                            "issue_numpy_add_us": overhead.ISSUE_NUMPY_ADD_US,
                            "issue_torch_add_us": overhead.ISSUE_TORCH_ADD_US}

    if "memory" in args.section_list:
        from benchmarks import memory, steps
        say("  memory ...                 ", end="\r", flush=True)
        acts = []
        for cell in args.cells:
            for shape in args.shape_list:
                s = steps.SHAPES[shape]
                acts.append({"cell": cell, "shape": shape, **memory.activations(cell, s["B"], s["T"], s["H"])})
        result["memory"] = {"activations": acts, "growth": memory.growth(cfg["growth_Ts"]),
                            "target_ratio": report.ACTIVATIONS_TARGET}

    if "render" in args.section_list:
        from benchmarks import picture
        say("  BPTT picture ...           ", end="\r", flush=True)
        result["render"] = picture.render(T=cfg["render_T"])

    result["machine"]["load_average_end"] = _load()
    result["duration_s"] = time.perf_counter() - started
    say(" " * 40, end="\r")
    print(report.report(result))
    if old is not None:
        print()
        print(report.compare(result, old))
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(f"\nresults written to {path}")
    return 1 if result["errors"] else 0


def _load():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


if __name__ == "__main__":
    sys.exit(main())
