"""Long unrolls and long training loops with the real layers (issue "Robustness").

The engine-level versions (a 100,000-op chain, graph freeing, weakrefs) live in test_autograd.py;
these run nn.LSTM the way a user does."""
import gc
import sys
import tracemalloc
import warnings

import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import nn
from tinygrad_rnn.nn import functional as F


def test_lstm_over_10000_timesteps_backs_up_without_recursion():
    tg.set_backend("numpy")
    lstm = nn.LSTM(2, 4)
    x = tg.randn(10_000, 1, 2)
    h0 = tg.zeros(1, 1, 4, requires_grad=True)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(150)          # any recursion through the graph would fail at once
    try:
        out, (h_n, c_n) = lstm(x, (h0, tg.zeros(1, 1, 4)))
        loss = out[-1].sum()
        loss.backward()
    finally:
        sys.setrecursionlimit(limit)
    assert out.shape == (10_000, 1, 4)
    g = lstm.weight_hh_l0.grad.numpy()
    assert np.isfinite(g).all() and np.abs(g).sum() > 0
    assert h0.grad is not None and np.isfinite(h0.grad.numpy()).all()   # the gradient reached t=0


@pytest.mark.parametrize("Layer", [nn.RNN, nn.LSTM, nn.GRU])
def test_the_graph_keeps_each_hidden_state_once(Layer):
    """The layer's loop (recurrence.py) keeps h(0..T) in one array whose rows are the output: every
    h(t) its steps' backward reads is such a row, nothing it keeps per step is a copy of one, and
    the final state has an array of its own (it must not keep the output alive)."""
    tg.set_backend("numpy")
    T, B, H = 6, 3, 4
    layer = Layer(2, H, dtype="float64")
    out, final = layer(tg.randn(T, B, 2, dtype="float64"))
    h_n = (final[0] if isinstance(final, tuple) else final).data[0]
    node = out.grad_fn
    hs, _, _, per_step = node.saved
    assert out.data.base is hs
    read = [(a, t) for saved in node.saved_by_steps() for a in saved for t in range(T)
            if a.shape == (B, H) and np.array_equal(a, out.data[t])]
    assert {t for _, t in read} >= set(range(T - 1)), "every h(t) but the last is read by the next step"
    assert all(a.base is hs for a, _ in read), "h(t) is read as a row of the output"
    assert not any(np.array_equal(a, out.data[t]) for arrays in per_step for a in arrays for t in range(T)
                   if a.shape == (B, H)), "no copy of an h(t) is kept per step"
    assert not np.shares_memory(h_n, out.data)


def test_a_state_passed_through_unchanged_keeps_its_own_array(monkeypatch):
    """A step that returns its state as it came (here every step): the state is not turned into
    a row of the output, so neither the caller's h_0 nor the final state shares the output's memory."""
    tg.set_backend("numpy")
    layer = nn.RNN(2, 3, dtype="float64")
    monkeypatch.setattr(layer, "_fused", lambda tag: None)           # the step-by-step loop
    monkeypatch.setattr(layer, "_cell", lambda tag: (lambda xw, state: state))
    h_0 = tg.randn(1, 4, 3, dtype="float64", requires_grad=True)
    before = h_0.data
    out, h_n = layer(tg.randn(5, 4, 2, dtype="float64"), h_0)
    assert h_0.data is before and not np.shares_memory(before, out.data)
    assert not np.shares_memory(h_n.data, out.data)
    np.testing.assert_array_equal(out.numpy(), np.broadcast_to(before[0], (5, 4, 3)))


