"""Every primitive op: values against NumPy, and gradients against finite differences (float64).

Each test takes the ``backend`` fixture, so it runs on NumPy and on array_api_strict.
Binary ops draw broadcast-compatible shapes with hypothesis; the gradient of a
broadcast input must come back summed to that input's shape.
"""
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_rnn as tg
from tinygrad_rnn import ops

FEW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SOME = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

broadcast_pair = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3)
small_shape = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3)
seeds = st.integers(0, 2**16)


def t64(a, requires_grad=True):
    """A float64 tensor on the active backend."""
    return tg.Tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def normal(seed, shape):
    return np.random.default_rng(seed).standard_normal(shape)


def away_from_zero(seed, shape, low=0.5, high=2.0):
    """Values with |v| in [low, high]: safe denominators, no kinks (relu, abs) nearby."""
    rng = np.random.default_rng(seed)
    return rng.uniform(low, high, shape) * rng.choice([-1.0, 1.0], shape)


def positive(seed, shape, low=0.5, high=2.0):
    return np.random.default_rng(seed).uniform(low, high, shape)


def check_value(out, expected, rtol=1e-12, atol=1e-12):
    expected = np.asarray(expected)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.numpy(), expected, rtol=rtol, atol=atol)


# ------------------------------------------------------------------ binary ops, broadcasting
BINARY = {
    "add": (lambda a, b: a + b, np.add, normal, normal),
    "sub": (lambda a, b: a - b, np.subtract, normal, normal),
    "mul": (lambda a, b: a * b, np.multiply, normal, normal),
    "div": (lambda a, b: a / b, np.divide, normal, away_from_zero),
    "pow": (lambda a, b: a ** b, np.power, positive, normal),
}


@pytest.mark.parametrize("name", list(BINARY))
@FEW
@given(shapes=broadcast_pair, seed=seeds)
def test_binary_op_broadcasts_values_and_gradients(backend, name, shapes, seed):
    fn, np_fn, draw_x, draw_w = BINARY[name]
    (sx, sw), _ = shapes
    xa, wa = draw_x(seed, sx), draw_w(seed + 1, sw)
    x, w = t64(xa), t64(wa)
    out = fn(x, w)
    check_value(out, np_fn(xa, wa))
    assert out.dtype == "float64"
    tg.gradcheck(fn, [x, w])


@pytest.mark.parametrize("name", list(BINARY))
def test_binary_op_gradient_of_broadcast_input_is_summed(backend, name):
    """w of shape (3, 1) used against x (2, 3, 4): its gradient has shape (3, 1)."""
    fn, _, draw_x, draw_w = BINARY[name]
    x, w = t64(draw_x(1, (2, 3, 4))), t64(draw_w(2, (3, 1)))
    fn(x, w).sum().backward()
    assert x.grad.shape == (2, 3, 4) and w.grad.shape == (3, 1)
    tg.gradcheck(fn, [x, w])


@pytest.mark.parametrize("sx, se, sw", [((2, 3), (2, 3), (2, 3)), ((2, 3), (3,), (2, 1)), ((), (4,), (2, 1))])
def test_lerp_values_and_gradients_broadcast(backend, sx, se, sw):
    """lerp(x, e, w) = x + w (e - x): values as NumPy, gradients (summed to each input's shape)
    against finite differences."""
    xa, ea, wa = normal(1, sx), normal(2, se), normal(3, sw)
    x, e, w = t64(xa), t64(ea), t64(wa)
    check_value(x.lerp(e, w), xa + wa * (ea - xa))
    check_value(tg.lerp(x, e, w), (1 - wa) * xa + wa * ea)
    tg.gradcheck(lambda x, e, w: x.lerp(e, w), [x, e, w])


def test_lerp_gradients_by_hand_and_only_where_needed(backend):
    """dx = dy (1 - w), de = dy w, dw = dy (e - x); inputs that need no gradient get none."""
    xa, ea, wa, dya = normal(1, (3, 2)), normal(2, (3, 2)), normal(3, (3, 2)), normal(4, (3, 2))
    x, e, w = t64(xa), t64(ea), t64(wa)
    (x.lerp(e, w) * t64(dya, requires_grad=False)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), dya * (1 - wa), rtol=1e-12)
    np.testing.assert_allclose(e.grad.numpy(), dya * wa, rtol=1e-12)
    np.testing.assert_allclose(w.grad.numpy(), dya * (ea - xa), rtol=1e-12)
    fn = x.lerp(t64(ea, requires_grad=False), 0.25).grad_fn
    assert fn.needs_input_grad == (True, False, False)
    assert fn.backward(t64(dya).data)[1:] == (None, None)


def test_lerp_with_a_number_and_its_errors(backend):
    x, e = t64([1.0, 2.0]), t64([3.0, 6.0])
    check_value(x.lerp(e, 0.5), [2.0, 4.0])
    check_value(x.lerp(10.0, 1.0), [10.0, 10.0])
    with pytest.raises(TypeError, match="lerp: weight must have the input's dtype float64, got float32"):
        x.lerp(e, tg.Tensor([0.5, 0.5], dtype="float32"))
    with pytest.raises(TypeError, match="lerp: expected a float tensor, got int64"):
        tg.Tensor([1, 2]).lerp(e, 0.5)
    with pytest.raises(ValueError, match=r"lerp: .*\(inputs: \(2,\) float64, \(3,\) float64"):
        x.lerp(t64([1.0, 2.0, 3.0]), 0.5)


