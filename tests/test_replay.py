"""replay=True: a recurrent layer's time loop run from one recorded cell step (nn/replay.py).

The replayed layer must compute what the eager layer computes (outputs and every
gradient), stay right when the weights, the shapes or the settings change between
forwards, keep the engine's guarantees (freed graphs, retain_graph, truncated BPTT),
and step aside (run eagerly) for the tools that watch every op. Gradients of the
replayed layers are also checked against finite differences (test_cells.py),
the hand-derived BPTT (test_by_hand.py) and PyTorch (test_rnn_torch.py).
"""
import numpy as np
import pytest

import tinygrad_rnn as tg
import tinygrad_rnn.nn as nn
from tinygrad_rnn.nn import replay as replay_mod
from tinygrad_rnn.nn.replay import Loop

T, B, I, H = 5, 3, 4, 6


def data(shape, seed, requires_grad=True):
    return tg.Tensor(np.random.default_rng(seed).standard_normal(shape), dtype="float64",
                     requires_grad=requires_grad)


def twin_layers(Layer, **kw):
    """The same layer twice (same weights): eager and replayed."""
    eager = Layer(I, H, dtype="float64", **kw)
    replayed = Layer(I, H, dtype="float64", replay=True, **kw)
    replayed.load_state_dict(eager.state_dict())
    return eager, replayed


def run(layer, x_shape=(T, B, I), hx=None, seed=1):
    """Outputs, final states and the gradients of x, hx and every parameter for a fixed objective."""
    x = data(x_shape, seed)
    out, final = layer(x, hx) if hx is not None else layer(x)
    final = final if isinstance(final, tuple) else (final,)
    w = data(out.shape, seed + 10, requires_grad=False)
    loss = (out * w).sum() + sum((f * f).sum() * 0.5 for f in final)
    loss.backward()
    hx_list = [] if hx is None else (list(hx) if isinstance(hx, tuple) else [hx])
    return {"out": out.numpy(), **{f"final{k}": f.numpy() for k, f in enumerate(final)},
            "d_x": x.grad.numpy(),
            **{f"d_hx{k}": s.grad.numpy() for k, s in enumerate(hx_list) if s.requires_grad},
            **{f"d_{name}": p.grad.numpy() for name, p in layer.named_parameters()}}


def assert_same(a, b, rtol=1e-12):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=rtol, atol=1e-13, err_msg=k)


CASES = [
    (nn.RNN, {}), (nn.RNN, {"nonlinearity": "relu", "bias": False}),
    (nn.LSTM, {}), (nn.LSTM, {"peephole": True}), (nn.LSTM, {"num_layers": 2, "bidirectional": True}),
    (nn.GRU, {}), (nn.GRU, {"reset_after": False}), (nn.GRU, {"batch_first": True, "bidirectional": True}),
]


@pytest.mark.parametrize("Layer, kw", CASES, ids=[f"{L.__name__}-{kw}" for L, kw in CASES])
def test_replay_equals_eager(backend, Layer, kw):
    eager, replayed = twin_layers(Layer, **kw)
    shape = (B, T, I) if kw.get("batch_first") else (T, B, I)
    assert_same(run(eager, shape), run(replayed, shape))


@pytest.mark.parametrize("Layer", [nn.RNN, nn.LSTM, nn.GRU])
def test_replay_equals_eager_with_initial_state_and_unbatched(backend, Layer):
    eager, replayed = twin_layers(Layer, num_layers=2)
    n = 2 if Layer is nn.LSTM else 1

    def hx(batched, requires_grad):
        shape = (2, B, H) if batched else (2, H)
        states = tuple(data(shape, 20 + k, requires_grad) for k in range(n))
        return states if n == 2 else states[0]

    for batched, rg in [(True, True), (True, False), (False, True)]:
        shape = (T, B, I) if batched else (T, I)
        a = run(eager, shape, hx(batched, rg))
        b = run(replayed, shape, hx(batched, rg))
        eager.zero_grad()
        replayed.zero_grad()
        assert_same(a, b)


