"""Residual and gated-residual RNN steps, Highway, and skip connections across layers
(tinygrad_rnn/nn/residual.py, tinygrad_rnn/nn/skip.py), checked against finite
differences, formulas computed by hand in NumPy, and compositions of single layers."""
import re

import numpy as np
import pytest

import tinygrad_rnn as tg
import tinygrad_rnn.nn as nn
from graphs import topological_order
from tinygrad_rnn.function import AccumulateGrad

F64 = "float64"


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def params(module):
    return list(module.parameters())


def weights(module):
    return {name: p.numpy() for name, p in module.named_parameters()}


# --- gradcheck ---------------------------------------------------------------------
@pytest.mark.parametrize("Cell", [nn.ResidualRNNCell, nn.GatedResidualRNNCell])
def test_cells_gradcheck(backend, Cell):
    cell = Cell(3, 2, dtype=F64)
    x = tg.randn(2, 3, dtype=F64, requires_grad=True)
    h = tg.randn(2, 2, dtype=F64, requires_grad=True)
    assert tg.gradcheck(lambda x, h, *ps: cell(x, h), [x, h] + params(cell))


@pytest.mark.parametrize("make", [
    lambda: nn.ResidualRNN(2, 3, num_layers=2, dtype=F64),
    lambda: nn.GatedResidualRNN(2, 3, num_layers=2, forget_bias=1.0, dtype=F64),
    lambda: nn.GatedResidualRNN(2, 2, bidirectional=True, dtype=F64),
], ids=["residual-2layers", "gated-2layers", "gated-bidirectional"])
def test_layers_gradcheck(backend, make):
    layer = make()
    L = layer.num_layers * layer.num_directions
    x = tg.randn(3, 2, 2, dtype=F64, requires_grad=True)
    h0 = tg.randn(L, 2, layer.hidden_size, dtype=F64, requires_grad=True)
    assert tg.gradcheck(lambda x, h0, *ps: layer(x, h0), [x, h0] + params(layer))


def test_highway_gradcheck(backend):
    hw = nn.Highway(3, dtype=F64)
    x = tg.randn(2, 2, 3, dtype=F64, requires_grad=True)
    assert tg.gradcheck(lambda x, *ps: hw(x), [x] + params(hw))


@pytest.mark.parametrize("cell_type", ["rnn", "lstm", "gru"])
def test_skip_connected_gradcheck(backend, cell_type):
    net = nn.SkipConnectedRNN(cell_type, 2, 2, num_layers=2, dtype=F64)
    x = tg.randn(3, 1, 2, dtype=F64, requires_grad=True)
    assert tg.gradcheck(lambda x, *ps: net(x), [x] + params(net))


# --- the steps against their formulas ----------------------------------------------------
def test_residual_cell_formula(backend):
    cell = nn.ResidualRNNCell(3, 4, dtype=F64)
    x, h = tg.randn(2, 3, dtype=F64), tg.randn(2, 4, dtype=F64)
    w = weights(cell)
    update = np.tanh(h.numpy() @ w["weight_hh"].T + x.numpy() @ w["weight_ih"].T + w["bias_ih"] + w["bias_hh"])
    np.testing.assert_allclose(cell(x, h).numpy(), h.numpy() + update, rtol=1e-12)


def test_gated_residual_cell_formula(backend):
    cell = nn.GatedResidualRNNCell(3, 4, dtype=F64)
    x, h = tg.randn(2, 3, dtype=F64), tg.randn(2, 4, dtype=F64)
    w = weights(cell)
    a = h.numpy() @ w["weight_hh"].T + x.numpy() @ w["weight_ih"].T + w["bias_ih"] + w["bias_hh"]
    update, forget = np.tanh(a[:, :4]), sigmoid(a[:, 4:])   # gates stacked [update, forget]
    np.testing.assert_allclose(cell(x, h).numpy(), forget * h.numpy() + update, rtol=1e-12)


@pytest.mark.parametrize("Layer, Cell", [(nn.ResidualRNN, nn.ResidualRNNCell),
                                         (nn.GatedResidualRNN, nn.GatedResidualRNNCell)])
