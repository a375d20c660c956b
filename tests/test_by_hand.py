"""The hand-derived BPTT of tinygrad_rnn.by_hand against the engine's autodiff and finite differences."""
import numpy as np
import pytest

import tinygrad_rnn as tg
import tinygrad_rnn.nn as nn
from tinygrad_rnn import by_hand as bh
from tinygrad_rnn.nn import functional as F

LAYERS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
FORWARD = {"rnn": bh.rnn_forward, "lstm": bh.lstm_forward, "gru": bh.gru_forward}
BACKWARD = {"rnn": bh.rnn_backward, "lstm": bh.lstm_backward, "gru": bh.gru_backward}
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def random_problem(cell, T, B, I, H, seed=0):
    """Weights (PyTorch layout), input, initial state(s) and the upstream gradients."""
    rng = np.random.default_rng(seed)
    G = GATES[cell]
    p = {"weight_ih": rng.uniform(-0.7, 0.7, (G * H, I)), "weight_hh": rng.uniform(-0.7, 0.7, (G * H, H)),
         "bias_ih": rng.uniform(-0.5, 0.5, G * H), "bias_hh": rng.uniform(-0.5, 0.5, G * H)}
    x = rng.standard_normal((T, B, I))
    states = [rng.standard_normal((B, H)) for _ in range(2 if cell == "lstm" else 1)]
    d_out = rng.standard_normal((T, B, H))
    d_final = [rng.standard_normal((B, H)) for _ in states]
    return p, x, states, d_out, d_final


