"""The fused recurrent-cell ops (tinygrad_rnn/cell_ops.py): one graph node per timestep that
computes what the cell's primitive ops compute, and expands into exactly those ops.

Their gradients are checked four ways: finite differences in float64 (gradcheck), the
primitive-op version of the same cell (nn/cells.py), the hand-derived BPTT (by_hand.py, through
the layers: tests/test_by_hand.py) and PyTorch (single steps here, the layers in
tests/test_rnn_torch.py). The pictures, record_gradients() and detect_anomaly() see the
primitive ops inside each step, as before the ops were fused.
"""
from pathlib import Path

import numpy as np
import pytest

import tinygrad_rnn as tg
import tinygrad_rnn.nn as nn
import visualize as viz
from visualize.trace import primitive_edge
from graphs import topological_order
from tinygrad_rnn.cell_ops import GatedResidualStep, GRUStep, LSTMStep, ResidualStep, RNNStep
from tinygrad_rnn.function import AccumulateGrad, Function
from tinygrad_rnn.nn.cells import gru_step, lstm_step, rnn_step
from tinygrad_rnn.nn.residual import gated_residual_step, residual_step
from tinygrad_rnn.recurrence import Recurrence

DATA = Path(__file__).parent / "data"
B, H = 3, 4


def f64(*shape, seed=0):
    return tg.Tensor(np.random.default_rng(seed).standard_normal(shape), dtype="float64", requires_grad=True)


def rnn_case(nonlinearity):
    inputs = [f64(B, H, seed=1), f64(B, H, seed=2), f64(H, H, seed=3)]
    fused = lambda xw, h, W: (RNNStep.apply(xw, h, W, nonlinearity=nonlinearity),)
    primitive = lambda xw, h, W: rnn_step(xw, (h,), W, nonlinearity)
    return inputs, fused, primitive


def lstm_case():
    inputs = [f64(B, 4 * H, seed=1), f64(B, H, seed=2), f64(B, H, seed=3), f64(4 * H, H, seed=4)]
    fused = lambda xw, h, c, W: LSTMStep.apply(xw, h, c, W)
    primitive = lambda xw, h, c, W: lstm_step(xw, (h, c), W)
    return inputs, fused, primitive


def gru_case(bias):
    inputs = [f64(B, 3 * H, seed=1), f64(B, H, seed=2), f64(3 * H, H, seed=3)] + ([f64(3 * H, seed=4)] if bias else [])
    fused = lambda xw, h, W, b=None: (GRUStep.apply(xw, h, W, *([b] if b is not None else [])),)
    primitive = lambda xw, h, W, b=None: gru_step(xw, (h,), W, b)
    return inputs, fused, primitive


def residual_case(gates, op, step):
    inputs = [f64(B, gates * H, seed=1), f64(B, H, seed=2), f64(gates * H, H, seed=3)]
    return inputs, (lambda xw, h, W: (op.apply(xw, h, W),)), (lambda xw, h, W: step(xw, (h,), W))


CASES = {"rnn-tanh": lambda: rnn_case("tanh"), "rnn-relu": lambda: rnn_case("relu"), "lstm": lstm_case,
         "gru": lambda: gru_case(True), "gru-no-bias": lambda: gru_case(False),
         "residual": lambda: residual_case(1, ResidualStep, residual_step),
         "gated-residual": lambda: residual_case(2, GatedResidualStep, gated_residual_step)}


@pytest.mark.parametrize("case", CASES)
def test_fused_op_passes_gradcheck(backend, case):
    inputs, fused, _ = CASES[case]()
    assert tg.gradcheck(lambda *xs: fused(*xs), inputs)


@pytest.mark.parametrize("case", CASES)
def test_fused_op_computes_what_its_primitive_ops_compute(backend, case):
    """Outputs and the gradient of every input equal those of the same step written with primitive
    ops, for random output gradients (float64, to rounding)."""
    inputs, fused, primitive = CASES[case]()
    rng = np.random.default_rng(7)
    results = []
    for step in (fused, primitive):
        for x in inputs:
            x.grad = None
        outs = step(*inputs)
        loss = sum((o * tg.Tensor(rng.standard_normal(o.shape))).sum() for o in outs)
        loss.backward()
        results.append(([o.numpy() for o in outs], [x.grad.numpy() for x in inputs]))
        rng = np.random.default_rng(7)              # the same output gradients for the second step
    (fused_out, fused_grads), (prim_out, prim_grads) = results
    for a, b in zip(fused_out, prim_out):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)
    for k, (a, b) in enumerate(zip(fused_grads, prim_grads)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13, err_msg=f"gradient of input {k}")


