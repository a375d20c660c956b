"""Render time of the cell-level BPTT picture of a 2-layer LSTM over 50 steps.

Two parts, timed separately: ``visualize.draw_bptt(loss, level="cell")`` up to the
DOT text (``.source``: tracing, layout, labels), then Graphviz's ``dot -Tsvg`` on it.
Skipped, with the reason, when visualize has no ``draw_bptt`` yet, when it fails,
or when ``dot`` is not installed (then only the first part is timed).
"""
import shutil
import subprocess

import numpy as np

import tinygrad_rnn as tg
import tinygrad_rnn.nn as nn
from tinygrad_rnn.nn import functional as F

from .steps import V
from .timing import perf_counter


def _loss(T, H, layers=2, seed=0):
    tg.manual_seed(seed)
    lstm, decoder = nn.LSTM(V, H, num_layers=layers), nn.Linear(H, V)
    ids = np.random.default_rng(seed).integers(0, V, size=(T + 1, 1))
    x = tg.Tensor(np.eye(V, dtype=np.float32)[ids[:-1]])          # (T, 1, V) one-hot
    out, _ = lstm(x)
    return F.cross_entropy(decoder(out).reshape(-1, V), tg.Tensor(ids[1:].reshape(-1)))


def render(T=50, H=16, layers=2):
    """{"draw_s", "dot_s", "dot_bytes", "svg_bytes", ...} or {"skipped": reason}."""
    try:
        import visualize
    except Exception as e:
        return {"skipped": f"import visualize failed: {type(e).__name__}: {e}"}
    draw_bptt = getattr(visualize, "draw_bptt", None)
    if draw_bptt is None:
        return {"skipped": "visualize.draw_bptt is not there yet"}
    result = {"T": T, "H": H, "layers": layers, "level": "cell"}
    loss = _loss(T, H, layers)
    try:
        t0 = perf_counter()
        source = draw_bptt(loss, level="cell").source
        result["draw_s"] = perf_counter() - t0
    except Exception as e:
        return {"skipped": f"draw_bptt raised {type(e).__name__}: {e}"}
    result["dot_bytes"] = len(source.encode())
    dot = shutil.which("dot")
    if dot is None:
        result["dot_skipped"] = "Graphviz's dot is not installed"
        return result
    t0 = perf_counter()
    run = subprocess.run([dot, "-Tsvg"], input=source.encode(), capture_output=True, timeout=600)
    result["dot_s"] = perf_counter() - t0
    if run.returncode != 0:
        result["dot_skipped"] = f"dot failed ({run.returncode}): {run.stderr.decode(errors='replace')[:200]}"
        del result["dot_s"]
        return result
    result["svg_bytes"] = len(run.stdout)
    return result