def by_hand(cell, p, x, states, d_out, d_final):
    """Outputs, final states and gradients from the hand-written forward and backward."""
    weights = (p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"])
    out, final, cache = FORWARD[cell](x, *states, *weights)
    final = final if isinstance(final, tuple) else (final,)
    grads = BACKWARD[cell](d_out, cache, p["weight_ih"], p["weight_hh"],
                           tuple(d_final) if cell == "lstm" else d_final[0])
    return out, final, grads


def objective(cell, p, x, states, d_out, d_final):
    """The scalar whose gradient the backward computes: <outputs, d_out> + <final states, d_final>."""
    out, final, _ = FORWARD[cell](x, *states, p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"])
    final = final if isinstance(final, tuple) else (final,)
    return float(np.sum(out * d_out) + sum(np.sum(f * d) for f, d in zip(final, d_final)))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_hand_derived_gradients_equal_the_engine(backend, cell):
    T, B, I, H = 6, 3, 4, 5
    p, x, states, d_out, d_final = random_problem(cell, T, B, I, H)
    out, final, grads = by_hand(cell, p, x, states, d_out, d_final)

    layer = LAYERS[cell](I, H, dtype="float64")
    layer.load_state_dict({f"{k}_l0": v for k, v in p.items()})
    xe = tg.Tensor(x, requires_grad=True)
    se = [tg.Tensor(s[None], requires_grad=True) for s in states]
    out_e, final_e = layer(xe, tuple(se) if cell == "lstm" else se[0])
    final_e = final_e if isinstance(final_e, tuple) else (final_e,)
    loss = (out_e * tg.Tensor(d_out)).sum()
    for f, d in zip(final_e, d_final):
        loss = loss + (f * tg.Tensor(d[None])).sum()
    loss.backward()

    def check(actual, expected, what):
        np.testing.assert_allclose(actual, expected, rtol=1e-11, atol=1e-12, err_msg=what)

    check(out, out_e.numpy(), "outputs")
    for k, (f, fe) in enumerate(zip(final, final_e)):
        check(f, fe.numpy()[0], f"final state {k}")
    for name in PARAMS:
        check(grads[name], getattr(layer, f"{name}_l0").grad.numpy(), f"grad of {name}")
    check(grads["input"], xe.grad.numpy(), "grad of the input")
    for name, s in zip(("h0", "c0"), se):
        check(grads[name], s.grad.numpy()[0], f"grad of {name}")


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_hand_derived_gradients_equal_finite_differences(cell):
    """Central differences of the hand-written forward, for every parameter, input and state element."""
    p, x, states, d_out, d_final = random_problem(cell, T=3, B=2, I=2, H=3, seed=1)
    _, _, grads = by_hand(cell, p, x, states, d_out, d_final)
    eps = 1e-6
    wrt = dict(p, input=x, h0=states[0])
    if cell == "lstm":
        wrt["c0"] = states[1]
    for name, array in wrt.items():
        numeric = np.zeros_like(array)
        for i in range(array.size):
            old = array.flat[i]
            array.flat[i] = old + eps
            up = objective(cell, p, x, states, d_out, d_final)
            array.flat[i] = old - eps
            down = objective(cell, p, x, states, d_out, d_final)
            array.flat[i] = old
            numeric.flat[i] = (up - down) / (2 * eps)
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-6, atol=1e-8, err_msg=name)


def test_without_final_gradients_and_input_gradient(backend):
    """d_final=None means no gradient arrives at the final state; need_input_grad=False skips dx."""
    p, x, states, d_out, _ = random_problem("lstm", 4, 2, 3, 3, seed=2)
    args = (p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"])
    _, _, cache = bh.lstm_forward(x, *states, *args)
    g = bh.lstm_backward(d_out, cache, p["weight_ih"], p["weight_hh"], need_input_grad=False)
    g_zero = bh.lstm_backward(d_out, cache, p["weight_ih"], p["weight_hh"],
                              (np.zeros_like(states[0]), np.zeros_like(states[1])))
    assert g["input"] is None
    for name in PARAMS + ("h0", "c0"):
        np.testing.assert_array_equal(g[name], g_zero[name])


def test_sigmoid_and_one_hot():
    x = np.array([-1e4, -30.0, -1.0, 0.0, 2.5, 1e4])
    # (1 + tanh) cancels for very negative x: the error is absolute, ~1e-16, as in the engine
    np.testing.assert_allclose(bh.sigmoid(x[1:-1]), 1 / (1 + np.exp(-x[1:-1])), rtol=1e-14, atol=1e-16)
    assert bh.sigmoid(x)[0] == 0.0 and bh.sigmoid(x)[-1] == 1.0
    ids = np.array([[2, 0], [1, 2]])
    expected = np.zeros((2, 2, 3), dtype=np.float32)
    expected[0, 0, 2] = expected[0, 1, 0] = expected[1, 0, 1] = expected[1, 1, 2] = 1
    np.testing.assert_array_equal(bh.one_hot(ids, 3), expected)


@pytest.mark.parametrize("cell, per_step", [("rnn", 1), ("lstm", 4 + 1 + 1 + 1), ("gru", 2 + 1 + 1 + 1)])
def test_the_forward_cache_is_explicit_and_measurable(cell, per_step):
    """The cache holds x and the per-step arrays backward needs, in units of (B, H):
    RNN: h; LSTM: h, c (T+1 each), gates (4), tanh(c); GRU: h, r and z (2), n, W_hn h + b_hn."""
    T, B, I, H = 7, 2, 3, 5
    p, x, states, _, _ = random_problem(cell, T, B, I, H)
    _, _, cache = FORWARD[cell](x, *states, p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"])
    states_kept = {"rnn": 1, "lstm": 2, "gru": 1}[cell]          # h (and c) have T + 1 rows
    expected = x.nbytes + 8 * B * H * (per_step * T + states_kept)
    assert bh.cache_nbytes(cache) == expected
    assert bh.cache_nbytes({"nested": cache, "other": np.zeros(3)}) == expected + 24


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_char_model_cache_counts_each_buffer_once(cell):
    """The char model's cache: the layer's cache, the softmax (N, V) and the targets (N,);
    the final state and the outputs are views into the layer's cache and add nothing."""
    V, H, T, B = 9, 4, 6, 3
    params = bh.init_char_params(V, H, cell)
    x, targets = char_batch(V, T, B, np.float32)
    _, cache = bh.char_model_forward(params, x, targets.copy(), cell)     # a copy: its own buffer
    assert bh.cache_nbytes(cache) == bh.cache_nbytes(cache["rnn"]) + 4 * T * B * V + 8 * T * B


# ---------------------------------------------------------------- the char model
class CharModel(nn.Module):
    """The engine twin of by_hand's char model: one-hot -> recurrent layer -> Linear decoder."""

    def __init__(self, vocab_size, hidden_size, cell, dtype):
        super().__init__()
        self.rnn = LAYERS[cell](vocab_size, hidden_size, dtype=dtype)
        self.decoder = nn.Linear(hidden_size, vocab_size, dtype=dtype)

    def forward(self, x, targets):
        out, _ = self.rnn(x)
        logits = self.decoder(out)
        V = logits.shape[-1]
        return F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))


def char_batch(V, T, B, dtype, seed=0):
    ids = np.random.default_rng(seed).integers(0, V, size=(T + 1, B))
    return bh.one_hot(ids[:-1], V, dtype), ids[1:]


def test_char_params_have_pytorch_names_shapes_and_init():
    params = bh.init_char_params(11, 8, "gru", seed=3)
    engine = CharModel(11, 8, "gru", "float32")
    assert {k: v.shape for k, v in params.items()} == {k: v.shape for k, v in engine.state_dict().items()}
    assert all(v.dtype == np.float32 and np.abs(v).max() <= 1 / np.sqrt(8) for v in params.values())
    engine.load_state_dict(params)      # strict: names and shapes match exactly


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_char_model_step_by_hand_equals_engine(backend, cell):
    V, H, T, B, lr = 7, 5, 6, 3, 0.5
    params = bh.init_char_params(V, H, cell, seed=4, dtype=np.float64)
    model = CharModel(V, H, cell, "float64")
    model.load_state_dict(params)
    for step in range(2):
        x, targets = char_batch(V, T, B, np.float64, seed=step)
        # the expected loss straight from the definition: - mean log softmax(logits)[target]
        hs = FORWARD[cell](x, *([np.zeros((B, H))] * (2 if cell == "lstm" else 1)),
                           *(params[f"rnn.{k}_l0"] for k in PARAMS))[0]
        logits = hs @ params["decoder.weight"].T + params["decoder.bias"]
        log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        expected = -np.mean(np.take_along_axis(log_p, targets[..., None], -1))

        loss_hand = bh.char_model_step(params, x, targets, cell, lr)
        model.zero_grad()
        loss = model(tg.Tensor(x), tg.Tensor(targets))
        loss.backward()
        for p in model.parameters():
            p.data = p.data - lr * p.grad.data
        assert loss_hand == pytest.approx(expected, rel=1e-13)
        assert loss.item() == pytest.approx(loss_hand, rel=1e-13)
        for name, value in model.state_dict().items():
            np.testing.assert_allclose(value, params[name], rtol=1e-12, atol=1e-14, err_msg=name)


def test_char_model_float32_and_state_carry():
    """float32 all the way; the final state of one chunk starts the next (truncated BPTT)."""
    V, H, T, B = 6, 4, 5, 2
    params = bh.init_char_params(V, H, "lstm", seed=5)
    x, targets = char_batch(V, 2 * T, B, np.float32)
    loss_full, cache_full = bh.char_model_forward(params, x, targets, "lstm")
    loss_a, cache_a = bh.char_model_forward(params, x[:T], targets[:T], "lstm")
    loss_b, cache_b = bh.char_model_forward(params, x[T:], targets[T:], "lstm", state=cache_a["state"])
    assert cache_full["probs"].dtype == np.float32
    assert (loss_a + loss_b) / 2 == pytest.approx(loss_full, rel=1e-5)
    np.testing.assert_allclose(cache_b["state"][1], cache_full["state"][1], rtol=1e-5)
    grads = bh.char_model_backward(params, cache_full, "lstm")
    assert all(g.dtype == np.float32 and g.shape == params[k].shape for k, g in grads.items())