@pytest.mark.parametrize("case", ["rnn-tanh", "lstm", "gru", "residual", "gated-residual"])
def test_transposed_weight_and_output_row_change_nothing_but_where_h_lives(backend, case):
    """W_T (a row-major copy of W_hh.T made once per forward) gives the same numbers, and with
    ``out`` the step makes h in that array (a row of the layer's output), which is then h's array."""
    inputs, fused, _ = CASES[case]()
    op = {"rnn-tanh": RNNStep, "lstm": LSTMStep, "gru": GRUStep, "residual": ResidualStep,
          "gated-residual": GatedResidualStep}[case]
    W = next(x for x in inputs if x.shape[0] != B)
    W_T = W.backend.transposed_copy(W.data)
    out = W.backend.xp.zeros((B, H), dtype=W.data.dtype)
    attrs = {"nonlinearity": "tanh"} if op is RNNStep else {}
    plain = op.apply(*inputs, **attrs)
    written = op.apply(*inputs, **attrs, W_T=W_T, out=out)
    h, h2 = (plain[0], written[0]) if op is LSTMStep else (plain, written)
    np.testing.assert_array_equal(h2.numpy(), h.numpy())
    assert h2.data is out
    np.testing.assert_array_equal(W.backend.to_numpy(out), h.numpy())


# ---------------------------------------------------------------- against PyTorch, one step
def test_fused_steps_match_torch_cells(backend):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    I = 5
    for kind, G in (("LSTMCell", 4), ("GRUCell", 3), ("RNNCell", 1)):
        ours = getattr(nn, kind)(I, H, dtype="float64")
        theirs = getattr(torch.nn, kind)(I, H).double()
        with torch.no_grad():
            for name, p in ours.named_parameters():
                getattr(theirs, name).copy_(torch.tensor(p.numpy()))
        x = rng.standard_normal((B, I))
        states = [rng.standard_normal((B, H)) for _ in range(2 if kind == "LSTMCell" else 1)]
        xe = tg.Tensor(x, requires_grad=True)
        se = [tg.Tensor(s, requires_grad=True) for s in states]
        xt = torch.tensor(x, requires_grad=True)
        st = [torch.tensor(s, requires_grad=True) for s in states]
        oe = ours(xe, tuple(se) if len(se) == 2 else se[0])
        ot = theirs(xt, tuple(st) if len(st) == 2 else st[0])
        oe, ot = (oe, ot) if isinstance(oe, tuple) else ((oe,), (ot,))
        weights = [rng.standard_normal((B, H)) for _ in oe]
        sum((o * tg.Tensor(w)).sum() for o, w in zip(oe, weights)).backward()
        sum((o * torch.tensor(w)).sum() for o, w in zip(ot, weights)).backward()
        for a, b in zip(oe, ot):
            np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(xe.grad.numpy(), xt.grad.numpy(), rtol=1e-10, atol=1e-12)
        for a, b in zip(se, st):
            np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-10, atol=1e-12)
        for name, p in ours.named_parameters():
            np.testing.assert_allclose(p.grad.numpy(), getattr(theirs, name).grad.numpy(), rtol=1e-10, atol=1e-12,
                                       err_msg=f"{kind}.{name}")
        assert next(n for n in topological_order(oe[0].grad_fn)).name == {"LSTMCell": "lstmstep", "GRUCell": "grustep",
                                                                            "RNNCell": "rnnstep"}[kind]


# ---------------------------------------------------------------- a whole sequence: Recurrence
STEP_OPS = {"rnn-tanh": (RNNStep, {"nonlinearity": "tanh"}), "rnn-relu": (RNNStep, {"nonlinearity": "relu"}),
            "lstm": (LSTMStep, {}), "gru": (GRUStep, {}), "gru-no-bias": (GRUStep, {}),
            "residual": (ResidualStep, {}), "gated-residual": (GatedResidualStep, {})}