@pytest.mark.parametrize("expr, np_expr", [
    (lambda x: 2 - x, lambda a: 2 - a),
    (lambda x: 2 / x, lambda a: 2 / a),
    (lambda x: 3 * x + 1, lambda a: 3 * a + 1),
    (lambda x: x ** 3, lambda a: a ** 3),
    (lambda x: x ** -1.5, lambda a: a ** -1.5),
    (lambda x: x ** 0.5, lambda a: a ** 0.5),
    (lambda x: 2 ** x, lambda a: 2 ** a),
    (lambda x: -x, lambda a: -a),
])
def test_operators_with_python_numbers(backend, expr, np_expr):
    a = positive(3, (2, 3))
    x = t64(a)
    check_value(expr(x), np_expr(a))
    tg.gradcheck(expr, [x])


def test_pow_zero_exponent_has_zero_gradient_at_zero(backend):
    x = t64([0.0, 2.0])
    (x ** 0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0])


def test_pow_with_elementwise_tensor_exponent_without_grad(backend):
    """x ** e where e is a data tensor of several elements (no grad): elementwise, gradient to x only."""
    a, e = positive(4, (2, 3)), np.array([1.0, 2.0, 3.0])
    x, ex = t64(a), t64(e, requires_grad=False)
    check_value(x ** ex, a ** e)
    (x ** ex).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), e * a ** (e - 1), rtol=1e-12)
    tg.gradcheck(lambda x: x ** ex, [x])


def test_pow_tensor_exponent_at_zero_base_follows_pytorch(backend):
    """d(0**w)/dw is taken as 0 (PyTorch's convention), never NaN."""
    x, w = t64([0.0, 0.0], requires_grad=False), t64([2.0, 0.5])
    (x ** w).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [0.0, 0.0])


# ------------------------------------------------------------------ matmul
MATMUL_SHAPES = [
    ((3, 4), (4, 2)),
    ((2, 3, 4), (4, 5)),          # batched x, shared w
    ((2, 3, 4), (2, 4, 5)),       # batched both
    ((2, 1, 3, 4), (3, 4, 2)),    # broadcast batch axes
    ((4,), (4, 2)),               # 1-D on the left
    ((3, 4), (4,)),               # 1-D on the right
    ((4,), (4,)),                 # dot product
    ((2, 3, 4), (4,)),
    ((4,), (2, 4, 3)),
]


@pytest.mark.parametrize("sx, sw", MATMUL_SHAPES)
def test_matmul_values_and_gradients(backend, sx, sw):
    xa, wa = normal(5, sx), normal(6, sw)
    x, w = t64(xa), t64(wa)
    check_value(x @ w, xa @ wa, rtol=1e-10)
    tg.gradcheck(lambda x, w: x @ w, [x, w])


def test_matmul_gradient_only_to_what_needs_it(backend):
    x, w = t64(normal(0, (3, 4))), t64(normal(1, (4, 2)), requires_grad=False)
    (x @ w).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.ones((3, 2)) @ w.numpy().T, rtol=1e-12)
    assert w.grad is None


@pytest.mark.parametrize("sx, sw, message", [
    ((3, 4), (5, 2), r"matmul: cannot multiply \(3, 4\) by \(5, 2\): the inner dimensions 4 and 5 differ"),
    ((3,), (4,), r"matmul: cannot multiply \(3,\) by \(4,\)"),
    ((2, 3, 4), (3, 4, 2), r"matmul: cannot multiply \(2, 3, 4\) by \(3, 4, 2\)"),
    ((), (3,), r"matmul: cannot multiply \(\) by \(3,\)"),
])
def test_matmul_shape_mismatch_names_both_shapes(backend, sx, sw, message):
    with pytest.raises(ValueError, match=message):
        tg.zeros(*sx) @ tg.zeros(*sw)


# ------------------------------------------------------------------ unary ops
UNARY = {
    "neg": (lambda x: -x, np.negative, normal),
    "exp": (lambda x: x.exp(), np.exp, normal),
    "log": (lambda x: x.log(), np.log, positive),
    "tanh": (lambda x: x.tanh(), np.tanh, normal),
    "sigmoid": (lambda x: x.sigmoid(), lambda a: 1 / (1 + np.exp(-a)), normal),
    "relu": (lambda x: x.relu(), lambda a: np.maximum(a, 0), away_from_zero),
    "sqrt": (lambda x: x.sqrt(), np.sqrt, positive),
    "abs": (lambda x: x.abs(), np.abs, away_from_zero),
}