def test_the_replayed_loop_is_one_node_per_layer_and_direction(backend):
    lstm = nn.LSTM(I, H, num_layers=2, bidirectional=True, replay=True, dtype="float64")
    out, _ = lstm(data((T, B, I), 1))
    loops, seen, stack = [], set(), [out.grad_fn]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, Loop):
            loops.append(node)
        stack.extend(p for p, i in node.parents if i is not None)
    assert sorted("/".join(n.scope) for n in loops) == [
        "LSTM/layer0", "LSTM/layer0_reverse", "LSTM/layer1", "LSTM/layer1_reverse"]
    assert "replay=True" in repr(lstm)


def test_training_with_replay_follows_eager_step_for_step(backend):
    """Five SGD steps: the replayed layer reads the updated weights at every forward."""
    losses = {}
    for replay in (False, True):
        tg.manual_seed(0)
        model = nn.Sequential(nn.LSTM(I, H, dtype="float64", replay=replay))
        head = nn.Linear(H, 2, dtype="float64")
        opt = tg.optim.SGD(list(model.parameters()) + list(head.parameters()), lr=0.5)
        x, y = data((T, B, I), 3, requires_grad=False), tg.Tensor(np.arange(T * B) % 2)
        losses[replay] = []
        for _ in range(5):
            opt.zero_grad()
            out, _ = model[0](x)
            loss = nn.functional.cross_entropy(head(out).reshape(-1, 2), y)
            loss.backward()
            opt.step()
            losses[replay].append(loss.item())
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-12)
    assert losses[True][-1] < losses[True][0]


def test_a_recorded_step_is_kept_and_recorded_again_only_when_needed(backend, monkeypatch):
    recorded = []
    real = replay_mod.Tape.__init__

    def counting(self, *args):
        recorded.append(1)
        real(self, *args)

    monkeypatch.setattr(replay_mod.Tape, "__init__", counting)
    eager, replayed = twin_layers(nn.RNN)
    for _ in range(3):
        replayed(data((T, B, I), 1))
    assert len(recorded) == 1                   # the same shapes: recorded once
    replayed(data((T + 2, B, I), 1))
    assert len(recorded) == 1                   # another T: the step is the same
    replayed(data((T, B + 1, I), 1))
    assert len(recorded) == 2                   # another batch size: a new step shape

    # a setting the step depends on, changed after construction
    eager.nonlinearity = replayed.nonlinearity = "relu"
    assert_same(run(eager), run(replayed))
    assert len(recorded) == 3

    # a replaced Parameter: the new one is read, not the old one
    new = nn.Parameter(tg.Tensor(np.random.default_rng(5).uniform(-0.5, 0.5, (H, H))))
    eager.weight_hh_l0 = new
    replayed.weight_hh_l0 = nn.Parameter(tg.Tensor(new.numpy()))
    eager.zero_grad()
    replayed.zero_grad()
    assert_same(run(eager), run(replayed))
    assert len(recorded) == 4


def test_a_step_reading_tensors_made_at_each_forward_is_not_kept(backend):
    """GRU(reset_after=False) splits W_hh at every forward: that step cannot be reused."""
    eager, replayed = twin_layers(nn.GRU, reset_after=False)
    for _ in range(2):
        assert_same(run(eager), run(replayed))
        eager.zero_grad()
        replayed.zero_grad()
    assert replayed._tapes == {}


def test_backward_frees_the_loop_and_a_second_backward_says_so(backend):
    layer = nn.LSTM(I, H, replay=True, dtype="float64")
    out, _ = layer(data((T, B, I), 1))
    loss = out.sum()
    loss.backward()
    assert out.grad_fn.steps is None            # the saved arrays of every step are gone
    with pytest.raises(tg.GraphFreedError, match="h = h.detach()"):
        loss.backward()