def test_layer_is_the_cell_unrolled(backend, Layer, Cell):
    layer = Layer(3, 4, batch_first=True, dtype=F64)
    cell = Cell(3, 4, dtype=F64)
    cell.load_state_dict({k[:-3]: v for k, v in weights(layer).items()})   # weight_ih_l0 -> weight_ih
    x = tg.randn(2, 5, 3, dtype=F64)                                         # (B, T, I)
    h0 = tg.randn(1, 2, 4, dtype=F64)
    out, h_n = layer(x, h0)
    h, expected = h0[0, ...], []
    for t in range(5):
        h = cell(x[:, t], h)
        expected.append(h.numpy())
    np.testing.assert_allclose(out.numpy(), np.stack(expected, axis=1), rtol=1e-12)
    np.testing.assert_allclose(h_n.numpy()[0], expected[-1], rtol=1e-12)
    # unbatched input gives the first sequence of the batch
    out1, h1 = layer(x[0, ...], h0[:, 0])
    np.testing.assert_allclose(out1.numpy(), out.numpy()[0], rtol=1e-12)
    assert h1.shape == (1, 4)


def test_forget_bias_opens_the_gate(backend):
    layer = nn.GatedResidualRNN(3, 4, num_layers=2, forget_bias=2.0)
    for k in range(2):
        b_ih, b_hh = getattr(layer, f"bias_ih_l{k}").numpy(), getattr(layer, f"bias_hh_l{k}").numpy()
        np.testing.assert_array_equal(b_ih[4:], 2.0)
        np.testing.assert_array_equal(b_hh[4:], 0.0)
        assert np.all(np.abs(b_ih[:4]) <= 0.5) and np.any(b_ih[:4] != 0)   # update bias: U(-1/sqrt(4), 1/sqrt(4))
    cell = nn.GatedResidualRNNCell(3, 4, forget_bias=1.0)
    np.testing.assert_array_equal(cell.bias_ih.numpy()[4:] + cell.bias_hh.numpy()[4:], 1.0)
    assert cell.weight_ih.shape == (8, 3) and cell.weight_hh.shape == (8, 4)


def test_pytorch_style_initialisation(backend):
    layer = nn.GatedResidualRNN(5, 16)
    for name, p in layer.named_parameters():
        a = p.numpy()
        assert np.all(np.abs(a) <= 0.25), name                     # U(-1/sqrt(16), 1/sqrt(16))
        assert a.std() > 0.1, name                                 # not all zeros / tiny
    assert layer.weight_ih_l0.shape == (32, 5) and layer.weight_hh_l0.shape == (32, 16)


# --- "preserving information is effortless" ------------------------------------------------
def _carry_only(layer, H):
    """Update weights and bias 0 (update = tanh(0) = 0), forget bias 40 (sigmoid = 1 in float64),
    while the forget gate's weights stay random: the gate is saturated open whatever the input."""
    w = weights(layer)
    w["weight_ih_l0"][:H] = 0
    w["weight_hh_l0"][:H] = 0
    w["bias_ih_l0"][:H], w["bias_hh_l0"][:H] = 0, 0
    w["bias_ih_l0"][H:], w["bias_hh_l0"][H:] = 40.0, 0
    layer.load_state_dict(w)


def test_gated_residual_carries_the_state_unchanged(backend):
    H, T = 3, 20
    layer = nn.GatedResidualRNN(2, H, dtype=F64)
    _carry_only(layer, H)
    x = tg.randn(T, 2, 2, dtype=F64)
    h0 = tg.randn(1, 2, H, dtype=F64, requires_grad=True)
    out, h_n = layer(x, h0)
    for t in range(T):
        np.testing.assert_array_equal(out.numpy()[t], h0.numpy()[0])
    np.testing.assert_array_equal(h_n.numpy(), h0.numpy())

    # dh_T/dh_0 is the identity: one backward per unit of h_T
    for j in range(H):
        h0.grad = None
        out, h_n = layer(x, h0)
        h_n[0, :, j].sum().backward()
        expected = np.zeros((1, 2, H))
        expected[..., j] = 1.0
        np.testing.assert_allclose(h0.grad.numpy(), expected, atol=1e-12)


