"""The backward pass: graph shapes, accumulation, memory, retain_graph, hooks, gradient
records, scopes, anomaly detection, error messages and determinism."""
import gc
import re
import tracemalloc
import warnings
import weakref

import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn.function import AccumulateGrad
from graphs import topological_order


def t64(a, requires_grad=True, name=None):
    return tg.Tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad, name=name)


# ------------------------------------------------------------------ graph shapes
def test_diamond_graph(backend):
    """y = (2x) * exp(x): x reaches y along two paths, dy/dx = 2 exp(x) + 2x exp(x)."""
    a = np.array([-1.0, 0.5, 2.0])
    x = t64(a)
    y = (x * 2.0) * x.exp()
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.exp(a) * (1 + a), rtol=1e-12)
    tg.gradcheck(lambda x: (x * 2.0) * x.exp(), [x])


def test_same_tensor_twice_in_one_op(backend):
    x = t64([3.0])
    (x * x).backward(tg.Tensor([1.0], dtype="float64"))
    np.testing.assert_array_equal(x.grad.numpy(), [6.0])


def test_fan_out_shared_weight_gets_the_sum_over_time(backend):
    """h_t = w * x_t for T steps, loss = sum_t h_t: dL/dw = sum_t x_t (the '+=' of BPTT)."""
    T = 7
    xs = np.random.default_rng(0).standard_normal((T, 3))
    w = t64(np.ones(3), name="w")
    loss = sum((w * t64(xs[t], requires_grad=False)).sum() for t in range(T))
    loss.backward()
    np.testing.assert_allclose(w.grad.numpy(), xs.sum(axis=0), rtol=1e-12)


def test_recurrent_chain_gradient_against_forward_mode(backend):
    """h_t = tanh(h_{t-1} * w + x_t): dh_T/dw from the engine equals the forward-mode derivative
    carried alongside in plain floats (w is a 0-d tensor, so every gradient is a NumPy scalar)."""
    T = 200
    xs = np.random.default_rng(1).standard_normal(T) * 0.5
    w = tg.Tensor(0.8, dtype="float64", requires_grad=True)
    h = tg.Tensor(0.0, dtype="float64")
    h_ref, dh_ref = 0.0, 0.0
    for t in range(T):
        h = (h * w + float(xs[t])).tanh()
        pre, dpre = h_ref * 0.8 + xs[t], dh_ref * 0.8 + h_ref
        h_ref = np.tanh(pre)
        dh_ref = (1 - h_ref ** 2) * dpre
    h.backward()
    assert h.item() == pytest.approx(h_ref, rel=1e-12)
    assert w.grad.item() == pytest.approx(dh_ref, rel=1e-10)


@pytest.mark.slow
def test_100k_step_chain_backs_up_without_recursion():
    """A 100,000-step chain h = tanh(h * w + x_t) (300,000 nodes): backward, then freeing the graph,
    neither recurses. Checked against the forward-mode derivative."""
    tg.set_backend("numpy")
    T = 100_000
    xs = (np.random.default_rng(2).standard_normal(T) * 0.3).tolist()
    w = tg.Tensor(0.6, dtype="float64", requires_grad=True)
    h = tg.Tensor(0.0, dtype="float64")
    h_ref = dh_ref = 0.0
    for x_t in xs:
        h = (h * w + x_t).tanh()
        dpre = dh_ref * 0.6 + h_ref
        h_ref = float(np.tanh(h_ref * 0.6 + x_t))
        dh_ref = (1 - h_ref * h_ref) * dpre
    node = weakref.ref(h.grad_fn)
    h.backward()
    assert w.grad.item() == pytest.approx(dh_ref, rel=1e-9)
    del h
    assert node() is None      # the whole chain was freed, without a RecursionError on the way


# ------------------------------------------------------------------ memory
def test_saved_buffers_are_freed_after_backward(backend):
    x = t64(np.ones((2, 3)))
    w = t64(np.ones((3, 3)))
    y = (x @ w).tanh()
    loss = (y * y).sum()
    nodes = [loss.grad_fn, y.grad_fn, y.grad_fn.parents[0][0]]
    assert all(n.saved is not None and n.saved != () for n in nodes[1:])
    loss.backward()
    for n in nodes:
        assert n.saved is None and n.freed


