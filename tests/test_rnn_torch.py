"""PyTorch parity of the recurrent cells and layers.

Each test builds a torch module, copies its ``state_dict`` into the engine's twin
and compares outputs, final states, and the gradients of the input, the initial
state and every parameter (float32 within 1e-5 relative, float64 within 1e-10).
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import tinygrad_rnn as tg  # noqa: E402
import tinygrad_rnn.nn as nn  # noqa: E402

TOL = {"float32": 1e-5, "float64": 1e-10}
TORCH_DTYPE = {"float32": torch.float32, "float64": torch.float64}
I, H, T, B = 3, 4, 5, 2


def assert_close(actual, expected, dtype, what):
    """|actual - expected| <= tol * (|expected| + max|expected|): relative, with a floor at the scale."""
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    tol = TOL[dtype]
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * max(np.abs(expected).max(), 1e-3),
                               err_msg=what)


def twins(torch_cls, engine_cls, dtype, *args, **kwargs):
    """A torch module and the engine module holding the same weights."""
    torch.manual_seed(0)
    tm = torch_cls(*args, **kwargs).to(TORCH_DTYPE[dtype])
    m = engine_cls(*args, dtype=dtype, **kwargs)
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    return tm, m


def leaf_pair(array, dtype):
    """The same data as a torch leaf and an engine leaf, both requiring grad."""
    return (torch.tensor(array, dtype=TORCH_DTYPE[dtype], requires_grad=True),
            tg.Tensor(array, dtype=dtype, requires_grad=True))


def backward_both(torch_outs, engine_outs, rng):
    """Backprop sum_k <out_k, v_k> with the same random v_k through both graphs."""
    t_total, e_total = 0, 0
    for to, eo in zip(torch_outs, engine_outs):
        assert tuple(to.shape) == eo.shape
        v = rng.standard_normal(eo.shape)
        t_total = t_total + (to * torch.tensor(v, dtype=to.dtype)).sum()
        e_total = e_total + (eo * tg.Tensor(v, dtype=eo.dtype)).sum()
    t_total.backward()
    e_total.backward()


def compare_parameters(tm, m, dtype):
    torch_params = dict(tm.named_parameters())
    names = [n for n, _ in m.named_parameters()]
    assert names == list(torch_params)
    for name, p in m.named_parameters():
        assert_close(p.grad.numpy(), torch_params[name].grad.numpy(), dtype, f"grad of {name}")


# ---------------------------------------------------------------- cells
CELL_CASES = [
    ("RNNCell", {}, "batched_hx"),
    ("RNNCell", {"nonlinearity": "relu"}, "batched"),
    ("RNNCell", {"bias": False}, "unbatched_hx"),
    ("LSTMCell", {}, "batched_hx"),
    ("LSTMCell", {"bias": False}, "unbatched"),
    ("LSTMCell", {}, "unbatched_hx"),
    ("GRUCell", {}, "batched_hx"),
    ("GRUCell", {"bias": False}, "batched"),
    ("GRUCell", {}, "unbatched_hx"),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind, kwargs, mode", CELL_CASES, ids=[f"{k}-{m}-{kw}" for k, kw, m in CELL_CASES])
def test_cell_matches_torch(backend, kind, kwargs, mode, dtype):
    rng = np.random.default_rng(1)
    tm, m = twins(getattr(torch.nn, kind), getattr(nn, kind), dtype, I, H, **kwargs)
    lead = () if mode.startswith("unbatched") else (B,)
    xt, xe = leaf_pair(rng.standard_normal(lead + (I,)), dtype)
    n_states = 2 if kind == "LSTMCell" else 1
    t_args, e_args, t_states, e_states = [xt], [xe], [], []
    if mode.endswith("hx"):
        for _ in range(n_states):
            st, se = leaf_pair(rng.standard_normal(lead + (H,)), dtype)
            t_states.append(st)
            e_states.append(se)
        t_args.append(tuple(t_states) if n_states == 2 else t_states[0])
        e_args.append(tuple(e_states) if n_states == 2 else e_states[0])
    t_out, e_out = tm(*t_args), m(*e_args)
    t_out = t_out if isinstance(t_out, tuple) else (t_out,)
    e_out = e_out if isinstance(e_out, tuple) else (e_out,)
    for k, (to, eo) in enumerate(zip(t_out, e_out)):
        assert_close(eo.numpy(), to.detach().numpy(), dtype, f"output {k}")
    backward_both(t_out, e_out, rng)
    assert_close(xe.grad.numpy(), xt.grad.numpy(), dtype, "grad of the input")
    for k, (st, se) in enumerate(zip(t_states, e_states)):
        assert_close(se.grad.numpy(), st.grad.numpy(), dtype, f"grad of state {k}")
    compare_parameters(tm, m, dtype)


# ---------------------------------------------------------------- layers
LAYER_CASES = [
    ({}, "plain"),
    ({"num_layers": 2, "bidirectional": True}, "hx"),
    ({"num_layers": 3, "batch_first": True}, "hx"),
    ({"bidirectional": True, "batch_first": True, "bias": False}, "plain"),
    ({"num_layers": 2, "bidirectional": True}, "unbatched_hx"),
    ({"num_layers": 2}, "unbatched"),
]


def run_layer_parity(kind, kwargs, mode, dtype):
    rng = np.random.default_rng(2)
    tm, m = twins(getattr(torch.nn, kind), getattr(nn, kind), dtype, I, H, **kwargs)
    L = kwargs.get("num_layers", 1) * (2 if kwargs.get("bidirectional") else 1)
    unbatched = mode.startswith("unbatched")
    if unbatched:
        shape = (T, I)
    else:
        shape = (B, T, I) if kwargs.get("batch_first") else (T, B, I)
    xt, xe = leaf_pair(rng.standard_normal(shape), dtype)
    n_states = 2 if kind == "LSTM" else 1
    t_states, e_states = [], []
    t_args, e_args = [xt], [xe]
    if mode.endswith("hx"):
        state_shape = (L, H) if unbatched else (L, B, H)
        for _ in range(n_states):
            st, se = leaf_pair(rng.standard_normal(state_shape), dtype)
            t_states.append(st)
            e_states.append(se)
        t_args.append(tuple(t_states) if n_states == 2 else t_states[0])
        e_args.append(tuple(e_states) if n_states == 2 else e_states[0])
    t_out, t_final = tm(*t_args)
    e_out, e_final = m(*e_args)
    t_final = t_final if isinstance(t_final, tuple) else (t_final,)
    e_final = e_final if isinstance(e_final, tuple) else (e_final,)
    assert_close(e_out.numpy(), t_out.detach().numpy(), dtype, "output")
    for k, (tf, ef) in enumerate(zip(t_final, e_final)):
        assert_close(ef.numpy(), tf.detach().numpy(), dtype, f"final state {k}")
    backward_both((t_out,) + t_final, (e_out,) + e_final, rng)
    assert_close(xe.grad.numpy(), xt.grad.numpy(), dtype, "grad of the input")
    for k, (st, se) in enumerate(zip(t_states, e_states)):
        assert_close(se.grad.numpy(), st.grad.numpy(), dtype, f"grad of initial state {k}")
    compare_parameters(tm, m, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kwargs, mode", LAYER_CASES, ids=[f"{m}-{kw}" for kw, m in LAYER_CASES])
@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_layer_matches_torch(backend, kind, kwargs, mode, dtype):
    run_layer_parity(kind, kwargs, mode, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_relu_rnn_matches_torch(backend, dtype):
    run_layer_parity("RNN", {"nonlinearity": "relu", "num_layers": 2, "bidirectional": True}, "hx", dtype)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_dropout_between_layers_in_eval_mode_equals_torch_eval(backend, kind):
    rng = np.random.default_rng(3)
    tm, m = twins(getattr(torch.nn, kind), getattr(nn, kind), "float64", I, H, num_layers=3, dropout=0.5)
    tm.eval()
    m.eval()
    xt, xe = leaf_pair(rng.standard_normal((T, B, I)), "float64")
    t_out, _ = tm(xt)
    e_out, _ = m(xe)
    assert_close(e_out.numpy(), t_out.detach().numpy(), "float64", "eval output")
    backward_both((t_out,), (e_out,), rng)
    compare_parameters(tm, m, "float64")
    # in training mode the dropout masks between layers change the output
    m.train()
    assert np.abs(m(xe)[0].numpy() - e_out.numpy()).max() > 1e-3


# ---------------------------------------------------------------- parameters: names, shapes, init
NAME_CASES = [
    ("RNN", {}), ("RNN", {"num_layers": 2, "bidirectional": True}), ("RNN", {"bias": False, "nonlinearity": "relu"}),
    ("LSTM", {"num_layers": 3}), ("LSTM", {"bidirectional": True, "bias": False}),
    ("GRU", {"num_layers": 2, "bidirectional": True}), ("GRU", {"bias": False}),
    ("RNNCell", {}), ("LSTMCell", {"bias": False}), ("GRUCell", {}),
]


@pytest.mark.parametrize("kind, kwargs", NAME_CASES, ids=[f"{k}-{kw}" for k, kw in NAME_CASES])
def test_parameter_names_and_shapes_equal_torch(kind, kwargs):
    tm = getattr(torch.nn, kind)(3, 5, **kwargs)
    m = getattr(nn, kind)(3, 5, **kwargs)
    expected = [(k, tuple(v.shape)) for k, v in tm.state_dict().items()]
    assert [(k, v.shape) for k, v in m.state_dict().items()] == expected
    assert [p.name for p in m.parameters()] == [k for k, _ in expected]


def test_default_init_is_uniform_within_one_over_sqrt_hidden(backend):
    """PyTorch's U(-k, k), k = 1/sqrt(H), for every parameter of layers and cells."""
    H = 16
    k = 1 / np.sqrt(H)
    modules = [nn.LSTM(8, H, num_layers=2, bidirectional=True), nn.GRU(8, H), nn.RNN(8, H),
               nn.LSTMCell(8, H), nn.GRUCell(8, H), nn.RNNCell(8, H)]
    values = []
    for module in modules:
        for name, p in module.named_parameters():
            a = p.numpy()
            assert a.dtype == np.float32
            assert np.abs(a).max() <= k, f"{name} leaves [-{k}, {k}]"
            values.append(a.ravel())
    v = np.concatenate(values).astype(np.float64)
    n = v.size
    assert n > 10000
    # mean 0 and variance k^2 / 3 of the uniform distribution, each within 5 standard errors
    assert abs(v.mean()) < 5 * k / np.sqrt(3 * n)
    var_se = np.sqrt((k ** 4 / 5 - (k ** 2 / 3) ** 2) / n)
    assert abs(v.var() - k ** 2 / 3) < 5 * var_se
    # the whole interval is covered: both ends are reached, and each tenth holds about 10 %
    assert v.max() > 0.999 * k and v.min() < -0.999 * k
    counts, _ = np.histogram(v, bins=10, range=(-k, k))
    assert np.all(np.abs(counts / n - 0.1) < 0.01)