def test_retain_graph_keeps_the_loop_for_a_second_backward(backend):
    layer = nn.GRU(I, H, replay=True, dtype="float64")
    out, _ = layer(data((T, B, I), 1))
    loss = (out * out).sum()
    loss.backward(retain_graph=True)
    once = layer.weight_hh_l0.grad.numpy()
    loss.backward()
    np.testing.assert_allclose(layer.weight_hh_l0.grad.numpy(), 2 * once, rtol=1e-12)


def test_truncated_bptt_with_replay_equals_eager(backend):
    """Chunks of T steps with the state carried (detached) from chunk to chunk."""
    grads = {}
    for replay in (False, True):
        tg.manual_seed(0)
        lstm = nn.LSTM(I, H, dtype="float64", replay=replay)
        x = data((4 * T, B, I), 7, requires_grad=False)
        state, total = None, []
        for k in range(4):
            out, state = lstm(x[k * T:(k + 1) * T], state)
            (out * out).sum().backward()
            state = tuple(s.detach() for s in state)
            total.append(lstm.weight_hh_l0.grad.numpy().copy())
        grads[replay] = total
    for a, b in zip(grads[False], grads[True]):
        np.testing.assert_allclose(b, a, rtol=1e-12)


def test_a_forgotten_detach_is_reported_as_with_the_eager_layer(backend):
    lstm = nn.LSTM(I, H, dtype="float64", replay=True)
    out, state = lstm(data((T, B, I), 1))
    out.sum().backward()
    out, state = lstm(data((T, B, I), 2), state)        # the state still carries the freed loop
    with pytest.raises(tg.GraphFreedError, match=r"h = h\.detach\(\)"):
        out.sum().backward()


def test_no_grad_forward_equals_eager_and_builds_no_graph(backend):
    eager, replayed = twin_layers(nn.LSTM, num_layers=2)
    x = data((T, B, I), 1)
    with tg.no_grad():
        a, (h_a, _) = eager(x)
        b, (h_b, _) = replayed(x)
    assert not b.requires_grad and b.grad_fn is None
    np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-12)
    np.testing.assert_allclose(h_b.numpy(), h_a.numpy(), rtol=1e-12)


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_tools_that_watch_every_op_get_the_eager_graph(backend):
    """Under detect_anomaly() a NaN is still reported with its op and timestep; under
    retain_values() the graph has a node per op and step."""
    layer = nn.RNN(I, H, nonlinearity="relu", replay=True)            # float32
    layer.load_state_dict({**layer.state_dict(), "weight_hh_l0": 1e12 * np.eye(H, dtype=np.float32),
                           "weight_ih_l0": np.ones((H, I), np.float32), "bias_ih_l0": np.zeros(H, np.float32),
                           "bias_hh_l0": np.zeros(H, np.float32)})
    # h grows 1e12-fold per step from h(0) = 1: inf (beyond float32's 3e38) first at t=4
    with tg.detect_anomaly(), pytest.raises(tg.AnomalyError, match=r"linear at RNN/layer0/t=4/RNNCell"):
        layer(tg.ones(6, 1, I) * 0.25)
    x = data((T, B, I), 1, requires_grad=False)
    layer = nn.RNN(I, H, replay=True, dtype="float64")
    with tg.retain_values():
        out, _ = layer(x)
    assert not isinstance(out.grad_fn, Loop)
    assert out.grad_fn.name == "stack"


def test_hooks_see_the_gradients_of_the_replayed_outputs(backend):
    eager, replayed = twin_layers(nn.GRU)
    seen = {}
    for name, layer in (("eager", eager), ("replay", replayed)):
        out, h_n = layer(data((T, B, I), 1))

        def keep(g, name=name):       # returns None: the gradient is seen, not replaced
            seen[name + " out"] = tg.Tensor(g).numpy()

        out.register_hook(keep)
        h_n.retain_grad()
        (out.sum() + (h_n * h_n).sum()).backward()
        seen[name + " h_n"] = h_n.grad.numpy()
    np.testing.assert_allclose(seen["replay out"], seen["eager out"])
    np.testing.assert_allclose(seen["replay h_n"], seen["eager h_n"], rtol=1e-12)