def test_retain_graph_keeps_saved_buffers(backend):
    x = t64([1.0, 2.0])
    y = x.tanh()
    y.sum().backward(retain_graph=True)
    assert y.grad_fn.saved is not None and not y.grad_fn.freed


def test_activations_are_released_by_backward_and_graph_by_dropping_the_output(backend):
    x = t64(np.ones((4, 5)))
    W = t64(np.full((5, 5), 0.1))
    h = (x @ W).tanh()
    activation = weakref.ref(h.data)
    tanh_node = weakref.ref(h.grad_fn)
    loss = (h * 2.0).sum()
    del h
    assert activation() is not None      # saved for backward by tanh and mul
    loss.backward()
    assert activation() is None          # backward released it
    assert tanh_node() is not None       # the graph itself lives while its output does
    del loss
    assert tanh_node() is None           # no reference cycles: freed without the collector
    gc.collect()
    assert x.grad is not None and W.grad is not None   # leaves keep their gradients


def test_graph_without_backward_is_freed_when_dropped(backend):
    x = t64(np.ones(3))
    y = x
    for _ in range(50):
        y = (y * 1.1).sigmoid()
    nodes = [weakref.ref(y.grad_fn)]
    del y
    assert nodes[0]() is None
    assert x._accum is None or x._accum.tensor is x


def _traced_growth(step, warmup, iterations):
    """Bytes still allocated after ``iterations`` more calls of ``step``, and the change in the
    number of live Python objects. Small bounded noise comes from CPython's free lists."""
    for _ in range(warmup):
        step()
    gc.collect()
    objects = len(gc.get_objects())
    tracemalloc.start()
    try:
        step()
        start = tracemalloc.get_traced_memory()[0]
        for _ in range(iterations):
            step()
        growth = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    gc.collect()
    return growth, len(gc.get_objects()) - objects


def test_memory_stays_flat_over_training_iterations():
    """100 iterations of forward + backward on shared weights. Each iteration makes about 60 kB
    of activations: a leak of them would grow memory by megabytes."""
    tg.set_backend("numpy")
    W = tg.randn(256, 256, requires_grad=True)
    b = tg.zeros(256, requires_grad=True)
    xs = [tg.randn(4, 256) for _ in range(5)]

    def iteration():
        h = tg.zeros(4, 256)
        for x in xs:
            h = tg.linear(h, W, b + x).tanh()
        h.sum().backward()
        W.grad = b.grad = None

    growth, objects = _traced_growth(iteration, warmup=10, iterations=100)
    assert growth < 500_000, f"memory grew by {growth} bytes over 100 iterations"
    assert objects < 50, f"{objects} more live objects after 100 iterations"


def test_truncated_bptt_with_detach_keeps_memory_flat():
    """A hidden state carried over 100 chunks with h = h.detach(): flat memory, no warning."""
    tg.set_backend("numpy")
    W = tg.randn(256, 256, requires_grad=True)
    state = {"h": tg.zeros(4, 256)}

    def chunk():
        h = state["h"]
        for _ in range(3):
            h = tg.linear(h, W).tanh()
        h.sum().backward()
        state["h"] = h.detach()
        W.grad = None

    with warnings.catch_warnings():
        warnings.simplefilter("error")      # the repeated-backward warning must not fire
        growth, objects = _traced_growth(chunk, warmup=10, iterations=100)
    assert growth < 500_000, f"memory grew by {growth} bytes over 100 chunks"
    assert objects < 50, f"{objects} more live objects after 100 chunks"


def test_forgetting_detach_between_chunks_is_caught(backend):
    """Without detach (and without retain_graph) the second chunk runs into the freed first one."""
    W = t64(np.eye(3) * 0.5)
    h = t64(np.ones((1, 3)), requires_grad=False)
    h = tg.linear(h, W).tanh()
    h.sum().backward()
    h = tg.linear(h, W).tanh()
    with pytest.raises(tg.GraphFreedError, match=r"h = h\.detach\(\)"):
        h.sum().backward()


