"""Cells and layers beyond PyTorch parity: gradcheck (incl. peephole LSTM and the original GRU),
recurrent-matrix initialisation, the scopes the visualizer relies on, and the shape of the graph."""
from collections import Counter

import numpy as np
import pytest

import tinygrad_rnn as tg
import tinygrad_rnn.nn as nn
from tinygrad_rnn.function import AccumulateGrad


def f64(*shape, seed=0, requires_grad=True):
    rng = np.random.default_rng(seed)
    return tg.Tensor(rng.standard_normal(shape), dtype="float64", requires_grad=requires_grad)


def op_nodes(*tensors):
    """Every op node (not leaf sinks) in the graph behind ``tensors``; a fused cell op counts as
    the primitive ops it expands into (what the pictures draw)."""
    seen, stack = {}, [t.grad_fn for t in tensors]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen[id(node)] = node
        expansion = node.expand()
        if expansion is not None:
            stack.extend(o.grad_fn for o in expansion[1])
        else:
            stack.extend(parent for parent, index in node.parents if index is not None)
    return [n for n in seen.values() if not isinstance(n, AccumulateGrad) and n.expand() is None]


# ---------------------------------------------------------------- gradcheck
@pytest.mark.parametrize("make, states", [
    (lambda: nn.RNNCell(2, 3, dtype="float64"), 1),
    (lambda: nn.RNNCell(2, 3, nonlinearity="relu", bias=False, dtype="float64"), 1),
    (lambda: nn.LSTMCell(2, 3, dtype="float64"), 2),
    (lambda: nn.GRUCell(2, 3, dtype="float64"), 1),
    (lambda: nn.GRUCell(2, 3, reset_after=False, dtype="float64"), 1),
], ids=["RNNCell", "RNNCell-relu-nobias", "LSTMCell", "GRUCell", "GRUCell-reset_before"])
def test_cell_gradcheck(backend, make, states):
    cell = make()
    x = f64(2, 2, seed=1)
    hx = [f64(2, 3, seed=2 + k) for k in range(states)]
    params = list(cell.parameters())

    def fn(x, *rest):
        state = rest[0] if states == 1 else (rest[0], rest[1])
        return cell(x, state)

    assert tg.gradcheck(fn, [x] + hx + params)


@pytest.mark.parametrize("make, states", [
    (lambda: nn.RNN(2, 2, num_layers=2, bidirectional=True, dtype="float64"), 1),
    (lambda: nn.RNN(2, 2, nonlinearity="relu", dtype="float64"), 1),
    (lambda: nn.LSTM(2, 2, num_layers=2, bidirectional=True, dtype="float64"), 2),
    (lambda: nn.GRU(2, 2, bias=False, batch_first=True, dtype="float64"), 1),
    (lambda: nn.LSTM(2, 2, peephole=True, dtype="float64"), 2),
    (lambda: nn.LSTM(2, 2, peephole=True, bidirectional=True, bias=False, dtype="float64"), 2),
    (lambda: nn.GRU(2, 2, reset_after=False, dtype="float64"), 1),
    (lambda: nn.GRU(2, 2, reset_after=False, bias=False, batch_first=True, dtype="float64"), 1),
], ids=["RNN-2layers-bidir", "RNN-relu", "LSTM-2layers-bidir", "GRU-nobias-batch_first", "LSTM-peephole", "LSTM-peephole-bidir-nobias", "GRU-reset_before",
        "GRU-reset_before-nobias"])
def test_layer_gradcheck(backend, make, states):
    layer = make()
    L = layer.num_layers * layer.num_directions
    x = f64(*((2, 3, 2) if layer.batch_first else (3, 2, 2)), seed=1)     # T=3, B=2
    hx = [f64(L, 2, 2, seed=2 + k) for k in range(states)]
    params = list(layer.parameters())

    def fn(x, *rest):
        out, final = layer(x, rest[0] if states == 1 else (rest[0], rest[1]))
        return (out,) + (final if isinstance(final, tuple) else (final,))

    assert tg.gradcheck(fn, [x] + hx + params)