def test_the_picture_of_a_replayed_layer_says_how_to_see_the_timesteps():
    visualize = pytest.importorskip("visualize")
    layer = nn.LSTM(I, H, replay=True)
    out, _ = layer(tg.randn(T, B, I))
    picture = visualize.draw_bptt(out.sum())
    assert any("replay=False" in note for note in picture.graph.notes)


def test_a_step_that_passes_its_state_through_cannot_be_replayed():
    xw, h, c = data((T, B, H), 1), data((B, H), 2), data((B, H), 3)
    with pytest.raises(ValueError, match="passed through unchanged"):
        replay_mod.Tape(lambda xw_t, state: ((xw_t + state[0]).tanh(), state[1]), xw, [h, c])
    tape = replay_mod.Tape(lambda xw_t, state: ((xw_t + state[0]).tanh(),), xw, [h])
    assert [op.cls.__name__ for op in tape.ops] == ["Add", "Tanh"] and tape.externals == []


@pytest.mark.parametrize("make", [
    lambda replay: nn.ResidualRNN(I, H, num_layers=2, dtype="float64", replay=replay),
    lambda replay: nn.GatedResidualRNN(I, H, forget_bias=1.0, dtype="float64", replay=replay),
    lambda replay: nn.SkipConnectedRNN("lstm", I, H, num_layers=2, dtype="float64", replay=replay),
], ids=["ResidualRNN", "GatedResidualRNN", "SkipConnectedRNN-lstm"])
def test_the_lecture_layers_replay_too(backend, make):
    eager, replayed = make(False), make(True)
    replayed.load_state_dict(eager.state_dict())
    assert_same(run(eager), run(replayed))


def test_dropout_between_layers_draws_the_same_masks_with_replay(backend):
    """The recording of a step draws no random numbers, so a seeded run is the same run."""
    results = []
    for replay in (False, True):
        tg.manual_seed(0)
        lstm = nn.LSTM(I, H, num_layers=3, dropout=0.5, dtype="float64", replay=replay)
        tg.manual_seed(1)
        results.append(run(lstm))
    assert_same(*results)


@pytest.mark.parametrize("Layer", [nn.RNN, nn.LSTM, nn.GRU])
def test_an_empty_batch_replays_to_empty_outputs_and_zero_gradients(backend, Layer):
    layer = Layer(I, H, replay=True, dtype="float64")
    x = data((T, 0, I), 1)
    out, final = layer(x)
    final = final if isinstance(final, tuple) else (final,)
    assert out.shape == (T, 0, H) and all(f.shape == (1, 0, H) for f in final)
    (out.sum() + sum(f.sum() for f in final)).backward()
    assert x.grad.shape == (T, 0, I)
    assert float(np.abs(layer.weight_hh_l0.grad.numpy()).sum()) == 0.0


def test_the_final_state_does_not_keep_the_loop_buffer_alive():
    """h_n carried to the next chunk (truncated BPTT) holds B x H numbers, not the T x B x H buffer."""
    tg.set_backend("numpy")
    layer = nn.LSTM(I, H, replay=True)
    out, (h_n, c_n) = layer(tg.randn(50, B, I))
    h = h_n.detach().data
    owner = h if h.base is None else h.base
    assert owner.nbytes == B * H * 4