@pytest.mark.parametrize("name", list(UNARY))
@FEW
@given(shape=small_shape, seed=seeds)
def test_unary_op_values_and_gradients(backend, name, shape, seed):
    fn, np_fn, draw = UNARY[name]
    a = draw(seed, shape)
    x = t64(a)
    check_value(fn(x), np_fn(a), rtol=1e-12, atol=1e-15)
    tg.gradcheck(fn, [x])


@pytest.mark.parametrize("name, dx", [
    ("relu", [0.0, 0.0, 1.0]),
    ("abs", [-1.0, 0.0, 1.0]),
    ("tanh", [1 - np.tanh(-1.0) ** 2, 1.0, 1 - np.tanh(2.0) ** 2]),
    ("sigmoid", [np.exp(1.0) / (1 + np.exp(1.0)) ** 2, 0.25, np.exp(-2.0) / (1 + np.exp(-2.0)) ** 2]),
])
def test_unary_gradients_by_hand(backend, name, dx):
    """At x = (-1, 0, 2); relu and abs take gradient 0 at their kink."""
    x = t64([-1.0, 0.0, 2.0])
    UNARY[name][0](x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), dx, rtol=1e-12)


@pytest.mark.parametrize("name", ["exp", "log", "tanh", "sigmoid", "sqrt"])
def test_functions_of_the_reals_make_integer_tensors_float32(backend, name):
    """As in PyTorch: tg.Tensor([1, 2]).exp() is float32 (not int, not float64), on every backend."""
    fn, np_fn, _ = UNARY[name]
    out = fn(tg.Tensor([1, 2]))
    assert out.dtype == "float32"
    np.testing.assert_allclose(out.numpy(), np_fn(np.array([1.0, 2.0])), rtol=1e-6)


# ------------------------------------------------------------------ clip
def test_clip_values_and_gradient_mask(backend):
    x = t64([-2.0, -0.5, 0.5, 2.0])
    y = x.clip(-1, 1)
    check_value(y, [-1.0, -0.5, 0.5, 1.0])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 1.0, 1.0, 0.0])


@pytest.mark.parametrize("lo, hi", [(-0.3, 0.4), (None, 0.2), (-0.1, None)])
def test_clip_matches_numpy_and_gradchecks(backend, lo, hi):
    a = normal(7, (3, 4))
    a[np.abs(a - (lo or 0)) < 0.05] += 0.1   # keep away from the bounds, where clip has a kink
    a[np.abs(a - (hi or 0)) < 0.05] += 0.1
    x = t64(a)
    check_value(x.clip(lo, hi), np.clip(a, lo, hi))
    check_value(x.clamp(min=lo, max=hi), np.clip(a, lo, hi))
    tg.gradcheck(lambda x: x.clip(lo, hi), [x])


def test_clip_needs_a_bound(backend):
    with pytest.raises(ValueError, match="clip"):
        t64([1.0]).clip()


def test_clip_of_int_tensor_with_float_bounds_is_float(backend):
    out = tg.Tensor([1, 5]).clip(0.5, 3.5)
    assert out.dtype == "float32"
    np.testing.assert_array_equal(out.numpy(), [1.0, 3.5])
    out = tg.Tensor([1, 5]).clip(0, 3)
    assert out.dtype == "int64"
    np.testing.assert_array_equal(out.numpy(), [1, 3])


# ------------------------------------------------------------------ softmax family
def np_log_softmax(a, axis):
    m = a.max(axis=axis, keepdims=True)
    return a - m - np.log(np.exp(a - m).sum(axis=axis, keepdims=True))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_and_log_softmax_values_and_gradients(backend, axis):
    a = normal(8, (2, 3, 4))
    x = t64(a)
    check_value(x.log_softmax(axis=axis), np_log_softmax(a, axis))
    check_value(x.softmax(axis=axis), np.exp(np_log_softmax(a, axis)))
    check_value(x.softmax(dim=axis), np.exp(np_log_softmax(a, axis)))
    np.testing.assert_allclose(x.softmax(axis=axis).sum(axis=axis).numpy(), 1.0, rtol=1e-12)
    tg.gradcheck(lambda x: x.softmax(axis=axis), [x])
    tg.gradcheck(lambda x: x.log_softmax(dim=axis), [x])


def test_softmax_default_axis_is_last(backend):
    a = normal(9, (3, 5))
    check_value(t64(a).softmax(), np.exp(np_log_softmax(a, -1)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", ["softmax", "log_softmax", "sigmoid", "tanh"])
def test_stays_finite_for_huge_logits(backend, op, dtype):
    """Logits of +-1e4 (exp overflows float32 at ~88): values and gradients stay finite."""
    x = tg.Tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], dtype=dtype, requires_grad=True)
    fn = {"softmax": lambda x: x.softmax(-1), "log_softmax": lambda x: x.log_softmax(-1),
          "sigmoid": lambda x: x.sigmoid(), "tanh": lambda x: x.tanh()}[op]
    y = fn(x)
    assert np.all(np.isfinite(y.numpy()))
    (y * tg.Tensor(np.arange(6.0).reshape(2, 3), dtype=dtype)).sum().backward()
    assert np.all(np.isfinite(x.grad.numpy()))
    if op == "log_softmax":
        np.testing.assert_allclose(y.numpy(), [[0.0, -2e4, -1e4], [-2e4, -2e4, 0.0]], rtol=1e-6)
    if op == "sigmoid":
        np.testing.assert_array_equal(y.numpy(), [[1.0, 0.0, 0.5], [0.0, 0.0, 1.0]])