def test_peephole_lstm_has_the_peephole_weights_and_uses_them(backend):
    """Peepholes are extra parameters (2H, H) and (H, H), and they change the output."""
    lstm = nn.LSTM(2, 3, peephole=True, dtype="float64")
    shapes = {k: v.shape for k, v in lstm.state_dict().items()}
    assert shapes["weight_cif_l0"] == (6, 3) and shapes["weight_co_l0"] == (3, 3)
    x = f64(4, 2, 2, requires_grad=False)
    out = lstm(x)[0].numpy()
    plain = nn.LSTM(2, 3, dtype="float64")
    plain.load_state_dict({k: v for k, v in lstm.state_dict().items() if not k.startswith(("weight_cif", "weight_co"))})
    assert np.abs(plain(x)[0].numpy() - out).max() > 1e-3
    lstm.weight_cif_l0.data = lstm.weight_cif_l0.data * 0
    lstm.weight_co_l0.data = lstm.weight_co_l0.data * 0
    np.testing.assert_allclose(lstm(x)[0].numpy(), plain(x)[0].numpy(), rtol=1e-12)


def test_gru_reset_before_differs_from_reset_after(backend):
    """Same weights, the two GRU formulations give different outputs (r applied before or after W_hn)."""
    a = nn.GRU(2, 3, dtype="float64")
    b = nn.GRU(2, 3, reset_after=False, dtype="float64")
    b.load_state_dict(a.state_dict())
    x = f64(4, 2, 2, requires_grad=False)
    assert np.abs(a(x)[0].numpy() - b(x)[0].numpy()).max() > 1e-4


# ---------------------------------------------------------------- initialisation
@pytest.mark.parametrize("kind, gates", [(nn.RNN, 1), (nn.LSTM, 4), (nn.GRU, 3), (nn.LSTMCell, 4)])
@pytest.mark.parametrize("init", ["orthogonal", "identity"])
@pytest.mark.parametrize("gain", [0.5, 1.0, 1.5])
def test_recurrent_init_sets_the_spectral_radius(backend, kind, gates, init, gain):
    H = 6
    m = kind(3, H, init=init, init_gain=gain)
    W = m.weight_hh.numpy() if hasattr(m, "weight_hh") else m.weight_hh_l0.numpy()
    assert W.shape == (gates * H, H)
    for g in range(gates):
        block = W[g * H:(g + 1) * H].astype(np.float64)
        assert np.abs(np.linalg.eigvals(block)).max() == pytest.approx(gain, rel=1e-5)
        # orthogonal and scaled identity: every singular value equals the gain
        np.testing.assert_allclose(np.linalg.svd(block, compute_uv=False), gain, rtol=1e-5)
        if init == "identity":
            np.testing.assert_array_equal(block, np.float32(gain) * np.eye(H, dtype=np.float32))
        else:
            assert np.abs(block - gain * np.eye(H)).max() > 0.1    # a rotation, not the identity
    if init == "orthogonal" and gates > 1:
        assert np.abs(W[:H] - W[H:2 * H]).max() > 0.1              # each gate draws its own block


def test_unknown_init_is_an_error():
    with pytest.raises(ValueError, match="init: expected 'default', 'orthogonal' or 'identity', got 'xavier'"):
        nn.LSTM(3, 4, init="xavier")


# ---------------------------------------------------------------- scopes and the shape of the graph
PER_STEP = {
    # op name -> how many times it runs in one timestep (with bias)
    ("RNN", ()): {"linear": 1, "tanh": 1},
    ("LSTM", ()): {"linear": 1, "split": 1, "sigmoid": 3, "tanh": 2, "mul": 3, "add": 1},
    ("LSTM", (("peephole", True),)): {"linear": 3, "split": 2, "sigmoid": 3, "tanh": 2, "mul": 3, "add": 4},
    ("GRU", ()): {"split": 2, "linear": 1, "add": 3, "sigmoid": 2, "mul": 1, "tanh": 1, "lerp": 1},
    ("GRU", (("reset_after", False),)): {"split": 2, "linear": 2, "add": 3, "sigmoid": 2, "mul": 1, "tanh": 1,
                                          "lerp": 1},
}