# ------------------------------------------------------------------ retain_graph
def test_second_backward_raises_graph_freed_error(backend):
    x = t64([1.0, 2.0])
    with tg.scope("t=4"):
        y = x.tanh().sum()
    y.backward()
    with pytest.raises(tg.GraphFreedError) as err:
        y.backward()
    message = str(err.value)
    assert "retain_graph=True" in message and "detach()" in message
    assert "t=4" in message


def test_retain_graph_allows_a_second_pass_that_accumulates(backend):
    a = np.array([0.3, -1.2])
    x = t64(a)
    y = (x.tanh() * 3.0).sum()
    y.backward(retain_graph=True)
    first = x.grad.numpy()
    y.backward()
    np.testing.assert_allclose(first, 3 * (1 - np.tanh(a) ** 2), rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), 2 * first, rtol=1e-12)


def test_growing_graph_with_retain_graph_warns_naming_detach(backend):
    """The mistake everyone makes: h carried between chunks without detach(), and the
    GraphFreedError 'fixed' with retain_graph=True. Each chunk re-walks all earlier ones."""
    W = t64(np.eye(2) * 0.5)
    h = t64(np.ones((1, 2)), requires_grad=False)
    with pytest.warns(RuntimeWarning, match=r"h = h\.detach\(\)") as record:
        for chunk in range(8):
            h = tg.linear(h, W).tanh()
            h.sum().backward(retain_graph=True)
    assert "graph keeps growing" in str(record[0].message)


def test_no_false_warning_for_a_training_loop_or_repeated_passes(backend):
    """Leaves are walked by every iteration, and one graph may be walked again with retain_graph:
    neither is the growing-graph mistake."""
    W = t64(np.eye(2) * 0.5)
    x = t64(np.ones((1, 2)), requires_grad=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(10):
            tg.linear(x, W).tanh().sum().backward()
        loss = tg.linear(x, W).tanh().sum()
        for _ in range(10):
            loss.backward(retain_graph=True)


# ------------------------------------------------------------------ no_grad, detach
def test_no_grad_builds_no_graph(backend):
    x = t64([1.0, 2.0])
    with tg.no_grad():
        assert not tg.is_grad_enabled()
        y = (x * 2.0).tanh()
        with tg.enable_grad():
            z = x * 2.0
    assert tg.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad and z.grad_fn is not None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()


def test_no_grad_is_restored_after_an_exception(backend):
    with pytest.raises(ZeroDivisionError):
        with tg.no_grad():
            1 / 0
    assert tg.is_grad_enabled()


def test_detach_stops_gradient_and_records_the_cut(backend):
    x = t64([1.0, 2.0])
    with tg.scope("layer0", "t=2"):
        h = (x * 3.0).tanh()
    h.name = "h"
    d = h.detach()
    assert not d.requires_grad and d.grad_fn is None
    assert d._cut == ("tanh", ("layer0", "t=2"), "h")
    np.testing.assert_array_equal(d.numpy(), h.numpy())
    y = (d * x).sum()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), h.numpy(), rtol=1e-12)   # no path through d
    assert x.detach()._cut is None       # a leaf has no op to cut


# ------------------------------------------------------------------ hooks, retain_grad
def test_hook_on_non_leaf_sees_and_replaces_the_gradient(backend):
    x = t64([1.0, 2.0])
    y = x * 3.0
    seen = []

    def hook(g):
        seen.append(np.asarray(tg.Tensor(g).numpy()))
        return g * 10

    y.register_hook(hook)
    (y * y).sum().backward()
    np.testing.assert_allclose(seen[0], 2 * 3 * np.array([1.0, 2.0]), rtol=1e-12)   # dL/dy = 2y
    np.testing.assert_allclose(x.grad.numpy(), 10 * 3 * seen[0], rtol=1e-12)


def test_hook_on_leaf_sees_total_gradient_and_may_return_a_tensor(backend):
    x = t64([1.0, 2.0])
    seen = []

    def hook(g):
        seen.append(tg.Tensor(g).numpy())
        return tg.zeros(2, dtype="float64")

    x.register_hook(hook)
    (x * 2.0 + x * 5.0).sum().backward()
    np.testing.assert_array_equal(seen[0], [7.0, 7.0])   # both uses summed before the hook
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0])