def test_residual_gradient_does_not_vanish_through_20_steps(backend):
    """Same weights in a vanilla RNN and a residual RNN: d sum(h_20) / d h_0."""
    residual = nn.ResidualRNN(4, 8, dtype=F64)
    vanilla = nn.RNN(4, 8, dtype=F64)
    vanilla.load_state_dict(residual.state_dict())
    x = tg.randn(20, 2, 4, dtype=F64)
    norms = {}
    for name, layer in (("vanilla", vanilla), ("residual", residual)):
        h0 = tg.zeros(1, 2, 8, dtype=F64, requires_grad=True)
        _, h_n = layer(x, h0)
        h_n.sum().backward()
        norms[name] = np.linalg.norm(h0.grad.numpy())
    assert norms["vanilla"] < 1e-3                 # vanished: about 0.5**20
    assert norms["residual"] > 1.0                 # the identity path keeps it
    assert norms["residual"] / norms["vanilla"] > 1e4


# --- Highway ----------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_highway_formula(backend, activation):
    hw = nn.Highway(4, activation=activation, gate_bias=-1.0, dtype=F64)
    w = weights(hw)
    np.testing.assert_array_equal(w["bias_T"], -1.0)
    x = tg.randn(5, 2, 4, dtype=F64)
    xn = x.numpy()
    g = sigmoid(xn @ w["weight_T"].T + w["bias_T"])
    a = xn @ w["weight_H"].T + w["bias_H"]
    H = np.tanh(a) if activation == "tanh" else np.maximum(a, 0)
    np.testing.assert_allclose(hw(x).numpy(), g * H + (1 - g) * xn, rtol=1e-12, atol=1e-14)


def test_highway_closed_gate_carries_the_input(backend):
    hw = nn.Highway(4, gate_bias=-40.0, dtype=F64)
    hw.weight_T.data = tg.zeros(4, 4, dtype=F64).data
    x = tg.randn(3, 2, 4, dtype=F64)
    np.testing.assert_array_equal(hw(x).numpy(), x.numpy())


def test_highway_between_recurrent_layers(backend):
    rnn1, hw, rnn2 = nn.GRU(3, 4), nn.Highway(4), nn.LSTM(4, 5)
    h, _ = rnn1(tg.randn(6, 2, 3))
    out, (h_n, c_n) = rnn2(hw(h))
    assert out.shape == (6, 2, 5)
    out.sum().backward()
    assert hw.weight_T.grad.shape == (4, 4) and rnn1.weight_hh_l0.grad is not None


# --- skip connections -------------------------------------------------------------------
@pytest.mark.parametrize("cell_type, n_gates", [("rnn", 1), ("lstm", 4), ("gru", 3)])
@pytest.mark.parametrize("input_skip", [True, False])
@pytest.mark.parametrize("output_skip", [True, False])
def test_skip_connected_shapes(cell_type, n_gates, input_skip, output_skip):
    I, H, L = 3, 4, 3
    net = nn.SkipConnectedRNN(cell_type, I, H, num_layers=L, input_skip=input_skip, output_skip=output_skip)
    assert net.layers[0].weight_ih_l0.shape == (n_gates * H, I)
    for k in (1, 2):
        assert net.layers[k].weight_ih_l0.shape == (n_gates * H, H + (I if input_skip else 0))
    assert "layers.2.weight_hh_l0" in dict(net.named_parameters())
    out, state = net(tg.randn(5, 2, I))
    F = (L if output_skip else 1) * H
    assert out.shape == (5, 2, F) == (5, 2, net.output_size)
    h_n = state[0] if cell_type == "lstm" else state
    assert h_n.shape == (L, 2, H)


def _manual_stack(layers, x, input_skip, output_skip):
    """The skip-connected stack written out with standalone single-layer modules."""
    outs, h_ns, below = [], [], x
    for k, layer in enumerate(layers):
        inp = tg.concat([below, x], axis=2) if k > 0 and input_skip else below
        out, h_n = layer(inp)
        outs.append(out)
        h_ns.append(h_n[0] if isinstance(h_n, tuple) else h_n)
        below = out
    return (tg.concat(outs, axis=2) if output_skip else outs[-1]), tg.concat(h_ns, axis=0)


