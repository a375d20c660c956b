"""Gradient clipping: clip_grad_norm_ and clip_grad_value_ against hand formulas and torch.nn.utils."""
import math

import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn.nn import Parameter
from tinygrad_rnn.nn.utils import clip_grad_norm_, clip_grad_value_
from tinygrad_rnn.tensor import Tensor

SHAPES = [(3, 4), (5,), (2, 2, 2)]


def params_with_grads(grads, dtype="float64"):
    params = []
    for i, g in enumerate(grads):
        p = Parameter(Tensor(np.zeros(np.shape(g)), dtype=dtype), name=f"w{i}")
        p.grad = None if g is None else Tensor(np.asarray(g), dtype=dtype)
        params.append(p)
    return params


def random_grads(scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    return [scale * rng.standard_normal(s) for s in SHAPES]


# --- the lecture notes' rules, by hand ----------------------------------------------------
def test_norm_rule_by_hand(backend):
    """If ||dL/dw|| > 5, dL/dw <- dL/dw / ||dL/dw|| * 5: the direction is kept, the norm becomes 5."""
    params = params_with_grads([[3.0, 0.0], [0.0, 4.0, 0.0], None])  # ||g|| = 5 over all of them
    total = clip_grad_norm_(params, max_norm=2.5)
    assert isinstance(total, Tensor) and total.shape == () and total.device == backend
    assert total.item() == 5.0
    coef = 2.5 / (5.0 + 1e-6)
    np.testing.assert_allclose(params[0].grad.numpy(), [3.0 * coef, 0.0], rtol=1e-15)
    np.testing.assert_allclose(params[1].grad.numpy(), [0.0, 4.0 * coef, 0.0], rtol=1e-15)
    assert params[2].grad is None


def test_norm_below_threshold_leaves_grads_alone(backend):
    grads = random_grads(0.1)
    params = params_with_grads(grads)
    total = clip_grad_norm_(params, max_norm=100.0)
    expected = math.sqrt(sum(float((g ** 2).sum()) for g in grads))
    assert total.item() == pytest.approx(expected, rel=1e-14)
    for p, g in zip(params, grads):
        np.testing.assert_array_equal(p.grad.numpy(), g)


def test_clipped_norm_is_max_norm(backend):
    params = params_with_grads(random_grads(10.0))
    before = [p.grad.numpy() for p in params]
    clip_grad_norm_(params, 5.0)
    after = np.concatenate([p.grad.numpy().ravel() for p in params])
    assert np.linalg.norm(after) == pytest.approx(5.0, rel=1e-6)
    ratio = after / np.concatenate([b.ravel() for b in before])
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-14)  # one factor for every entry


@pytest.mark.parametrize("norm_type,expected", [
    (1.0, 3 + 4 + 12), (math.inf, 12.0), ("inf", 12.0), (3.0, (27 + 64 + 1728) ** (1 / 3))])
def test_other_norms_by_hand(backend, norm_type, expected):
    params = params_with_grads([[3.0, -4.0], [-12.0]])
    total = clip_grad_norm_(params, 1e9, norm_type=norm_type)
    assert total.item() == pytest.approx(expected, rel=1e-14)


def test_value_rule_by_hand(backend):
    """Each element: larger than 5 becomes 5, smaller than -5 becomes -5."""
    params = params_with_grads([[-7.0, -5.0, 0.5, 5.0, 1e30], [[6.0, -4.0]]])
    assert clip_grad_value_(params, 5) is None
    np.testing.assert_array_equal(params[0].grad.numpy(), [-5.0, -5.0, 0.5, 5.0, 5.0])
    np.testing.assert_array_equal(params[1].grad.numpy(), [[5.0, -4.0]])


# --- PyTorch parity -----------------------------------------------------------------------------
@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf, 3.5])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_norm_matches_torch(backend, norm_type, max_norm):
    torch = pytest.importorskip("torch")
    grads = random_grads(2.0)
    params = params_with_grads(grads)
    tparams = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for tp, g in zip(tparams, grads):
        tp.grad = torch.tensor(g)
    total = clip_grad_norm_(params, max_norm, norm_type=norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(tparams, max_norm, norm_type=norm_type)
    assert total.dtype == "float64"
    np.testing.assert_allclose(total.item(), ttotal.item(), rtol=1e-13)
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=1e-13)


def test_float32_matches_torch(backend):
    torch = pytest.importorskip("torch")
    grads = random_grads(3.0)
    params = params_with_grads(grads, dtype="float32")
    tparams = [torch.zeros(g.shape, requires_grad=True) for g in grads]
    for tp, g in zip(tparams, grads):
        tp.grad = torch.tensor(g, dtype=torch.float32)
    total = clip_grad_norm_(params, 1.0)
    ttotal = torch.nn.utils.clip_grad_norm_(tparams, 1.0)
    assert total.dtype == "float32"
    np.testing.assert_allclose(total.item(), ttotal.item(), rtol=1e-6)
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=1e-6)


def test_value_matches_torch(backend):
    torch = pytest.importorskip("torch")
    grads = random_grads(2.0)
    grads[0][0, 0] = np.nan
    params = params_with_grads(grads)
    tparams = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for tp, g in zip(tparams, grads):
        tp.grad = torch.tensor(g)
    clip_grad_value_(params, 0.7)
    torch.nn.utils.clip_grad_value_(tparams, 0.7)
    for p, tp in zip(params, tparams):
        np.testing.assert_array_equal(p.grad.numpy(), tp.grad.numpy())  # NaN stays NaN in both