def test_hook_returning_wrong_shape_is_an_error(backend):
    x = t64([1.0, 2.0])
    y = x * 2.0
    y.register_hook(lambda g: tg.zeros(3, dtype="float64"))
    with pytest.raises(ValueError, match=r"hook on mul returned a gradient of shape \(3,\), expected \(2,\)"):
        y.sum().backward()


def test_hook_may_not_change_the_gradients_dtype(backend):
    """As PyTorch ("hook has changed the type of value"): a float32 leaf whose hook answers in float64
    would otherwise get a float64 .grad that the optimizer step refuses later."""
    w = tg.Tensor([1.0, 2.0], requires_grad=True, name="w")          # float32
    w.register_hook(lambda g: g.astype("float64") if hasattr(g, "astype") else tg.Tensor(g).double())
    with pytest.raises(TypeError, match=r"a hook on 'w' returned a gradient of dtype float64, expected float32 "
                                        r"\(hook has changed the type of value\)"):
        (w * 3.0).sum().backward()
    assert w.grad is None                                               # nothing accumulated


def test_hook_returning_a_list_or_another_backends_array_is_named(backend):
    x = t64([1.0, 2.0])
    y = x * 2.0
    y.register_hook(lambda g: [1.0, 1.0])
    with pytest.raises(TypeError, match=r"a hook on mul returned list: expected None, a Tensor or a "
                                        rf"{tg.get_backend().name} array like the gradient"):
        y.sum().backward()
    if tg.get_backend().name != "numpy":
        z = t64([1.0, 2.0]) * 2.0
        z.register_hook(lambda g: np.ones(2))                           # a NumPy array on another backend
        with pytest.raises(TypeError, match=r"returned ndarray: expected None, a Tensor or a array_api_strict"):
            z.sum().backward()


def test_hook_returning_a_tensor_or_a_scalar_array_is_taken(backend):
    x = t64([1.0, 2.0])
    (x * 2.0).register_hook(lambda g: tg.Tensor(tg.get_backend().to_numpy(g) * 3, dtype="float64"))
    loss = x.sum() * 1.0
    loss.register_hook(lambda g: g * 2)                                  # a 0-d gradient (NumPy: a scalar)
    loss.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0])


def test_register_hook_needs_grad(backend):
    with pytest.raises(RuntimeError, match="does not require grad"):
        tg.zeros(2).register_hook(lambda g: g)


def test_retain_grad_on_non_leaf(backend):
    a = np.array([0.5, -0.5])
    x = t64(a)
    h = x.tanh().retain_grad()
    m = (h * 4.0)
    (m * m).sum().backward()
    np.testing.assert_allclose(h.grad.numpy(), 2 * 4 * 4 * np.tanh(a), rtol=1e-12)
    assert m.grad is None       # not retained


# ------------------------------------------------------------------ gradient records
def test_record_gradients_one_edge_per_edge_and_shared_weight_sum(backend):
    T = 4
    W = t64(np.eye(3) * 0.5, name="W_hh")
    h = t64(np.ones((2, 3)), requires_grad=False)
    for t in range(T):
        with tg.scope(f"t={t}"):
            h = tg.linear(h, W).tanh()
    loss = h.sum()
    n_edges = 1 + (2 * T - 1)          # sum<-tanh, tanh<-linear (T), linear<-tanh (T-1)
    with tg.record_gradients() as records:
        loss.backward()
    into_W = [r for r in records if isinstance(r.source, AccumulateGrad)]
    assert len(into_W) == T                                # one contribution per timestep
    assert all(r.source.tensor is W and r.source.label == "W_hh" for r in into_W)
    assert all(r.consumer.name == "linear" and r.input_index == 1 for r in into_W)
    assert sorted(r.consumer.scope for r in into_W) == [(f"t={t}",) for t in range(T)]
    total = sum(tg.Tensor(r.grad).numpy() for r in into_W)
    np.testing.assert_allclose(total, W.grad.numpy(), rtol=1e-12)
    assert len(records) - len(into_W) == n_edges
    assert all(r.grad.shape == r.source.out_shapes[r.source_index] for r in records)
    assert "GradientEdge linear -> accumulategrad" in repr(into_W[0])