@pytest.mark.parametrize("cell_type", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("input_skip, output_skip", [(True, True), (True, False), (False, True)])
def test_skip_connected_is_a_composition_of_single_layers(backend, cell_type, input_skip, output_skip):
    net = nn.SkipConnectedRNN(cell_type, 3, 4, num_layers=3, input_skip=input_skip, output_skip=output_skip,
                              dtype=F64)
    Layer = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell_type]
    singles = []
    for k in range(3):
        single = Layer(net.layers[k].input_size, 4, dtype=F64)
        single.load_state_dict(net.layers[k].state_dict())
        singles.append(single)
    x = tg.randn(6, 2, 3, dtype=F64)
    out, state = net(x)
    expected_out, expected_h = _manual_stack(singles, x, input_skip, output_skip)
    np.testing.assert_allclose(out.numpy(), expected_out.numpy(), rtol=1e-12)
    h_n = state[0] if cell_type == "lstm" else state
    np.testing.assert_allclose(h_n.numpy(), expected_h.numpy(), rtol=1e-12)


def test_skip_connected_follows_the_notes_equations(backend):
    """h1(t) = tanh(W01 X + W11 h1(t-1) + b1);  h2(t) = tanh(W12 h1(t) + W02 X + W22 h2(t-1) + b2);
    the output holds [h1, h2], so a Linear on it is Y = W2 h2 + W13 h1 + b3."""
    I, H, T = 3, 4, 5
    net = nn.SkipConnectedRNN("rnn", I, H, num_layers=2, dtype=F64)
    w0, w1 = weights(net.layers[0]), weights(net.layers[1])
    W01, W11, b1 = w0["weight_ih_l0"], w0["weight_hh_l0"], w0["bias_ih_l0"] + w0["bias_hh_l0"]
    W12, W02 = w1["weight_ih_l0"][:, :H], w1["weight_ih_l0"][:, H:]     # [W^(1,2) | W^(0,2)]
    W22, b2 = w1["weight_hh_l0"], w1["bias_ih_l0"] + w1["bias_hh_l0"]
    x = tg.randn(T, 2, I, dtype=F64)
    X = x.numpy()
    h1, h2, rows = np.zeros((2, H)), np.zeros((2, H)), []
    for t in range(T):
        h1 = np.tanh(X[t] @ W01.T + h1 @ W11.T + b1)
        h2 = np.tanh(h1 @ W12.T + X[t] @ W02.T + h2 @ W22.T + b2)
        rows.append(np.concatenate([h1, h2], axis=1))
    out, h_n = net(x)
    np.testing.assert_allclose(out.numpy(), np.stack(rows), rtol=1e-12)
    np.testing.assert_allclose(h_n.numpy(), np.stack([h1, h2]), rtol=1e-12)


def test_skip_connected_batch_first_unbatched_and_hx(backend):
    net = nn.SkipConnectedRNN("lstm", 3, 4, num_layers=2, dtype=F64)
    x = tg.randn(5, 2, 3, dtype=F64)
    h0, c0 = tg.randn(2, 2, 4, dtype=F64), tg.randn(2, 2, 4, dtype=F64)
    out, (h_n, c_n) = net(x, (h0, c0))
    net_bf = nn.SkipConnectedRNN("lstm", 3, 4, num_layers=2, batch_first=True, dtype=F64)
    net_bf.load_state_dict(net.state_dict())
    out_bf, (h_bf, _) = net_bf(x.transpose(0, 1), (h0, c0))
    np.testing.assert_allclose(out_bf.numpy(), out.numpy().transpose(1, 0, 2), rtol=1e-12)
    np.testing.assert_allclose(h_bf.numpy(), h_n.numpy(), rtol=1e-12)
    out1, (h1, c1) = net(x[:, 1], (h0[:, 1], c0[:, 1]))
    np.testing.assert_allclose(out1.numpy(), out.numpy()[:, 1], rtol=1e-12)
    np.testing.assert_allclose(c1.numpy(), c_n.numpy()[:, 1], rtol=1e-12)
    # the initial state of layer 1 matters (it is hx[1], not zeros)
    out_zero, _ = net(x)
    assert not np.allclose(out_zero.numpy()[0, :, 4:], out.numpy()[0, :, 4:])