# --- inf and NaN -------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf * 0, as intended
@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_nonfinite_norm_as_torch(backend, bad):
    """inf norm: the coefficient is 0, finite entries become 0 and the inf entry NaN. NaN norm: all NaN."""
    torch = pytest.importorskip("torch")
    grads = random_grads()
    grads[1][2] = bad
    params = params_with_grads(grads)
    tparams = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for tp, g in zip(tparams, grads):
        tp.grad = torch.tensor(g)
    total = clip_grad_norm_(params, 1.0)
    ttotal = torch.nn.utils.clip_grad_norm_(tparams, 1.0)
    np.testing.assert_array_equal(total.numpy(), ttotal.numpy())
    for p, tp in zip(params, tparams):
        np.testing.assert_array_equal(p.grad.numpy(), tp.grad.numpy())
    if math.isnan(bad):
        assert all(np.isnan(p.grad.numpy()).all() for p in params)
    else:
        assert total.item() == math.inf
        assert np.isnan(params[1].grad.numpy()[2]) and (params[0].grad.numpy() == 0).all()


def test_error_if_nonfinite_names_the_norm_and_changes_nothing(backend):
    grads = random_grads()
    grads[2][1, 0, 1] = math.inf
    params = params_with_grads(grads)
    with pytest.raises(RuntimeError, match=r"The total norm of order 2.0 for gradients from `parameters` is "
                                           r"non-finite \(inf\), so it cannot be clipped \(non-finite gradients "
                                           r"in: w2\)"):
        clip_grad_norm_(params, 1.0, error_if_nonfinite=True)
    for p, g in zip(params, grads):
        np.testing.assert_array_equal(p.grad.numpy(), g)
    grads[0][0, 0] = math.nan
    params = params_with_grads(grads)
    with pytest.raises(RuntimeError, match=r"order inf .* non-finite \(nan\).*in: w0, w2\).*error_if_nonfinite=False"):
        clip_grad_norm_(params, 1.0, norm_type="inf", error_if_nonfinite=True)


def test_error_if_nonfinite_matches_torch_message():
    torch = pytest.importorskip("torch")
    tp = torch.zeros(2, requires_grad=True)
    tp.grad = torch.tensor([math.inf, 1.0])
    with pytest.raises(RuntimeError) as theirs:
        torch.nn.utils.clip_grad_norm_([tp], 1.0, error_if_nonfinite=True)
    with pytest.raises(RuntimeError) as ours:
        clip_grad_norm_(params_with_grads([[math.inf, 1.0]]), 1.0, error_if_nonfinite=True)
    head = "The total norm of order 2.0 for gradients from `parameters` is non-finite"
    tail = "To disable this error and scale the gradients by the non-finite norm anyway, set `error_if_nonfinite=False`"
    for e in (theirs.value, ours.value):
        assert str(e).startswith(head) and str(e).endswith(tail)


# --- inputs ----------------------------------------------------------------------------------------
def test_inputs(backend):
    total = clip_grad_norm_(params_with_grads([None, None]), 1.0)  # no gradients at all: 0, as torch
    assert total.item() == 0.0
    p = params_with_grads([[6.0, 8.0]])[0]
    assert clip_grad_norm_(p, 1.0).item() == 10.0  # a single tensor
    ps = params_with_grads([[6.0, 8.0], [1.0]])
    assert clip_grad_norm_((q for q in ps), 1e9).item() == pytest.approx(math.sqrt(101))  # a generator
    clip_grad_value_(ps[0], 7.0)
    np.testing.assert_array_equal(ps[0].grad.numpy(), [6.0, 7.0])


def test_bad_inputs(backend):
    ps = params_with_grads([[1.0]])
    with pytest.raises(ValueError, match="norm_type must be positive or inf, got 0.0"):
        clip_grad_norm_(ps, 1.0, norm_type=0)
    with pytest.raises(ValueError, match="clip_value must be >= 0, got -1.0"):
        clip_grad_value_(ps, -1)
    with pytest.raises(TypeError, match="expected tensors .parameters., got ndarray at position 1"):
        clip_grad_norm_([ps[0], np.ones(2)], 1.0)
    ps[0].grad = np.ones(1)
    with pytest.raises(TypeError, match="the grad of w0 is a ndarray, expected a Tensor"):
        clip_grad_value_(ps, 1.0)
    other = "numpy" if backend == "array_api_strict" else "array_api_strict"
    ps = params_with_grads([[1.0], [2.0]])
    ps[1].grad = ps[1].grad.to(other)
    with pytest.raises(ValueError, match="all gradients must be on one backend"):
        clip_grad_norm_(ps, 1.0)


def test_clipping_tames_an_exploding_rnn(backend):
    """The notes' motivation: W_hh with spectral radius 3 explodes the gradient through 30 steps;
    clipping bounds the update while keeping its direction."""
    from tinygrad_rnn.nn import RNN
    rnn = RNN(4, 8, nonlinearity="relu", init="identity", init_gain=3.0, dtype="float64")
    x = tg.randn(30, 2, 4, dtype="float64")
    out, h = rnn(x)
    (out[-1] ** 2).sum().backward()
    grads = {n: p.grad.numpy() for n, p in rnn.named_parameters()}
    total = clip_grad_norm_(rnn.parameters(), 5.0)
    norm_before = math.sqrt(sum(float((g ** 2).sum()) for g in grads.values()))
    assert total.item() == pytest.approx(norm_before, rel=1e-12) and norm_before > 1e6
    norm_after = math.sqrt(sum(float((p.grad.numpy() ** 2).sum()) for p in rnn.parameters()))
    assert norm_after == pytest.approx(5.0, rel=1e-6)
    for n, p in rnn.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), grads[n] * (5.0 / (norm_before + 1e-6)), rtol=1e-12)