def sequence_case(case, T=4):
    """Recurrence over T steps of ``case``'s op, and the same loop of the step's primitive ops
    (nn/cells.py), on float64 inputs: xw (T, B, G*H), the initial state, the weights."""
    step_inputs, _, primitive = CASES[case]()
    step, attrs = STEP_OPS[case]
    n = len(step.out_names)
    xw = f64(T, *step_inputs[0].shape, seed=11)
    inputs = [xw] + step_inputs[1:]

    def fused(reverse):
        return lambda xw, *rest: Recurrence.apply(xw, *rest, step=step, cell="Cell", reverse=reverse, **attrs)

    def loop(reverse):
        def run(xw, *rest):
            state, weights, hs = tuple(rest[:n]), rest[n:], [None] * T
            for t in reversed(range(T)) if reverse else range(T):
                state = tuple(primitive(xw[t], *state, *weights))
                hs[t] = state[0]
            return (tg.stack(hs, axis=0),) + state
        return run
    return inputs, fused, loop


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("case", CASES)
def test_recurrence_passes_gradcheck(backend, case, reverse):
    inputs, fused, _ = sequence_case(case, T=3)
    assert tg.gradcheck(fused(reverse), inputs)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("case", CASES)
def test_recurrence_computes_what_a_loop_of_primitive_steps_computes(backend, case, reverse):
    """The hidden states, the final state and the gradient of every input (xw, h_0 (c_0), W_hh (b_hh))
    equal those of the loop written with the cell's primitive ops, for random gradients at every
    output; and once more when only the final state is used."""
    inputs, fused, loop = sequence_case(case)
    for used in ("all", "final"):
        results = []
        for run in (fused(reverse), loop(reverse)):
            rng = np.random.default_rng(5)
            for x in inputs:
                x.grad = None
            outs = run(*inputs)
            kept = outs if used == "all" else outs[1:]
            sum((o * tg.Tensor(rng.standard_normal(o.shape))).sum() for o in kept).backward()
            results.append(([o.numpy() for o in outs], [x.grad.numpy() for x in inputs]))
        (ours, our_grads), (theirs, their_grads) = results
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)
        for k, (a, b) in enumerate(zip(our_grads, their_grads)):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13, err_msg=f"{used}: gradient of input {k}")


@pytest.mark.parametrize("case, step, kept", [("rnn-tanh", RNNStep, 0), ("lstm", LSTMStep, 3), ("gru", GRUStep, 3),
                                              ("residual", ResidualStep, 1)])
def test_recurrence_keeps_arrays_not_step_ops(backend, case, step, kept):
    """One graph node for the whole loop. It keeps h_0..h_T in one array and, per step, only the
    arrays the step's backward needs beyond them (RNN: none, its tanh' comes from h; LSTM: c_t,
    the gates, tanh(c_t); GRU: r and z, n, W_hn h_prev + b_hn), not a step op per timestep. The
    steps become graph nodes, in scopes t = 1..T, when the node is expanded."""
    T = 5
    inputs, fused, _ = sequence_case(case, T=T)
    out, *final = fused(False)(*inputs)
    node = out.grad_fn
    assert all(f.grad_fn is node for f in final)
    hs, c_0, W_hh, per_step = node.saved
    assert hs.shape == (T + 1,) + out.shape[1:]
    assert [len(arrays) for arrays in per_step] == ([kept] * T if kept else [])
    assert not any(isinstance(v, Function) for v in vars(node).values() if v is not node.runner)
    _, (stacked, *_) = node.expand()
    steps = [parent for parent, _ in stacked.grad_fn.parents]
    assert [type(s) for s in steps] == [step] * T
    assert [s.scope[-2:] for s in steps] == [(f"t={t}", "Cell") for t in range(1, T + 1)]


# ---------------------------------------------------------------- a layer: one node, expanding to its steps and their ops
def _names(root, expand):
    return [n.name for n in topological_order(root.grad_fn, expand=expand) if not isinstance(n, AccumulateGrad)]