# ------------------------------------------------------------------ reductions
@pytest.mark.parametrize("name", ["sum", "mean", "max"])
@pytest.mark.parametrize("axis", [None, 0, -1, (0, 2), 1])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reduction_values_and_gradients(backend, name, axis, keepdims):
    a = normal(10, (2, 3, 4))   # continuous: no ties
    x = t64(a)
    out = getattr(x, name)(axis=axis, keepdims=keepdims)
    check_value(out, getattr(np, name)(a, axis=axis, keepdims=keepdims))
    same = getattr(x, name)(dim=axis, keepdim=keepdims)   # PyTorch's spelling
    check_value(same, getattr(np, name)(a, axis=axis, keepdims=keepdims))
    tg.gradcheck(lambda x: getattr(x, name)(axis=axis, keepdims=keepdims), [x])


def test_max_ties_share_the_gradient(backend):
    x = t64([1.0, 3.0, 3.0])
    x.max().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.5, 0.5])
    x = t64([[2.0, 2.0, 2.0], [1.0, 5.0, 0.0]])
    x.max(axis=1).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [[1 / 3, 1 / 3, 1 / 3], [0.0, 1.0, 0.0]], rtol=1e-12)


def test_max_of_integers(backend):
    out = tg.Tensor([[1, 7, 7], [4, 2, 0]]).max(axis=1)
    assert out.dtype == "int64"
    np.testing.assert_array_equal(out.numpy(), [7, 4])


def test_sum_of_bools_counts_and_mean_of_ints_is_float(backend):
    s = tg.Tensor([True, False, True]).sum()
    assert s.dtype == "int64" and s.item() == 2
    m = tg.Tensor([1, 2]).mean()
    assert m.dtype == "float32" and m.item() == 1.5


def test_reduction_axis_out_of_range(backend):
    with pytest.raises(IndexError, match="axis 5 is out of range for a tensor with 2 dimensions"):
        tg.zeros(2, 3).sum(axis=5)


def test_argmax(backend):
    a = normal(11, (3, 4))
    np.testing.assert_array_equal(tg.Tensor(a).argmax(axis=1).numpy(), a.argmax(axis=1))
    assert tg.Tensor(a).argmax().item() == a.argmax()


# ------------------------------------------------------------------ shapes
def test_reshape_both_spellings(backend):
    a = normal(12, (3, 4))
    x = t64(a)
    check_value(x.reshape(2, 6), a.reshape(2, 6))
    check_value(x.reshape((2, 6)), a.reshape(2, 6))
    check_value(x.reshape([6, -1]), a.reshape(6, -1))
    check_value(x.view(12), a.reshape(12))
    tg.gradcheck(lambda x: x.reshape(2, 6) * t64(np.arange(12.0).reshape(2, 6), False), [x])


def test_reshape_error_names_sizes(backend):
    with pytest.raises(ValueError, match=r"reshape: .*12.*\(5, ?5\).*\(3, 4\)"):
        tg.zeros(3, 4).reshape(5, 5)


def test_transpose_permute_T(backend):
    a = normal(13, (2, 3, 4))
    x = t64(a)
    check_value(x.transpose(), a.transpose())
    check_value(x.T, a.T)
    check_value(x.transpose(0, 2), a.swapaxes(0, 2))
    check_value(x.transpose(-1, 1), a.swapaxes(-1, 1))
    check_value(x.permute(2, 0, 1), a.transpose(2, 0, 1))
    check_value(x.permute((1, 2, 0)), a.transpose(1, 2, 0))
    check_value(x.mT, a.swapaxes(-1, -2))
    w = t64(normal(14, (4, 2, 3)), False)
    tg.gradcheck(lambda x: x.permute(2, 0, 1) * w, [x])
    tg.gradcheck(lambda x: x.T * w.permute(0, 2, 1), [x])


@pytest.mark.parametrize("call", [lambda x: x.transpose(0, 3), lambda x: x.permute(0, 1, 5),
                                  lambda x: x.unsqueeze(4), lambda x: x.unbind(3), lambda x: x.split(1, axis=-4)])
def test_axis_out_of_range_is_an_error_not_a_wraparound(backend, call):
    with pytest.raises(IndexError, match="out of range for a tensor with"):
        call(tg.zeros(2, 3, 4))


def test_transpose_not_a_permutation(backend):
    with pytest.raises(ValueError, match="not a permutation"):
        tg.zeros(2, 3, 4).permute(0, 0, 1)