def test_record_gradients_stops_recording_after_the_block(backend):
    x = t64([1.0])
    with tg.record_gradients() as records:
        (x * 2.0).sum().backward()
    n = len(records)
    (x * 2.0).sum().backward()
    assert len(records) == n == 2


# ------------------------------------------------------------------ scopes
def test_scopes_are_recorded_nested_and_restored(backend):
    x = t64([1.0])
    with tg.scope("LSTM", "layer0"):
        a = x * 2.0
        with tg.scope("t=3", "LSTMCell"):
            assert tg.current_scope() == ("LSTM", "layer0", "t=3", "LSTMCell")
            b = a.tanh()
        c = b + 1.0
    d = c * c
    assert a.grad_fn.scope == ("LSTM", "layer0")
    assert b.grad_fn.scope == ("LSTM", "layer0", "t=3", "LSTMCell")
    assert c.grad_fn.scope == ("LSTM", "layer0")
    assert d.grad_fn.scope == ()
    assert "LSTM/layer0/t=3/LSTMCell" in repr(b.grad_fn)


def test_scope_is_restored_after_an_exception(backend):
    with pytest.raises(ValueError):
        with tg.scope("outer"):
            with tg.scope("t=1"):
                tg.zeros(2) + tg.zeros(3)
    assert tg.current_scope() == ()
    x = t64([1.0])
    assert (x * 2.0).grad_fn.scope == ()


# ------------------------------------------------------------------ anomaly detection
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_detect_anomaly_names_op_and_timestep_in_forward(backend):
    x = t64([1.0, 2.0])
    with tg.detect_anomaly():
        h = x * 1.0
        with pytest.raises(tg.AnomalyError, match=r"forward: log at RNN/t=3 produced NaN or inf.*\(2,\)"):
            for t in range(5):
                with tg.scope("RNN", f"t={t}"):
                    h = (h - 1.5).log() if t == 3 else h * 1.0
    # outside the context, NaN passes silently (as NumPy)
    assert np.isnan((x - 1.5).log().numpy()[0])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_detect_anomaly_without_grad_too(backend):
    with tg.detect_anomaly(), tg.no_grad():
        with pytest.raises(tg.AnomalyError, match="forward: log at top level"):
            tg.Tensor([-1.0]).log()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_detect_anomaly_names_op_and_scope_in_backward(backend):
    """sqrt at 0 is finite in forward, but its gradient 1/(2 sqrt(0)) is inf."""
    x = t64([0.0, 4.0])
    with tg.detect_anomaly():
        with tg.scope("t=7"):
            y = x.sqrt()
        loss = (y * 2.0).sum()
        with pytest.raises(tg.AnomalyError, match=r"backward: sqrt at t=7 produced a NaN or inf gradient") as err:
            loss.backward()
    assert "dx = dy / (2 * y)" in str(err.value) and "of shape (2,)" in str(err.value)


# ------------------------------------------------------------------ backward's own errors
def test_backward_of_non_scalar_needs_grad(backend):
    y = t64(np.ones((2, 3))) * 2.0
    with pytest.raises(RuntimeError, match=r"scalar output, got shape \(2, 3\)"):
        y.backward()


def test_backward_with_grad(backend):
    x = t64(np.ones((2, 3)))
    y = x * 2.0
    y.backward(np.full((2, 3), 0.5))
    np.testing.assert_array_equal(x.grad.numpy(), np.ones((2, 3)))


def test_backward_with_wrong_grad_shape_names_both(backend):
    y = t64(np.ones((2, 3))) * 2.0
    with pytest.raises(ValueError, match=r"grad has shape \(3, 2\), expected the output's shape \(2, 3\)"):
        y.backward(tg.ones(3, 2, dtype="float64"))