@pytest.mark.parametrize("layer, step, inner, once", [
    (lambda: nn.RNN(3, H), "rnnstep", ["linear", "tanh"], ["add", "linear", "unbind", "stack"]),
    (lambda: nn.LSTM(3, H), "lstmstep", ["linear", "split", "sigmoid", "sigmoid", "tanh", "mul", "mul", "add",
                                          "sigmoid", "tanh", "mul"], ["add", "linear", "unbind", "stack"]),
    (lambda: nn.GRU(3, H), "grustep", ["split", "linear", "split", "add", "sigmoid", "add", "sigmoid", "mul", "add",
                                        "tanh", "lerp"], ["linear", "unbind", "stack"]),   # b_hh stays in the step
    (lambda: nn.ResidualRNN(3, H), "residualstep", ["linear", "tanh", "add"], ["add", "linear", "unbind", "stack"]),
    (lambda: nn.GatedResidualRNN(3, H), "gatedresidualstep", ["linear", "split", "sigmoid", "mul", "tanh", "add"],
     ["add", "linear", "unbind", "stack"]),
])
def test_a_layer_runs_one_node_which_expands_to_a_fused_node_per_step_and_on_to_the_cells_ops(backend, layer, step,
                                                                                                 inner, once):
    T = 5
    out, _ = layer()(tg.randn(T, 2, 3))
    nodes = _names(out, expand=False)                 # the input projection, then the whole time loop
    assert sorted(nodes) == sorted([n for n in once if n not in ("unbind", "stack")] + ["recurrence"])
    inputs, outputs = out.grad_fn.expand()            # the loop's T steps, between an unbind and a stack
    assert _names(outputs[0], expand=False).count(step) == T
    assert sorted(_names(outputs[0], expand=False)) == sorted([step] * T + once)
    expanded = _names(out, expand=True)               # and each step's primitive ops
    assert sorted(expanded) == sorted(inner * T + once)


def test_variants_without_a_fused_op_run_the_primitive_ops(backend):
    out, _ = nn.LSTM(3, H, peephole=True)(tg.randn(2, 1, 3))
    assert "recurrence" not in _names(out, expand=False) and "sigmoid" in _names(out, expand=False)
    out, _ = nn.GRU(3, H, reset_after=False)(tg.randn(2, 1, 3))
    assert "recurrence" not in _names(out, expand=False) and "lerp" in _names(out, expand=False)


def test_expansion_is_made_once_and_freed_with_the_node(backend):
    out, (h_n, c_n) = nn.LSTM(3, H)(tg.randn(3, 2, 3))
    layer = out.grad_fn
    assert layer.name == "recurrence"
    steps_in, steps_out = layer.expand()
    assert layer.expand()[1] is steps_out
    assert [i._edge() for i in steps_in] == list(layer.parents)
    assert [o.grad_fn.name for o in steps_out] == ["stack", "lstmstep", "lstmstep"]     # out, h_n, c_n
    np.testing.assert_array_equal(steps_out[0].numpy(), out.numpy())
    np.testing.assert_array_equal(steps_out[1].numpy(), h_n.numpy()[0])
    node = steps_out[1].grad_fn                                              # the last step
    assert node.scope == ("LSTM", "layer0", "t=3", "LSTMCell") and steps_out[2].grad_fn is node
    inputs, outputs = node.expand()
    assert node.expand()[1] is outputs
    assert [o.grad_fn.name for o in outputs] == ["mul", "add"]            # h = o * tanh(c), c = f * c_prev + i * g
    assert [i._edge() for i in inputs] == list(node.parents)               # its inputs are the node's own edges
    h, c = (o.numpy() for o in outputs)
    (out.sum() + c_n.sum()).backward()
    assert layer.freed and layer.expansion is None and node.freed and node.expansion is None
    freed = layer.expand()                                                  # drawn later: the shapes, freed
    assert [o.shape for o in freed[1]] == [o.shape for o in steps_out]
    assert all(o.grad_fn.freed for o in freed[1])
    step_freed = freed[1][1].grad_fn.expand()
    assert step_freed[1][0].shape == h.shape and step_freed[1][0].grad_fn.freed


def _primitive_layer(kind, **kw):
    """The same layer running the primitive-op steps of nn/cells.py (class named like the layer, so that
    its scopes, and so the pictures, are the same)."""
    steps = {"RNN": lambda self, W: lambda xw, s: rnn_step(xw, s, W, self.nonlinearity),
             "LSTM": lambda self, W: lambda xw, s: lstm_step(xw, s, W),
             "GRU": lambda self, W: lambda xw, s: gru_step(xw, s, W, self._param("bias_hh", self._tag)),
             "ResidualRNN": lambda self, W: lambda xw, s: residual_step(xw, s, W),
             "GatedResidualRNN": lambda self, W: lambda xw, s: gated_residual_step(xw, s, W)}

    def _cell(self, tag):
        self._tag = tag
        return steps[kind](self, self._param("weight_hh", tag))
    return type(kind, (getattr(nn, kind),), {"_cell": _cell, "_fused": lambda self, tag: None})(3, H, dtype="float64",
                                                                                                   **kw)