def _lstm_tbptt(chunks, detach=True, retain_graph=False):
    """A char-model loop: LSTM + Linear + cross-entropy over consecutive chunks, state carried over."""
    tg.manual_seed(0)
    lstm, head = nn.LSTM(5, 8), nn.Linear(8, 5)
    opt = tg.optim.SGD(list(lstm.parameters()) + list(head.parameters()), lr=0.1)
    rng = np.random.default_rng(0)
    stream = rng.integers(0, 5, size=(chunks * 4 + 1, 2))
    state = None

    def chunk(k):
        nonlocal state
        ids = tg.Tensor(stream[4 * k:4 * k + 4])
        targets = tg.Tensor(stream[4 * k + 1:4 * k + 5])
        out, state = lstm(F.one_hot(ids, 5), state)
        loss = F.cross_entropy(head(out).reshape(-1, 5), targets.reshape(-1))
        opt.zero_grad()
        loss.backward(retain_graph=retain_graph)
        opt.step()
        if detach:
            state = (state[0].detach(), state[1].detach())
        return loss.item()

    return chunk


@pytest.mark.slow
def test_1000_truncated_bptt_iterations_keep_memory_flat():
    tg.set_backend("numpy")
    chunk = _lstm_tbptt(1_150)
    for k in range(50):                                     # warm up free lists and caches
        chunk(k)
    gc.collect()
    objects = len(gc.get_objects())
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")                  # no "graph keeps growing" warning either
            # memory made before tracing started is not traced, but what replaces it is (new parameter
            # arrays, gradients, states): run a few chunks traced before taking the starting point
            for k in range(50, 100):
                chunk(k)
            start = tracemalloc.get_traced_memory()[0]
            for k in range(100, 1_100):
                chunk(k)
            growth = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    gc.collect()
    # One chunk's graph is about 35 kB; keeping them grows memory by 35 MB over 1,000 chunks (checked
    # by hand with detach=False, retain_graph=True). A correct loop still grows by ~0.2 MB here while
    # NumPy's and Python's small-object caches fill up under tracing (flat after ~600 chunks).
    assert growth < 1_000_000, f"memory grew by {growth} bytes over 1,000 chunks"
    assert len(gc.get_objects()) - objects < 100


def test_forgetting_detach_with_an_lstm_is_reported_with_the_fix():
    tg.set_backend("numpy")
    chunk = _lstm_tbptt(3, detach=False)
    chunk(0)
    with pytest.raises(tg.GraphFreedError, match=r"h = h\.detach\(\)"):
        chunk(1)


def test_papering_over_it_with_retain_graph_warns_naming_detach():
    tg.set_backend("numpy")
    chunk = _lstm_tbptt(10, detach=False, retain_graph=True)
    with pytest.warns(RuntimeWarning, match=r"detach\(\)"):
        for k in range(8):
            chunk(k)


def test_embedding_module_names_the_out_of_range_token(backend):
    emb = nn.Embedding(5, 2)
    for bad, pos in ((7, "(1,)"), (-1, "(0,)")):
        ids = tg.Tensor([bad, 1] if pos == "(0,)" else [1, bad])
        with pytest.raises(IndexError, match=rf"Embedding: token id {bad} at position \({pos[1:-1]}\) is out of "
                                             rf"range; expected ids in \[0, 5\)"):
            emb(ids)
    with pytest.raises(TypeError, match="expected integer token ids, got dtype float32"):
        emb(tg.Tensor([1.0]))


def test_batch_first_confusion_is_named(backend):
    """A (B, T, I) batch given to a time-major layer with an initial state for B streams: the state's
    batch size disagrees with the input's second axis, and the error says which shapes."""
    lstm = nn.LSTM(3, 4)                       # batch_first=False
    x = tg.randn(2, 7, 3)                      # meant as 2 sequences of 7 steps
    h0 = (tg.zeros(1, 2, 4), tg.zeros(1, 2, 4))
    with pytest.raises(ValueError, match=r"expected h_0 of shape \(1, 7, 4\), got \(1, 2, 4\)"):
        lstm(x, h0)
    out, _ = nn.LSTM(3, 4, batch_first=True)(x, h0)
    assert out.shape == (2, 7, 4)