def test_unsqueeze_squeeze_expand(backend):
    a = normal(15, (3, 1, 2))
    x = t64(a)
    check_value(x.squeeze(), a.squeeze())
    check_value(x.squeeze(1), a.squeeze(1))
    assert x.squeeze(0).shape == (3, 1, 2)   # not of length 1: unchanged, as PyTorch
    check_value(x.unsqueeze(0), a[None])
    check_value(x.unsqueeze(-1), a[..., None])
    check_value(x.expand(2, 3, 4, 2), np.broadcast_to(a, (2, 3, 4, 2)))
    check_value(x.expand(-1, 4, -1), np.broadcast_to(a, (3, 4, 2)))
    tg.gradcheck(lambda x: x.expand(2, 3, 4, 2), [x])
    with pytest.raises(ValueError, match=r"expand: cannot expand shape \(3, 1, 2\) to \(3, 2\)"):
        x.expand(3, 2)


# ------------------------------------------------------------------ indexing
idx_rep = [2, 0, 2, 2]
KEYS = {
    "int": (1,),
    "negative int": (-1,),
    "x[:, t]": (slice(None), 2),
    "slice": (slice(1, 3),),
    "slices": (slice(None), slice(1, None, 2)),
    "negative step": (slice(None, None, -1), slice(None, None, -2)),
    "None": (None, slice(None), None, 1),
    "Ellipsis": (Ellipsis, 0),
    "x[idx] repeats": (idx_rep,),
    "x[:, idx]": (slice(None), [3, 0, 3]),
    "x[..., idx]": (Ellipsis, [1, -1]),
    "x[idx2d]": ([[0, 1], [2, 2]],),
    "x[rows, cols]": ([0, 2, 2, -1], [1, 3, 3, 0]),
    "x[rows, int]": ([2, 0, 2], 1),
    "x[empty]": ([],),
}


@pytest.mark.parametrize("name", list(KEYS))
def test_getitem_values_and_gradients(backend, name):
    key = KEYS[name]
    a = normal(16, (3, 4))
    x = t64(a)
    expected = a[tuple(np.asarray(k, dtype=np.int64) if isinstance(k, list) else k for k in key)]
    check_value(x[key if len(key) > 1 else key[0]], expected)
    tg.gradcheck(lambda x: x[key if len(key) > 1 else key[0]], [x])


def test_getitem_repeated_ids_add_up(backend):
    """x[[2, 0, 2, 2]].sum(): row 2 is used three times, so its gradient is 3 (scatter-add)."""
    x = t64(normal(17, (3, 4)))
    x[idx_rep].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[1.0] * 4, [0.0] * 4, [3.0] * 4])
    x.grad = None
    x[:, [3, 3, -1]].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 0, 0, 3.0]] * 3)


def test_getitem_with_integer_tensor_index(backend):
    a = normal(18, (5, 2))
    x = t64(a)
    idx = tg.Tensor([[4, 0], [4, 4]])
    check_value(x[idx], a[np.array([[4, 0], [4, 4]])])
    x[idx].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy()[:, 0], [1, 0, 0, 0, 3])


def test_time_slices_of_a_sequence(backend):
    """x[:, t] for every t, summed with weights, gives each column its weight."""
    x = t64(normal(19, (2, 5)))
    loss = sum((x[:, t] * float(t)).sum() for t in range(5))
    loss.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 1, 2, 3, 4]] * 2)


@pytest.mark.parametrize("key, message", [
    ((5,), "index 5 is out of bounds"),
    (([0, 7],), "index 7 is out of bounds"),
    ((1.5,), "unsupported index"),
    (([0.5, 1.0],), "index arrays must be integer"),
    (([True, False, True],), "boolean-mask"),
    ((slice(1, None), [0, 1]), "index in two steps"),
])
def test_getitem_errors(backend, key, message):
    with pytest.raises(IndexError, match=message):
        tg.zeros(3, 4)[key if len(key) > 1 else key[0]]


# ------------------------------------------------------------------ concat, stack, split, chunk, unbind
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat_and_stack(backend, axis):
    arrays = [normal(20, (2, 3)), normal(21, (2, 3)), normal(22, (2, 3))]
    xs = [t64(a) for a in arrays]
    check_value(tg.concat(xs, axis), np.concatenate(arrays, axis=axis))
    check_value(tg.cat(xs, dim=axis), np.concatenate(arrays, axis=axis))
    check_value(tg.stack(xs, axis), np.stack(arrays, axis=axis))
    check_value(tg.stack(xs, dim=axis), np.stack(arrays, axis=axis))
    tg.gradcheck(lambda *xs: tg.concat(xs, axis), xs)
    tg.gradcheck(lambda *xs: tg.stack(xs, axis=axis), xs)


def test_concat_different_lengths_and_same_tensor_twice(backend):
    a, b = normal(23, (2, 3)), normal(24, (2, 1))
    x, y = t64(a), t64(b)
    check_value(tg.concat([x, y, x], axis=1), np.concatenate([a, b, a], axis=1))
    tg.concat([x, y, x], axis=1).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.full((2, 3), 2.0))
    tg.gradcheck(lambda x, y: tg.concat([x, y, x], axis=1), [x, y])