def test_backward_on_tensor_without_grad(backend):
    with pytest.raises(RuntimeError, match="does not require grad"):
        tg.ones(2).sum().backward()


def test_gradients_accumulate_across_backward_calls_until_zeroed(backend):
    x = t64([1.0, 2.0])
    (x * 3.0).sum().backward()
    (x * 4.0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [7.0, 7.0])
    x.zero_grad()
    assert x.grad is None


def test_backward_of_a_leaf(backend):
    x = t64(2.0)
    x.backward()
    assert x.grad.item() == 1.0


def test_leaf_gradient_is_a_private_copy(backend):
    """x.grad must not alias a buffer of the pass (here dy of the add, shared by both inputs)."""
    x, y = t64([1.0, 1.0]), t64([2.0, 2.0])
    (x + y).sum().backward()
    x.grad.data[...] = 5.0
    np.testing.assert_array_equal(y.grad.numpy(), [1.0, 1.0])


# ------------------------------------------------------------------ determinism
def _training_run(backend_name):
    tg.set_backend(backend_name)
    tg.manual_seed(123)
    W = tg.randn(6, 4, requires_grad=True)
    V = tg.randn(3, 6, requires_grad=True)
    x = tg.randn(5, 4)
    losses = []
    for _ in range(5):
        h = tg.linear(x, W).tanh().dropout(0.3)
        loss = tg.linear(h, V).log_softmax(-1)[:, 0].mean() * -1.0
        loss.backward()
        W.data = W.data - 0.1 * W.grad.data
        V.data = V.data - 0.1 * V.grad.data
        W.grad = V.grad = None
        losses.append(loss.numpy())
    return np.stack(losses), W.numpy()


def test_same_seed_gives_bit_identical_results(backend):
    losses_a, W_a = _training_run(backend)
    losses_b, W_b = _training_run(backend)
    assert losses_a.tobytes() == losses_b.tobytes()
    assert W_a.tobytes() == W_b.tobytes()
    tg.manual_seed(124)
    other = tg.randn(6, 4).numpy()
    tg.manual_seed(123)
    assert not np.array_equal(tg.randn(6, 4).numpy(), other)


def test_topological_order_is_iterative_and_complete(backend):
    x = t64([1.0])
    y = x
    for _ in range(3000):
        y = y * 1.0
    order = topological_order(y.grad_fn)
    assert len(order) == 3001 and order[0] is y.grad_fn and isinstance(order[-1], AccumulateGrad)
    assert re.match(r"<Mul>", repr(order[0]))


# ------------------------------------------------------------------ gradcheck itself, and user-defined ops
class _Square(tg.Function):
    """y = x**2, with a backward that may be wrong on purpose"""
    formula = "dx = dy * 2x"
    factor = 2.0

    def forward(self, x):
        self.save_for_backward(x)
        return x * x

    def backward(self, dy):
        return dy * (self.factor * self.saved[0])


class _WrongSquare(_Square):
    factor = 2.5


def test_user_defined_function_is_recorded_and_gradchecked(backend):
    x = t64([1.0, -2.0, 3.0])
    y = _Square.apply(x)
    assert y.grad_fn.name == "_square" and y.grad_fn.formula == "dx = dy * 2x"
    assert tg.gradcheck(_Square.apply, [x]) is True


def test_gradcheck_reports_the_worst_element(backend):
    x = t64([[1.0, -2.0], [3.0, 0.5]], name="h")
    with pytest.raises(tg.GradcheckError) as err:
        tg.gradcheck(_WrongSquare.apply, [x])
    message = str(err.value)
    # gradcheck differentiates L = sum(y * v) for a fixed random v (seed 0): analytic 2.5 x v,
    # numeric 2 x v; the worst element is where |0.5 x v| most exceeds atol + rtol |2 x v|
    v = np.random.default_rng(0).standard_normal((2, 2))
    a = x.numpy()
    worst = np.unravel_index(np.argmax(np.abs(0.5 * a * v) - (1e-5 + 1e-3 * np.abs(2 * a * v))), (2, 2))
    assert f"input 0 (shape (2, 2), 'h') at index {tuple(int(i) for i in worst)}" in message
    assert "4 of 4 elements fail" in message
    assert re.search(r"analytic (\S+), numeric (\S+)", message)
    assert tg.gradcheck(_WrongSquare.apply, [x], raise_exception=False) is False