@pytest.mark.parametrize("kind, kw", [("RNN", {}), ("LSTM", {}), ("GRU", {}), ("ResidualRNN", {}),
                                      ("GatedResidualRNN", {"num_layers": 2}),
                                      ("LSTM", {"num_layers": 2, "bidirectional": True}),
                                      ("GRU", {"bidirectional": True})])
def test_pictures_of_a_fused_layer_are_those_of_its_primitive_ops(backend, kind, kw):
    """Every level of draw_bptt, with and without gradients, gives the same DOT for the layer as for the
    same layer written with primitive ops: the fused op is drawn as the ops it stands for."""
    sources = []
    for make in (lambda: getattr(nn, kind)(3, H, dtype="float64", **kw), lambda: _primitive_layer(kind, **kw)):
        tg.manual_seed(0)
        layer = make()
        out, _ = layer(tg.randn(3, 2, 3, dtype="float64"))
        loss = (out * out).sum()
        sources.append([viz.draw_bptt(loss, level=level, gradients=grads).source
                        for level in ("op", "cell", "layer") for grads in (False, True)])
    assert sources[0] == sources[1]


GOLDEN = {
    # The hello RNN is written with primitive ops; the LSTM file is drawn from the same layer running the
    # primitive-op steps of nn/cells.py (the reference the fused layer must match). Both were first made by
    # the engine before the cell ops were fused (commit 07e1218) and were byte-identical to the fused
    # layer's pictures then; the pictures changed on purpose later (issue 16). Regenerate with
    # `python tests/test_cell_ops.py` and look at the pictures (render the .gv with neato -n2 -Tpng).
    "golden_hello_op.gv": lambda make=None: viz.draw_bptt(viz_hello()[0], level="op", highlight="h_0",
                                                          highlight_from="L_4").source,
    "golden_lstm_step_op.gv": lambda make=None: _lstm_picture(make),
}


def viz_hello():
    from visualize.examples import hello_rnn
    return hello_rnn()


def _lstm_picture(make=None):
    tg.manual_seed(0)
    lstm = make() if make is not None else nn.LSTM(3, 4, dtype="float64")
    out, (h_n, c_n) = lstm(tg.randn(2, 1, 3, dtype="float64"))
    loss = (out * out).sum() + c_n.sum()
    loss.name = "L"
    return viz.draw_bptt(loss, level="op", gradients=True).source


@pytest.mark.parametrize("name", GOLDEN)
def test_op_level_pictures_are_the_golden_ones(name):
    """The default (fused) layer draws the golden picture (see GOLDEN for how it was made)."""
    tg.set_backend("numpy")
    assert GOLDEN[name]() == (DATA / name).read_text(encoding="utf-8")


if __name__ == "__main__":       # regenerate the golden files from the primitive-op programs
    (DATA / "golden_hello_op.gv").write_text(GOLDEN["golden_hello_op.gv"](), encoding="utf-8")
    (DATA / "golden_lstm_step_op.gv").write_text(_lstm_picture(lambda: _primitive_layer("LSTM")), encoding="utf-8")


# ---------------------------------------------------------------- watching: record_gradients, anomaly, hooks
def test_record_gradients_names_the_ops_inside_each_lstm_step(backend):
    """The records of a default LSTM are those of the primitive-op LSTM: the same ops, scopes and gradients
    in the same order, and the records into W_hh add up to its .grad."""
    runs = []
    for make in (lambda: nn.LSTM(3, H, dtype="float64"), lambda: _primitive_layer("LSTM")):
        tg.manual_seed(0)
        layer = make()
        out, _ = layer(tg.randn(4, 2, 3, dtype="float64"))
        with tg.record_gradients() as records:
            (out * out).sum().backward()
        runs.append((records, layer))
    (fused, layer), (primitive, _) = runs
    # a record's source is the engine's node (the layer's loop, a step); as drawn, the op inside that made it
    key = lambda r: (r.consumer.name, r.consumer.scope[1:], primitive_edge(r.source, r.source_index)[0].name)
    assert [key(r) for r in fused] == [key(r) for r in primitive]
    for a, b in zip(fused, primitive):
        np.testing.assert_allclose(tg.get_backend().to_numpy(a.grad), tg.get_backend().to_numpy(b.grad),
                                   rtol=1e-10, atol=1e-13)
    inside = {(r.consumer.name, r.consumer.scope[-2:]) for r in fused}
    assert ("sigmoid", ("t=4", "LSTMCell")) in inside and ("mul", ("t=1", "LSTMCell")) in inside
    W_hh = layer.weight_hh_l0
    total = sum(tg.get_backend().to_numpy(r.grad) for r in fused if r.source is W_hh._accum)
    np.testing.assert_allclose(total, W_hh.grad.numpy(), rtol=1e-10)