@pytest.mark.parametrize("Layer", [nn.RNN, nn.LSTM, nn.GRU])
def test_w_hh_summed_after_the_loop_equals_eager_when_nothing_else_needs_a_gradient(backend, Layer):
    """W_hh's gradient is one product after the loop (sum_t dL/da(t).T @ h(t-1)). It must not
    depend on dL/dxw being computed: here x, W_ih and the biases need no gradient, h_0 is a
    constant, and only the last step's output is in the loss (dL/da is zero at first)."""
    grads = []
    for layer in twin_layers(Layer):
        for name, p in layer.named_parameters():
            p.requires_grad = name.startswith("weight_hh")
        out, _ = layer(data((T, B, I), 1, requires_grad=False))
        (out[T - 1] * data((B, H), 2, requires_grad=False)).sum().backward()
        grads.append(layer.weight_hh_l0.grad.numpy())
        assert all(p.grad is None for name, p in layer.named_parameters() if not name.startswith("weight_hh"))
    assert np.abs(grads[0]).sum() > 0
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-12, atol=1e-14)


def test_which_weights_are_summed_after_the_loop():
    """A weight read by one linear op of the step, with h(t-1) as its input; not the peepholes."""
    tg.set_backend("numpy")
    for layer, expected in [(nn.RNN(I, H, replay=True), ["weight_hh_l0"]),
                            (nn.LSTM(I, H, peephole=True, replay=True), ["weight_hh_l0"]),
                            (nn.GRU(I, H, replay=True), ["weight_hh_l0"])]:
        layer(tg.randn(T, B, I))
        (tape,) = layer._tapes.values()
        names = {id(p): n for n, p in layer.named_parameters()}
        assert [names[id(tape.externals[j])] for j, _ in tape.summed_after.values()] == expected
        # the RNN and the LSTM add xw_t as the bias of that op (dL/da(t) = dL/dxw_t); the GRU adds b_hh
        assert [a_is_xw for _, a_is_xw in tape.summed_after.values()] == [not isinstance(layer, nn.GRU)]


@pytest.mark.parametrize("Layer, own", [(nn.RNN, []), (nn.LSTM, ["sigmoid", "sigmoid", "tanh", "c_prev", "sigmoid",
                                                                    "tanh"]),
                                        (nn.GRU, ["sigmoid", "sigmoid", "W_hn h (copy)", "tanh"])])
def test_a_step_keeps_only_its_own_arrays_once(Layer, own):
    """Weights and h(t-1), h(t) come back at backward from the layer's weights and its buffer of
    h's; what the step made itself is kept once even when several ops saved it (the LSTM's
    f, i, g, o and tanh(c) are saved by sigmoid/tanh and again by the products that read them).
    c(t-1) is the one array an LSTM step keeps that it did not make; the GRU keeps W_hn h as a
    copy, not as a view of the whole product W_hh h."""
    tg.set_backend("numpy")
    layer = Layer(I, H, replay=True)
    out, _ = layer(tg.randn(T, B, I))
    loop = out.grad_fn
    for layout in loop.layouts:
        names = []
        for j, m, copy in layout.own:
            op = loop.tape.ops[j]
            if op.cls.__name__ == "Mul" and not copy:
                names.append("c_prev")
            else:
                names.append("W_hn h (copy)" if copy else op.cls.__name__.lower())
        assert names == own
    assert all(len(step) == len(own) for step in loop.steps) if own else loop.steps is None


def test_the_replayed_rnn_keeps_nothing_per_step_but_h():
    """Memory per timestep of a replayed RNN layer's graph: its row of the buffer of h's (B x H
    numbers), no Python objects per step (by tracemalloc, between T = 100 and T = 300)."""
    import gc
    import tracemalloc
    tg.set_backend("numpy")
    layer = nn.RNN(I, 32, replay=True)
    kept = {}
    tracemalloc.start()
    try:
        for steps in (100, 300, 100, 300):
            x = tg.Tensor(np.ones((steps, 4, I), dtype=np.float32))
            gc.collect()
            start = tracemalloc.get_traced_memory()[0]
            out, h_n = layer(x)
            kept[steps] = tracemalloc.get_traced_memory()[0] - start
            del out, h_n
    finally:
        tracemalloc.stop()
    per_step = (kept[300] - kept[100]) / 200
    assert 0.95 <= per_step / (4 * 32 * 4) <= 1.05, per_step      # (a few bytes of the interpreter move)