def test_skip_connected_bidirectional(backend):
    net = nn.SkipConnectedRNN("gru", 3, 4, num_layers=2, bidirectional=True)
    assert net.layers[1].weight_ih_l0_reverse.shape == (12, 8 + 3)
    out, h_n = net(tg.randn(5, 2, 3))
    assert out.shape == (5, 2, 16) and h_n.shape == (4, 2, 4)
    np.testing.assert_allclose(h_n.numpy()[3], out.numpy()[0, :, 12:], rtol=1e-6)   # reverse ends at t=0


# --- scopes: the visualizer lays the graph out through time with them --------------------
STEP_OPS = {"ResidualRNNCell": ["add", "linear", "tanh"],
            "GatedResidualRNNCell": ["add", "linear", "mul", "sigmoid", "split", "tanh"],
            "RNNCell": ["linear", "tanh"]}


def _recorded_nodes(t):
    return [n for n in topological_order(t.grad_fn, expand=True) if not isinstance(n, AccumulateGrad)]


@pytest.mark.parametrize("make, name, cell", [
    (lambda: nn.ResidualRNN(3, 4, num_layers=2), "ResidualRNN", "ResidualRNNCell"),
    (lambda: nn.GatedResidualRNN(3, 4, num_layers=2), "GatedResidualRNN", "GatedResidualRNNCell"),
    (lambda: nn.SkipConnectedRNN("rnn", 3, 4, num_layers=2), "SkipConnectedRNN", "RNNCell"),
])
def test_every_step_op_lies_in_its_timestep_scope(backend, make, name, cell):
    layer, T = make(), 4
    out, h_n = layer(tg.randn(T, 2, 3))
    loss = out.sum() + h_n.sum()
    per_step = {}
    for node in _recorded_nodes(loss):
        times = [s for s in node.scope if s.startswith("t=")]
        if not times:
            continue
        assert re.fullmatch(rf"\('{name}', 'layer[01]', 't=[1-{T}]', '{cell}'\)", str(node.scope)), node.scope
        per_step.setdefault(node.scope[1:3], []).append(node.name)
    assert sorted(per_step) == [(f"layer{k}", f"t={t}") for k in range(2) for t in range(1, T + 1)]
    for ops in per_step.values():
        assert sorted(ops) == STEP_OPS[cell]
    # output[t - 1] of the top layer is the h made at step t of layer1
    loop = out.grad_fn if name != "SkipConnectedRNN" else out.grad_fn.parents[1][0]
    stack = loop.expand()[1][0].grad_fn          # the layer's loop, drawn as its steps and their stack
    for t, (node, _) in enumerate(stack.parents, start=1):
        assert node.scope == (name, "layer1", f"t={t}", cell)
    # the input projection is hoisted: one linear per layer, outside the time loop
    hoisted = [n for n in _recorded_nodes(loss) if n.name == "linear" and len(n.scope) == 2]
    assert sorted(n.scope for n in hoisted) == [(name, "layer0"), (name, "layer1")]


def test_highway_scope(backend):
    y = nn.Highway(4)(tg.randn(3, 2, 4))
    scopes = {n.scope for n in _recorded_nodes(y)}
    assert scopes == {("Highway",)}


# --- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize("make, name", [
    (lambda: nn.ResidualRNN(3, 4), "ResidualRNN"),
    (lambda: nn.GatedResidualRNN(3, 4), "GatedResidualRNN"),
    (lambda: nn.SkipConnectedRNN("gru", 3, 4), "SkipConnectedRNN"),
])
def test_layer_errors(make, name):
    layer = make()
    with pytest.raises(ValueError, match=rf"{name}: expected input with 3 features in its last axis, got shape \(5, 2, 7\)"):
        layer(tg.randn(5, 2, 7))
    with pytest.raises(TypeError, match=rf"{name}: expected a floating-point input .* got int64"):
        layer(tg.tensor([[1, 2, 3]]))
    with pytest.raises(TypeError, match=rf"{name}: input is float64 but the parameters are float32"):
        layer(tg.randn(5, 2, 3, dtype=F64))
    with pytest.raises(ValueError, match=rf"{name}: expected input of shape \(T, B, 3\).*got \(1, 5, 2, 3\)"):
        layer(tg.randn(1, 5, 2, 3))
    L = layer.num_layers
    with pytest.raises(ValueError, match=rf"{name}: expected h_0 of shape \({L}, 2, 4\), got \(1, 2, 5\)"):
        layer(tg.randn(5, 2, 3), tg.randn(1, 2, 5))


