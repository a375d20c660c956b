"""Memory, measured with tracemalloc (NumPy registers its array buffers with it, so array
data and the Python objects of the graph are both counted).

    activations      current memory after the forward minus before: what the graph keeps
                     alive for backward (engine) vs the by-hand forward's cache
    step_peak        peak memory during one training step above the memory before it
    growth           LSTM activations for T = 100, 1,000, 10,000: bytes per step should
                     not depend on T; the peak during backward; what is left after
                     backward, and after dropping the loss and the gradients

Everything here runs under tracemalloc, which slows Python allocations down: it is
kept apart from the timed runs.
"""
import gc
import tracemalloc

import tinygrad_rnn as tg
from tinygrad_rnn import by_hand as bh

from .steps import ByHandStep, CharModel, EngineStep, batch, params


def _current():
    return tracemalloc.get_traced_memory()[0]


class _Traced:
    """``with _Traced():`` runs its body under tracemalloc (stopping it after, unless it was on)."""

    def __enter__(self):
        self.was_on = tracemalloc.is_tracing()
        if not self.was_on:
            tracemalloc.start()
        return self

    def __exit__(self, *exc):
        if not self.was_on:
            tracemalloc.stop()


def activations(cell, B, T, H):
    """{"engine_bytes", "by_hand_bytes", "by_hand_cache_nbytes", "ratio"}: memory the forward leaves alive."""
    p = params(cell, H)
    x, y = batch(T, B)
    engine = EngineStep(cell, p, x, y)
    hand = ByHandStep(cell, p, x, y)
    with _Traced():
        for _ in range(2):     # warm-up under tracing: anything allocated once and kept is not an activation
            engine.loss()
            bh.char_model_forward(hand.p, x, y, cell)
        gc.collect()
        base = _current()
        loss = engine.loss()
        ours = _current() - base
        del loss
        gc.collect()
        base = _current()
        _, cache = bh.char_model_forward(hand.p, x, y, cell)
        theirs = _current() - base
        cache_nbytes = bh.cache_nbytes(cache)     # counts x too, which existed before
        del cache
    return {"engine_bytes": ours, "by_hand_bytes": theirs, "by_hand_cache_nbytes": cache_nbytes, "ratio": ours / theirs}


def step_peak(step):
    """Peak bytes above the starting point during one call of ``step`` (after one traced warm-up call)."""
    with _Traced():
        step()
        gc.collect()
        base = _current()
        tracemalloc.reset_peak()
        step()
        return tracemalloc.get_traced_memory()[1] - base


def growth(Ts=(100, 1_000, 10_000), B=4, H=32, cell="lstm"):
    """One row per T: activations, bytes per timestep, backward peak, what stays after backward."""
    rows = []
    with _Traced():
        for T in Ts:
            model = CharModel(cell, H)
            p = params(cell, H)
            model.load_state_dict(p)
            x, y = batch(T, B)
            xt, yt = tg.Tensor(x), tg.Tensor(y.reshape(-1))
            gc.collect()
            base = _current()
            loss = model(xt, yt)
            act = _current() - base
            tracemalloc.reset_peak()
            loss.backward()
            peak = tracemalloc.get_traced_memory()[1] - base
            after = _current() - base           # the loss (and its freed graph) still alive, grads stored
            grad_bytes = sum(q.grad.data.nbytes for q in model.parameters())
            del loss
            model.zero_grad()
            gc.collect()
            released = _current() - base        # back to the baseline?
            base = _current()
            _, cache = bh.char_model_forward(p, x, y, cell)
            hand = _current() - base
            del cache, model, xt, yt
            gc.collect()
            rows.append({"T": T, "B": B, "H": H, "activations_bytes": act, "bytes_per_step": act / T,
                         "by_hand_bytes": hand, "by_hand_bytes_per_step": hand / T,
                         "backward_peak_bytes": peak, "after_backward_bytes": after,
                         "param_grad_bytes": grad_bytes, "released_residue_bytes": released})
    return rows