def test_concat_and_stack_errors(backend):
    with pytest.raises(ValueError, match=r"concat: shapes must match except along axis 1; got \(2, 3\) and \(3, 3\)"):
        tg.concat([tg.zeros(2, 3), tg.zeros(3, 3)], axis=1)
    with pytest.raises(ValueError, match=r"stack: all tensors must have one shape; got \(2, 3\) and \(2, 4\)"):
        tg.stack([tg.zeros(2, 3), tg.zeros(2, 4)])
    with pytest.raises(ValueError, match="non-empty"):
        tg.concat([])
    with pytest.raises(TypeError, match="expected tensors"):
        tg.stack([tg.zeros(2), [1.0, 2.0]])
    with pytest.raises(IndexError, match="axis 2 is out of range"):
        tg.concat([tg.zeros(2, 3)] * 2, axis=2)


def test_split_chunk_unbind_values(backend):
    a = normal(25, (5, 4))
    x = t64(a)
    pieces = x.split(2, axis=0)
    assert [p.shape for p in pieces] == [(2, 4), (2, 4), (1, 4)]
    for p, e in zip(pieces, np.split(a, [2, 4], axis=0)):
        check_value(p, e)
    for p, e in zip(x.split([1, 3], dim=1), np.split(a, [1], axis=1)):
        check_value(p, e)
    assert [p.shape for p in x.chunk(2, axis=1)] == [(5, 2), (5, 2)]
    assert [p.shape for p in x.chunk(2)] == [(3, 4), (2, 4)]
    rows = x.unbind(0)
    assert len(rows) == 5
    for t in range(5):
        check_value(rows[t], a[t])
    for t, col in enumerate(x.unbind(dim=1)):
        check_value(col, a[:, t])
    assert len(list(iter(x))) == 5


def test_split_with_unused_outputs_gives_zero_gradient_there(backend):
    x = t64(normal(26, (3, 6)))
    a, b, c = x.split(2, axis=1)
    (b * b).sum().backward()
    expected = np.zeros((3, 6))
    expected[:, 2:4] = 2 * x.numpy()[:, 2:4]
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-12)
    tg.gradcheck(lambda x: x.split(2, axis=1)[1] * 3.0, [x])
    tg.gradcheck(lambda x: x.split([1, 5], axis=1)[0].exp(), [x])
    tg.gradcheck(lambda x: x.chunk(3, axis=0)[2].tanh(), [x])


def test_unbind_with_unused_outputs(backend):
    x = t64(normal(27, (4, 2)))
    rows = x.unbind(0)
    (rows[1] * 2.0 + rows[3]).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 0], [2, 2], [0, 0], [1, 1]])
    tg.gradcheck(lambda x: x.unbind(1)[0] * x.unbind(0)[2][1], [x])


def test_split_errors(backend):
    x = tg.zeros(3, 4)
    with pytest.raises(ValueError, match=r"expected sizes >= 0 adding up to 4.*got \[1, 2\]"):
        x.split([1, 2], axis=1)
    with pytest.raises(ValueError, match="size must be positive"):
        x.split(0)
    with pytest.raises(ValueError, match="chunk"):
        x.chunk(0)


# ------------------------------------------------------------------ where, linear, embedding
def test_where_values_gradients_and_broadcasting(backend):
    a, b = normal(28, (3, 4)), normal(29, (4,))
    c = normal(30, (3, 1)) > 0
    x, y, cond = t64(a), t64(b), tg.Tensor(c)
    check_value(tg.where(cond, x, y), np.where(c, a, b))
    check_value(tg.where(cond, x, 0.0), np.where(c, a, 0.0))
    check_value(tg.where(cond, 1.0, y), np.where(c, 1.0, b))
    tg.gradcheck(lambda x, y: tg.where(cond, x, y), [x, y])
    tg.where(cond, x, y).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.broadcast_to(c, (3, 4)).astype(float))
    np.testing.assert_array_equal(y.grad.numpy(), (~np.broadcast_to(c, (3, 4))).sum(axis=0))


def test_where_needs_a_bool_condition(backend):
    with pytest.raises(TypeError, match="cond must be a bool tensor, got float32"):
        tg.where(tg.zeros(2), tg.zeros(2), tg.ones(2))


@pytest.mark.parametrize("x_shape, ids", [((4, 3), [2, 0, 1, 2]),           # (N, C), t (N,)
                                           ((3,), 1),                         # (C,), a 0-d t
                                           ((2, 3, 4), [[0, 2, 1, 1], [2, 2, 0, 1]])])   # (N, C, d1)
def test_pick_takes_the_entry_of_each_index_along_axis(backend, x_shape, ids):
    """pick(x, t)[i] = x[i, t_i] = sum_c x[i, c] * [c = t_i]: against the one-hot sum, and
    its gradient (dy at the picked entry, 0 elsewhere) against finite differences."""
    a = normal(60, x_shape)
    t = np.asarray(ids)
    axis = 1 if a.ndim >= 2 else 0
    mask = np.expand_dims(t, axis) == np.arange(a.shape[axis]).reshape((-1,) + (1,) * (a.ndim - axis - 1))
    x = t64(a)
    y = ops.Pick.apply(x, tg.Tensor(t), axis=axis, ignore=-100)
    check_value(y, (a * mask).sum(axis=axis), rtol=0)
    tg.gradcheck(lambda x: ops.Pick.apply(x, tg.Tensor(t), axis=axis, ignore=-100), [x])
    w = normal(61, y.shape)
    (y * tg.Tensor(w)).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.expand_dims(w, axis) * mask)