class _WrongTanh(tg.Function):
    """tanh with a wrong derivative (1 - y instead of 1 - y**2)."""
    formula = "wrong"

    def forward(self, x):
        y = self.xp.tanh(x)
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        return dy * (1 - self.saved[0])


def test_gradcheck_checks_every_output_and_only_inputs_with_grad(backend):
    x, w = t64([0.3, -0.7]), t64([2.0, 1.0], requires_grad=False)
    assert tg.gradcheck(lambda x, w, k: (x * w * k, (x.tanh(),)), [x, w, 3.0])
    assert x.grad is None      # gradcheck leaves .grad as it found it
    # a wrong gradient in the second (nested) output is caught, not just the first
    with pytest.raises(tg.GradcheckError, match="input 0"):
        tg.gradcheck(lambda x, w, k: (x * w * k, (_WrongTanh.apply(x),)), [x, w, 3.0])
    # and w, which does not require grad, is never perturbed: a function that fails if it is passes
    def strict(x, w, k):
        assert w.numpy().tolist() == [2.0, 1.0], "w was perturbed"
        return x * w * k
    assert tg.gradcheck(strict, [x, w, 3.0])


def test_gradcheck_refuses_float32_and_nothing_to_check(backend):
    with pytest.raises(TypeError, match="input 0 is float32; finite differences need float64"):
        tg.gradcheck(lambda x: x * 2.0, [tg.ones(2, requires_grad=True)])
    with pytest.raises(ValueError, match="no input requires grad"):
        tg.gradcheck(lambda x: x * 2.0, [tg.ones(2, dtype="float64")])


# --- review fixes: a failed backward changes nothing; retain_grad as PyTorch's ----------------------
def test_backward_into_a_freed_graph_changes_nothing_before_raising(backend):
    x = tg.Tensor([1.0, 2.0], requires_grad=True)
    w = tg.Tensor([3.0, 4.0], requires_grad=True)
    s = (x * 2).tanh()
    l1, l2 = s.sum(), (s * w).sum()
    l1.backward()
    x_grad = x.grad.numpy()
    with pytest.raises(tg.GraphFreedError, match="retain_graph=True"):
        l2.backward()
    assert w.grad is None                                  # nothing accumulated before the error
    np.testing.assert_array_equal(x.grad.numpy(), x_grad)
    assert l2.grad_fn.saved is not None                    # and the new part of the graph is intact


def test_retain_grad_copies_is_idempotent_and_runs_after_hooks(backend):
    a = tg.Tensor([1.0, 2.0], requires_grad=True)
    b = tg.Tensor([3.0, 4.0], requires_grad=True)
    c = a * 1 + b * 1
    y = c * 2
    for t in (c, y):
        t.retain_grad()
        t.retain_grad()                                    # twice: still kept once
    y.register_hook(lambda g: g * 10)                      # registered after retain_grad: still seen by it
    y.sum().backward()
    np.testing.assert_array_equal(y.grad.numpy(), [10.0, 10.0])
    np.testing.assert_array_equal(c.grad.numpy(), [20.0, 20.0])
    np.testing.assert_array_equal(a.grad.numpy(), [20.0, 20.0])
    c.grad.data[0] = -1.0                                  # its own buffer: nothing else changes
    assert y.grad.numpy()[0] == 10.0 and a.grad.numpy()[0] == 20.0


def test_per_timestep_losses_over_one_graph_do_not_warn(backend):
    """One graph, built once, backed up from each step's loss in turn: not a growing graph."""
    W = tg.Tensor(np.eye(3) * 0.5, requires_grad=True, dtype="float64")
    h, hs = tg.zeros(1, 3, dtype="float64"), []
    for t in range(8):
        h = (h @ W + 1.0).tanh()
        hs.append(h)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for h in hs:
            (h * h).sum().backward(retain_graph=True)      # each loss made after earlier passes, too
    assert W.grad is not None