def test_anomaly_in_backward_names_the_op_and_timestep_inside_the_cell(backend):
    """A NaN in what step t=2 kept (its input gate, as a bit flip would leave it): backward under
    detect_anomaly() stops at the primitive op of that step that first turns it into a gradient,
    i * g's mul (dg = dc * i), as the primitive-op LSTM does."""
    tg.manual_seed(0)
    lstm = nn.LSTM(3, H, dtype="float64")
    out, _ = lstm(tg.randn(5, 2, 3, dtype="float64"))
    c_2, gates, tanh_c = out.grad_fn.saved[3][1]                     # what the loop kept of t = 2: c, gates, tanh(c)
    gates[0, 0] = np.nan                                             # i of the first sequence, first unit
    with tg.detect_anomaly():
        with pytest.raises(tg.AnomalyError, match=r"backward: mul at LSTM/layer0/t=2/LSTMCell produced a NaN or inf "
                                                  r"gradient of shape \(2, 4\) \(its local derivative: dx = dy \* w"):
            out.sum().backward()


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_anomaly_in_forward_names_the_op_inside_the_cell_even_if_the_step_output_is_finite(backend):
    """W_hh h_0 overflows at the first step, t=1 (float32: 8 x 1e38 > 3.4e38); tanh(inf) = 1 leaves h finite, but the
    primitive op that overflowed is named, as it was before the ops were fused."""
    rnn = nn.RNN(3, 8)
    rnn.weight_hh_l0.data = rnn.weight_hh_l0.backend.xp.full((8, 8), 1e38, dtype=rnn.weight_hh_l0.data.dtype)
    x, h_0 = tg.ones(3, 1, 3), tg.ones(1, 1, 8)
    out, _ = rnn(x, h_0)                                        # without anomaly mode: no error, h saturates
    assert np.isfinite(out.numpy()).all()
    with tg.detect_anomaly():
        with pytest.raises(tg.AnomalyError, match=r"forward: linear at RNN/layer0/t=1/RNNCell produced NaN or inf"):
            rnn(x, h_0)


def test_hooks_and_retain_grad_on_a_fused_layers_outputs(backend):
    tg.manual_seed(0)
    lstm = nn.LSTM(3, H, dtype="float64")
    out, (h_n, c_n) = lstm(tg.randn(3, 2, 3, dtype="float64"))
    out.retain_grad()
    seen = []
    c_n.register_hook(lambda g: seen.append(g) or g * 2)
    (out.sum() + c_n.sum()).backward()
    np.testing.assert_array_equal(out.grad.numpy(), np.ones(out.shape))
    assert len(seen) == 1 and tg.get_backend().to_numpy(seen[0]).shape == (1, 2, H)
    tg.manual_seed(0)
    twin = nn.LSTM(3, H, dtype="float64")
    out2, (_, c2) = twin(tg.randn(3, 2, 3, dtype="float64"))
    (out2.sum() + 2 * c2.sum()).backward()                       # the hook doubled dL/dc_n
    np.testing.assert_allclose(lstm.weight_hh_l0.grad.numpy(), twin.weight_hh_l0.grad.numpy(), rtol=1e-12)


def test_replay_is_gone_and_its_keyword_a_deprecated_no_op(backend):
    """Layers used to take replay=True for speed at the cost of the pictures; every layer is now fast and
    drawable, and old code that passes the keyword is told so instead of failing."""
    with pytest.warns(DeprecationWarning, match=r"LSTM\(replay=\.\.\.\) is deprecated and does nothing"):
        layer = nn.LSTM(3, H, replay=True)
    out, _ = layer(tg.randn(2, 1, 3))
    assert "recurrence" in _names(out, expand=False) and "replay" not in repr(layer)
    import importlib.util
    assert importlib.util.find_spec("tinygrad_rnn.nn.replay") is None