def test_cell_errors():
    cell = nn.GatedResidualRNNCell(3, 4)
    with pytest.raises(ValueError, match=r"GatedResidualRNNCell: expected input with 3 features .* got shape \(2, 5\)"):
        cell(tg.randn(2, 5))
    with pytest.raises(ValueError, match=r"GatedResidualRNNCell: expected state of shape \(2, 4\), got \(2, 3\)"):
        cell(tg.randn(2, 3), tg.randn(2, 3))
    with pytest.raises(ValueError, match=r"ResidualRNNCell: expected input of shape \(batch, 3\) or \(3,\), got \(1, 2, 3\)"):
        nn.ResidualRNNCell(3, 4)(tg.randn(1, 2, 3))


def test_constructor_errors():
    with pytest.raises(ValueError, match="cell_type must be 'rnn', 'lstm' or 'gru', got 'transformer'"):
        nn.SkipConnectedRNN("transformer", 3, 4)
    with pytest.raises(ValueError, match="SkipConnectedRNN: num_layers must be at least 1, got 0"):
        nn.SkipConnectedRNN("rnn", 3, 4, num_layers=0)
    with pytest.raises(ValueError, match="GatedResidualRNN: forget_bias needs bias=True"):
        nn.GatedResidualRNN(3, 4, bias=False, forget_bias=1.0)
    with pytest.raises(ValueError, match="GatedResidualRNNCell: forget_bias needs bias=True"):
        nn.GatedResidualRNNCell(3, 4, bias=False, forget_bias=1.0)
    with pytest.raises(ValueError, match="Highway: activation must be 'tanh' or 'relu', got 'gelu'"):
        nn.Highway(4, activation="gelu")


@pytest.mark.parametrize("make, error, message", [
    (lambda: nn.Highway(0), ValueError, "Highway: size must be at least 1, got 0"),
    (lambda: nn.Highway(-3), ValueError, "Highway: size must be at least 1, got -3"),
    (lambda: nn.Highway(4.0), TypeError, "Highway: size must be an int, got float 4.0"),
    (lambda: nn.SkipConnectedRNN("lstm", 3, 0), ValueError, "SkipConnectedRNN: hidden_size must be at least 1, got 0"),
    (lambda: nn.SkipConnectedRNN("gru", -1, 4), ValueError, "SkipConnectedRNN: input_size cannot be negative, got -1"),
    (lambda: nn.SkipConnectedRNN("rnn", 3, 4, num_layers=2.0), TypeError,
     "SkipConnectedRNN: num_layers must be an int, got float 2.0"),
    (lambda: nn.GatedResidualRNN(3, -2), ValueError, "GatedResidualRNN: hidden_size must be at least 1, got -2"),
    (lambda: nn.ResidualRNNCell(3, 0), ValueError, "ResidualRNNCell: hidden_size must be at least 1, got 0"),
])
def test_bad_sizes_are_named(make, error, message):
    """Not a ZeroDivisionError from 1/sqrt(0) or a 'math domain error' from sqrt(-2)."""
    with pytest.raises(error, match=rf"^{message}$"):
        make()


def test_highway_errors():
    hw = nn.Highway(4)
    with pytest.raises(ValueError, match=r"Highway: expected input with 4 features in its last axis, got shape \(2, 3\)"):
        hw(tg.randn(2, 3))
    with pytest.raises(TypeError, match="Highway: input is float64 but the parameters are float32"):
        hw(tg.randn(2, 4, dtype=F64))
