"""What the engine adds to each op: forward overhead per recorded op and backward cost per node.

Forward: n recorded ``a + b`` on (32, 128) float32 and ``a @ W`` with W (128, 128)
(plus ``a.tanh()``), against the bare NumPy call on the same arrays, in
alternating loops in the same run. Overhead = (engine - NumPy) / n, in µs.
Each result is dropped at once, so a node is built and freed per call, like a
temporary of a training step. The same loop under ``tg.no_grad()`` shows how much
of the overhead is recording the graph. With ``torch=True`` the same loops run on
torch tensors that require grad (PyTorch recording its autograd graph, one thread),
the reference the issue quotes next to its target.

Why a same-run reference: the issue's 2 µs was set on a machine where ``np.add`` on
these arrays took 0.57 µs and a recorded ``torch.add`` 1.85 µs; on a slower or busier
machine every Python and NumPy call is slower alike. ``scaled_target_us`` is the 2 µs
scaled by how much slower this run's ``np.add`` is (2.0 x numpy_us / 0.57).

Backward: a chain of n ops (x = x + b, or x = x @ W with an orthogonal W so the
values stay finite), then one timed ``x.backward(ones)``, against the bare NumPy
loop that does the same arithmetic (for +: the shared b's gradient summed over n
uses; for @: dx = dy @ W.T and dW += x.T @ dy per node). Per node, in µs.
"""
import numpy as np

import tinygrad_rnn as tg

from .timing import median, perf_counter

B, H = 32, 128


def _arrays(seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((B, H)).astype(np.float32)
    b = rng.standard_normal((B, H)).astype(np.float32)
    W = np.linalg.qr(rng.standard_normal((H, H)))[0].astype(np.float32)   # orthogonal: |x @ W| = |x|
    return a, b, W


ISSUE_NUMPY_ADD_US = 0.57    # np.add on (32, 128) float32 where the issue measured its references
ISSUE_TORCH_ADD_US = 1.85    # torch.add with autograd recording, same machine


def forward_overhead(n=10_000, repeats=7, torch=False):
    """{op: {"numpy_us", "engine_us", "overhead_us", "no_grad_us", "no_grad_overhead_us"
    (and with torch: "torch_us", "torch_overhead_us")}}, per call."""
    a, b, W = _arrays()
    ta, tb, tW = (tg.Tensor(v, requires_grad=True) for v in (a, b, W))

    def loops(x, y, z):
        """Three loops of n calls each (locals only, so the loops themselves cost the same)."""
        def add(n):
            for _ in range(n):
                x + y

        def matmul(n):
            for _ in range(n):
                x @ z

        def tanh(n):
            for _ in range(n):
                x.tanh()
        return {"a + b": add, "a @ W": matmul, "a.tanh()": tanh}

    def numpy_loops():
        def add(n):
            for _ in range(n):
                np.add(a, b)

        def matmul(n):
            for _ in range(n):
                np.matmul(a, W)

        def tanh(n):
            for _ in range(n):
                np.tanh(a)
        return {"a + b": add, "a @ W": matmul, "a.tanh()": tanh}

    engine, bare = loops(ta, tb, tW), numpy_loops()
    runs = {"numpy": bare, "engine": engine, "no_grad": engine}
    if torch:
        import torch as th
        runs["torch"] = loops(*(th.tensor(v, requires_grad=True) for v in (a, b, W)))
    results = {}
    for op in engine:
        times = {kind: [] for kind in runs}
        for kind in runs:                            # warm-up
            runs[kind][op](min(n, 200))
        for _ in range(repeats):                     # alternate: numpy, engine, engine without recording, torch
            for kind in times:
                t0 = perf_counter()
                if kind == "no_grad":
                    with tg.no_grad():
                        runs[kind][op](n)
                else:
                    runs[kind][op](n)
                times[kind].append((perf_counter() - t0) / n * 1e6)
        # per-round differences, so both halves of a difference saw the same machine
        over = median([e - p for e, p in zip(times["engine"], times["numpy"])])
        over_ng = median([e - p for e, p in zip(times["no_grad"], times["numpy"])])
        results[op] = {"numpy_us": median(times["numpy"]), "engine_us": median(times["engine"]),
                       "overhead_us": over, "no_grad_us": median(times["no_grad"]),
                       "no_grad_overhead_us": over_ng, "calls": n, "repeats": repeats}
        if torch:
            results[op]["torch_us"] = median(times["torch"])
            results[op]["torch_overhead_us"] = median([e - p for e, p in zip(times["torch"], times["numpy"])])
    return results


def scaled_target(forward, target_us):
    """The issue's per-op target in this run's time: target_us x (np.add here / np.add there)."""
    return target_us * forward["a + b"]["numpy_us"] / ISSUE_NUMPY_ADD_US


def _chain(op, n, a, b, W):
    """x_n of the chain x_{k+1} = x_k + b (or x_k @ W): n recorded nodes."""
    x = tg.Tensor(a, requires_grad=True)
    y = tg.Tensor(b if op == "add" else W, requires_grad=True)
    for _ in range(n):
        x = x + y if op == "add" else x @ y
    return x


def _numpy_backward(op, n, a, b, W):
    """The backward arithmetic of the chain in bare NumPy; returns seconds."""
    g = np.ones((B, H), dtype=np.float32)
    if op == "add":
        t0 = perf_counter()
        gb = g + g                    # the engine's first two contributions make a buffer ...
        for _ in range(n - 2):
            gb += g                   # ... and the others are added into it in place
        return perf_counter() - t0
    xs = [a]
    for _ in range(n - 1):
        xs.append(xs[-1] @ W)
    W_T = W.T
    t0 = perf_counter()
    gW = None
    for k in range(n - 1, -1, -1):
        d = xs[k].T @ g
        if gW is None:
            gW = d
        else:
            gW += d
        g = g @ W_T
    return perf_counter() - t0


def backward_per_node(n=2_000, repeats=5):
    """{op: {"numpy_us", "engine_us", "overhead_us", "nodes"}} per node of a chain of n ops."""
    a, b, W = _arrays(1)
    g = tg.Tensor(np.ones((B, H), dtype=np.float32))
    results = {}
    for op in ("add", "matmul"):
        engine, bare = [], []
        for r in range(repeats + 1):                 # the first round is a warm-up
            x = _chain(op, n, a, b, W)
            t0 = perf_counter()
            x.backward(g)
            t_engine = perf_counter() - t0
            del x
            t_numpy = _numpy_backward(op, n, a, b, W)
            if r:
                engine.append(t_engine / n * 1e6)
                bare.append(t_numpy / n * 1e6)
        results["a + b" if op == "add" else "a @ W"] = {
            "numpy_us": median(bare), "engine_us": median(engine),
            "overhead_us": median([e - p for e, p in zip(engine, bare)]), "nodes": n, "repeats": repeats}
    return results