@pytest.mark.parametrize("kind, extra", list(PER_STEP), ids=[f"{k}{dict(e)}" for k, e in PER_STEP])
def test_every_op_runs_in_its_layer_direction_timestep_and_cell_scope(backend, kind, extra):
    T, layers = 4, 2
    layer = getattr(nn, kind)(3, 2, num_layers=layers, bidirectional=True, **dict(extra))
    x = tg.randn(T, 2, 3)
    out, final = layer(x)
    final = final if isinstance(final, tuple) else (final,)
    nodes = op_nodes(out, *final)
    cell = f"{kind}Cell"
    by_scope = {}
    for n in nodes:
        by_scope.setdefault(n.scope, Counter())[n.name] += 1

    expected = {}
    for k in range(layers):
        for direction in (f"layer{k}", f"layer{k}_reverse"):
            # hoisted: b_ih + b_hh (not GRU, whose b_hh stays in the step), x @ W_ih.T for all t,
            # unbind into timesteps, stack of the outputs
            hoisted = {"linear": 1, "unbind": 1, "stack": 1}
            if kind != "GRU":
                hoisted["add"] = 1
            if extra == (("reset_after", False),):
                hoisted["split"] = 2    # W_hh and b_hh into their (r, z) and n rows, once per forward
            expected[(kind, direction)] = Counter(hoisted)
            for t in range(1, T + 1):                   # the notes' steps t = 1..T
                expected[(kind, direction, f"t={t}", cell)] = Counter(PER_STEP[(kind, extra)])
    expected[(kind,)] = Counter({"concat": layers})          # the two directions joined, per layer
    expected[()] = Counter({"stack": len(final)})            # h_n (and c_n) of all layers and directions
    assert by_scope == expected


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_time_runs_forward_and_reverse_direction_starts_at_the_last_step(backend, kind):
    """Each step's h_prev comes from the step before it: t-1 forward, t+1 in layer0_reverse,
    whose first computed step, t=T, starts from the initial state (a constant here)."""
    T = 5
    layer = getattr(nn, kind)(3, 2, bidirectional=True)
    out, _ = layer(tg.randn(T, 2, 3))
    cell = f"{kind}Cell"
    recurrent = {}   # (direction, t) -> the node computing W_hh h_prev (the first linear of the step)
    for n in op_nodes(out):
        if n.name == "linear" and len(n.scope) == 4 and n.scope[3] == cell:
            recurrent.setdefault((n.scope[1], int(n.scope[2][2:])), []).append(n)
    assert sorted(recurrent) == sorted((d, t) for d in ("layer0", "layer0_reverse") for t in range(1, T + 1))
    for (direction, t), linears in recurrent.items():
        (step,) = linears
        h_prev, index = step.parents[0]
        first = 1 if direction == "layer0" else T
        if t == first:
            assert index is None and isinstance(h_prev, tg.Tensor)      # the zero initial state
            continue
        before = t - 1 if direction == "layer0" else t + 1
        assert h_prev.scope[:3] == (kind, direction, f"t={before}"), (direction, t, h_prev.scope)


def test_each_step_reads_its_own_slice_of_the_hoisted_projection(backend):
    T = 4
    rnn = nn.RNN(3, 2, num_layers=2, bidirectional=True)
    out, _ = rnn(tg.randn(T, 2, 3))
    nodes = op_nodes(out)
    projections = [n for n in nodes if n.name == "linear" and len(n.scope) == 2]
    # exactly one input projection per layer and direction, and it uses that direction's W_ih
    assert sorted(n.scope for n in projections) == sorted(
        ("RNN", d) for d in ("layer0", "layer0_reverse", "layer1", "layer1_reverse"))
    for n in projections:
        weight = n.parents[1][0]
        assert isinstance(weight, AccumulateGrad)
        assert weight.label == f"weight_ih_l{n.scope[1][5:6]}" + ("_reverse" if "reverse" in n.scope[1] else "")
    for n in nodes:
        if n.name == "linear" and len(n.scope) == 4:
            xw, index = n.parents[2]             # linear(h_prev, W_hh, xw_t)
            assert xw.name == "unbind" and xw.scope == n.scope[:2]
            assert index == int(n.scope[2][2:]) - 1      # step t reads row t - 1 of x


def test_layer_outputs_name_h_and_c(backend):
    """The cells name their outputs, so pictures can label h and c."""
    out, (h_n, c_n) = nn.LSTM(3, 2)(tg.randn(3, 1, 3))
    stack_node = out.grad_fn.expand()[1][0].grad_fn      # the layer's loop, drawn as its steps and their stack
    assert stack_node.name == "stack"
    names = set()
    for parent, index in stack_node.parents:
        names.add(parent.out_names[index])
    assert names == {"h"}
    cell_updates = [n for n in op_nodes(c_n) if n.name == "add" and len(n.scope) == 4]
    assert len(cell_updates) == 3 and all(n.out_names == {0: "c"} for n in cell_updates)