@pytest.mark.parametrize("ignore", [-100, 1])
def test_pick_gives_zero_and_no_gradient_where_the_index_is_ignored(backend, ignore):
    a = normal(62, (4, 3))
    x = t64(a)
    y = ops.Pick.apply(x, tg.Tensor([0, ignore, 2, ignore]), axis=1, ignore=ignore)
    check_value(y, [a[0, 0], 0.0, a[2, 2], 0.0], rtol=0)
    y.sum().backward()
    expected = np.zeros((4, 3))
    expected[0, 0] = expected[2, 2] = 1
    np.testing.assert_array_equal(x.grad.numpy(), expected)


def test_take_and_put_along_axis_of_every_backend_agree_with_numpy(backend):
    """The backend's own versions (NumPy: one fancy index for (N, C)) and the standard's
    (take_along_axis; put: compare every position with the index) give NumPy's answer."""
    from tinygrad_rnn.backend import Backend
    b = tg.get_backend()
    rng = np.random.default_rng(63)
    for shape, axis in [((5, 4), 1), ((2, 3, 4), 1), ((3,), 0)]:
        index_shape = shape[:axis] + (1,) + shape[axis + 1:]
        index = rng.integers(0, shape[axis], index_shape)
        values = rng.standard_normal(index_shape)
        expected = np.zeros(shape)
        np.put_along_axis(expected, index, values, axis)
        for put in (b.put_along_axis, lambda *args: Backend.put_along_axis(b, *args)):
            out = put(shape, b.xp.asarray(index), b.xp.asarray(values), axis)
            np.testing.assert_array_equal(b.to_numpy(out), expected)
        for take in (b.take_along_axis, lambda *args: Backend.take_along_axis(b, *args)):
            out = take(b.xp.asarray(expected), b.xp.asarray(index), axis)
            np.testing.assert_array_equal(b.to_numpy(out), values)


@pytest.mark.parametrize("x_shape", [(5,), (2, 5), (3, 2, 5)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear(backend, x_shape, bias):
    xa, Wa, ba = normal(31, x_shape), normal(32, (4, 5)), normal(33, (4,))
    x, W, b = t64(xa), t64(Wa), t64(ba)
    expected = xa @ Wa.T + (ba if bias else 0)
    check_value(tg.linear(x, W, b if bias else None), expected, rtol=1e-12)
    inputs = [x, W, b] if bias else [x, W]
    tg.gradcheck(lambda *ins: tg.linear(*ins), inputs)


def test_linear_with_per_row_bias(backend):
    """The RNN step: linear(h_prev, W_hh, xw_t) with a (B, out) bias."""
    h, W, xw = t64(normal(34, (2, 3))), t64(normal(35, (4, 3))), t64(normal(36, (2, 4)))
    check_value(tg.linear(h, W, xw), h.numpy() @ W.numpy().T + xw.numpy(), rtol=1e-12)
    tg.gradcheck(lambda h, W, xw: tg.linear(h, W, xw), [h, W, xw])


def test_linear_errors(backend):
    with pytest.raises(ValueError, match=r"linear: expected x \(\.\.\., 5\).*got x \(2, 3\) and weight \(4, 5\)"):
        tg.linear(tg.zeros(2, 3), tg.zeros(4, 5))
    with pytest.raises(TypeError, match="share a dtype, got float64, float32"):
        tg.linear(tg.zeros(2, 5, dtype="float64"), tg.zeros(4, 5))
    with pytest.raises(ValueError, match=r"linear: .*\(2, ?4\).*\(3,\)"):
        tg.linear(tg.zeros(2, 5), tg.zeros(4, 5), tg.zeros(3))


def test_embedding_gathers_rows_and_scatter_adds(backend):
    Wa = normal(37, (5, 3))
    W = t64(Wa)
    ids = tg.Tensor([[1, 4, 1], [0, 1, 4]])
    out = tg.embedding(W, ids)
    check_value(out, Wa[np.array([[1, 4, 1], [0, 1, 4]])])
    out.sum().backward()
    counts = np.array([1, 3, 0, 0, 2], dtype=float)
    np.testing.assert_array_equal(W.grad.numpy(), np.repeat(counts[:, None], 3, axis=1))
    tg.gradcheck(lambda W: tg.embedding(W, ids), [W])


def test_embedding_needs_integer_ids(backend):
    with pytest.raises(TypeError, match="ids must be an integer tensor, got float32"):
        tg.embedding(tg.zeros(5, 3), tg.zeros(2))
    with pytest.raises(IndexError, match=r"embedding: token id 9 at position \(1,\) is out of range; expected ids in \[0, 5\)"):
        tg.embedding(tg.zeros(5, 3), tg.Tensor([0, 9]))


# ------------------------------------------------------------------ dropout
def test_dropout_mask_statistics_and_gradient_equals_mask(backend):
    p, n = 0.3, 20000
    x = tg.ones(n, dtype="float64", requires_grad=True)
    y = x.dropout(p)
    out = y.numpy()
    kept = out != 0
    assert abs((~kept).mean() - p) < 0.015                 # about p of them are zeroed
    np.testing.assert_allclose(out[kept], 1 / (1 - p))       # the rest scaled by 1/(1-p)
    (y * 1.0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), out)       # d(x*mask)/dx = mask


def test_dropout_off_and_errors(backend):
    x = tg.randn(4, requires_grad=True)
    assert x.dropout(0.5, training=False) is x
    assert x.dropout(0.0) is x
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\), got 1"):
        x.dropout(1)
    with pytest.raises(TypeError, match="floating-point tensor, got int64"):
        tg.Tensor([1, 2]).dropout(0.5)


def test_dropout_is_reproducible_with_seed(backend):
    tg.manual_seed(3)
    a = tg.ones(100).dropout(0.5).numpy()
    tg.manual_seed(3)
    np.testing.assert_array_equal(tg.ones(100).dropout(0.5).numpy(), a)


# ------------------------------------------------------------------ cast
def test_cast_float_gradient_comes_back_in_the_input_dtype(backend):
    x = t64([1.5, -2.0])
    y = x.float()
    assert y.dtype == "float32" and y.requires_grad
    (y * 3.0).sum().backward()
    assert x.grad.dtype == "float64"
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])
    tg.gradcheck(lambda x: x.double() * 2.0, [x])
    assert x.to("float64") is x


def test_cast_to_integer_builds_no_graph(backend):
    x = t64([1.7, -2.2])
    i = x.long()
    assert i.dtype == "int64" and not i.requires_grad and i.grad_fn is None
    np.testing.assert_array_equal(i.numpy(), [1, -2])
    assert x.astype("bool").dtype == "bool"


def test_mixed_dtypes_promote_as_pytorch(backend):
    i, f32, f64 = tg.Tensor([1, 2]), tg.Tensor([0.5, 0.5]), tg.Tensor([0.5, 0.5], dtype="float64")
    assert (i + f32).dtype == "float32"
    assert (f32 * f64).dtype == "float64"
    assert (i + 1).dtype == "int64"
    assert (i + 1.5).dtype == "float32"
    assert (tg.Tensor([True, False]) + 1).dtype == "int64"
    np.testing.assert_array_equal((tg.Tensor([True, False]) + 1).numpy(), [2, 1])
    assert (i / tg.Tensor([2, 4])).dtype == "float32"
    np.testing.assert_array_equal((i / tg.Tensor([2, 4])).numpy(), [0.5, 0.5])
    assert (i ** 2).dtype == "int64" and (i ** 0.5).dtype == "float32"
    np.testing.assert_allclose((tg.Tensor([4]) ** 0.5).numpy(), [2.0])


# ------------------------------------------------------------------ comparisons
@pytest.mark.parametrize("op", ["__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__"])
def test_comparisons_are_bool_and_carry_no_gradient(backend, op):
    a, b = np.array([[1.0, 2.0, 3.0]]), np.array([[2.0], [2.0]])
    x = t64(a)
    for other, np_other in [(t64(b), b), (2.0, 2.0), (2, 2), (tg.Tensor([2, 2, 2]), np.array([2, 2, 2]))]:
        out = getattr(x, op)(other)
        assert out.dtype == "bool"
        assert not out.requires_grad and out.grad_fn is None
        np.testing.assert_array_equal(out.numpy(), getattr(a, op)(np_other))


def test_comparing_bool_with_int_does_not_truncate(backend):
    np.testing.assert_array_equal((tg.Tensor([True, False]) == 2).numpy(), [False, False])
    np.testing.assert_array_equal((tg.Tensor([True, False]) == 1).numpy(), [True, False])


# ------------------------------------------------------------------ errors from inside an op
def test_broadcast_mismatch_names_op_and_shapes(backend):
    with pytest.raises(ValueError, match=r"^add: .*\(inputs: \(3, 4\) float32, \(5, 2\) float32\)"):
        tg.zeros(3, 4) + tg.zeros(5, 2)
    with pytest.raises(ValueError, match=r"^mul: .*\(inputs: \(3,\) float64, \(2,\) float64\)"):
        t64([1.0, 2.0, 3.0]) * t64([1.0, 2.0])


def test_every_op_documents_its_formula():
    """The graph renderer shows each op's formula; every op class has one and a docstring."""
    classes = [c for c in vars(ops).values()
               if isinstance(c, type) and issubclass(c, tg.Function) and c is not tg.Function]
    assert len(classes) > 25
    for c in classes:
        # "d<input> = <expression in dy>", and one such rule per differentiable input
        assert re.match(r"^d\w+ = ", c.formula) and "dy" in c.formula, (c, c.formula)
        if c.__name__ in ("Add", "Sub", "Mul", "Div", "MatMul", "Linear", "Power", "Where"):
            assert c.formula.count(";") >= 1, (c, c.formula)
        assert c.__doc__ and c.__doc__.strip(), c
