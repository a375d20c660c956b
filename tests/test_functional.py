"""tinygrad_rnn.nn.functional against direct NumPy formulas, finite differences and PyTorch."""
import numpy as np
import pytest

import tinygrad_rnn as tg
import tinygrad_rnn.nn as nn
from tinygrad_rnn.nn import functional as F


def t64(array, requires_grad=False):
    return tg.Tensor(np.asarray(array, dtype=np.float64), requires_grad=requires_grad)


def ids(array):
    return tg.Tensor(np.asarray(array, dtype=np.int64))


def np_log_softmax(x, axis):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def np_cross_entropy(logits, target, reduction, ignore_index=-100):
    """- log softmax(logits)[target] along axis 1, straight from the definition."""
    log_p = np_log_softmax(logits, axis=1)
    valid = target != ignore_index
    safe = np.where(valid, target, 0)
    picked = np.take_along_axis(log_p, np.expand_dims(safe, 1), axis=1).squeeze(1)
    losses = np.where(valid, -picked, 0.0)
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / valid.sum()


SHAPES = [((6, 4), (6,)), ((3, 4, 5), (3, 5)), ((2, 3, 2, 4), (2, 2, 4))]


# ---------------------------------------------------------------- cross-entropy
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape, target_shape", SHAPES, ids=["NC", "NCT", "NCd1d2"])
@pytest.mark.parametrize("ignore_index", [-100, 1])
@pytest.mark.parametrize("any_ignored", [True, False])
def test_cross_entropy_equals_the_definition(backend, shape, target_shape, reduction, ignore_index, any_ignored):
    """With and without ignored elements (without, and ignore_index outside [0, C), the loss
    takes the path that needs no mask and divides by the number of elements)."""
    rng = np.random.default_rng(0)
    logits = rng.standard_normal(shape) * 3
    target = rng.integers(0, shape[1], size=target_shape)
    if any_ignored:
        target.flat[0] = ignore_index                 # at least one ignored element
    else:
        target[target == ignore_index] = 0
    loss = F.cross_entropy(t64(logits), ids(target), reduction=reduction, ignore_index=ignore_index)
    expected = np_cross_entropy(logits, target, reduction, ignore_index)
    assert loss.shape == np.shape(expected)
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape, target_shape", SHAPES[:2], ids=["NC", "NCT"])
@pytest.mark.parametrize("any_ignored", [True, False])
def test_cross_entropy_gradcheck(backend, shape, target_shape, reduction, any_ignored):
    """Without ignored elements, the mean over (N, C) is the fused op (CrossEntropy)."""
    rng = np.random.default_rng(1)
    logits = t64(rng.standard_normal(shape), requires_grad=True)
    target = rng.integers(0, shape[1], size=target_shape)
    if any_ignored:
        target.flat[-1] = -100
    assert tg.gradcheck(lambda x: F.cross_entropy(x, ids(target), reduction), [logits])


@pytest.mark.parametrize("ignored_row", [2, None])
def test_cross_entropy_gradient_is_softmax_minus_one_hot_over_n(backend, ignored_row):
    """The classic result: d mean CE / d logits = (softmax - onehot) / N, with ignored rows zero
    (none ignored: the fused op's own backward)."""
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((5, 3))
    target = np.array([0, 2, 0, 1, 1])
    if ignored_row is not None:
        target[ignored_row] = -100
    x = t64(logits, requires_grad=True)
    loss = F.cross_entropy(x, ids(target))
    assert loss.grad_fn.name == ("mul" if ignored_row is not None else "crossentropy")
    loss.backward()
    expected = np.exp(np_log_softmax(logits, 1))
    rows = [i for i in range(5) if i != ignored_row]
    expected[rows, target[rows]] -= 1
    if ignored_row is not None:
        expected[ignored_row] = 0
    np.testing.assert_allclose(x.grad.numpy(), expected / len(rows), rtol=1e-12, atol=1e-15)


def chain_of_ops(node, stop=None):
    """The names of the ops from ``node`` down its first gradient input, to ``stop`` or a leaf."""
    chain = []
    while node is not None and node.parents and node is not stop:
        chain.append(node.name)
        node = next((p for p, i in node.parents if i is not None), None)
    return chain


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_is_four_ops_after_the_logits(backend, reduction):
    """log_softmax, pick [t = true], sum, times -1/n (or minus): the lecture's formula and nothing
    else. The mean over (N, C) is one fused op that expands into exactly those four."""
    x = t64(np.zeros((4, 3)), requires_grad=True)
    logits = x * 1
    loss = F.cross_entropy(logits, ids([0, 1, 2, 0]), reduction=reduction)
    logits_node = logits.grad_fn
    if reduction == "sum":
        assert chain_of_ops(loss.grad_fn, logits_node) == ["neg", "sum", "pick", "logsoftmax"]
        return
    assert chain_of_ops(loss.grad_fn, logits_node) == ["crossentropy"]
    inputs, (out,) = loss.grad_fn.expand()
    assert chain_of_ops(out.grad_fn, logits_node) == ["mul", "sum", "pick", "logsoftmax"]
    assert [i._name for i in inputs[1:]] == ["t_true", "-1 / n"]      # the constants, as drawn
    assert loss.item() == out.item() == pytest.approx(np.log(3), rel=1e-14)


def test_cross_entropy_fused_backward_equals_its_primitive_ops(backend):
    """The fused op's backward against its four ops run backward (record_gradients() makes the
    engine walk the expansion), in float64, and the two losses equal."""
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((7, 5)) * 2
    target = ids(rng.integers(0, 5, size=7))
    grads = []
    for watch in (False, True):
        x = t64(logits, requires_grad=True)
        if watch:
            with tg.record_gradients():
                loss = F.cross_entropy(x * 1, target)
                loss.backward()
        else:
            loss = F.cross_entropy(x * 1, target)
            loss.backward()
        grads.append((loss.item(), x.grad.numpy()))
    assert grads[0][0] == grads[1][0]
    np.testing.assert_allclose(grads[0][1], grads[1][1], rtol=1e-13, atol=1e-16)


def test_minus_infinity_at_another_class_is_not_nan(backend):
    """PyTorch gives 0 here; 0 * -inf in a mask product would give NaN."""
    x = t64(np.array([[1.0, -np.inf], [0.0, 0.0]]), requires_grad=True)
    assert F.nll_loss(x, ids([0, 1]), reduction="none").numpy().tolist() == [-1.0, -0.0]
    loss = F.cross_entropy(x, ids([0, 0]))
    assert loss.item() == pytest.approx(np.log(2) / 2, rel=1e-14)
    loss.backward()
    assert np.isfinite(x.grad.numpy()).all()


def test_cross_entropy_all_ignored(backend):
    x = t64(np.ones((2, 3)))
    target = ids([-100, -100])
    assert np.isnan(F.cross_entropy(x, target).item())            # 0 / 0, as PyTorch
    assert F.cross_entropy(x, target, reduction="sum").item() == 0.0
    np.testing.assert_array_equal(F.cross_entropy(x, target, reduction="none").numpy(), [0.0, 0.0])


def test_cross_entropy_single_example_and_int32_targets(backend):
    logits = np.array([0.5, -1.0, 2.0])
    loss = F.cross_entropy(t64(logits), ids(2))
    assert loss.shape == ()
    assert loss.item() == pytest.approx(-np_log_softmax(logits, 0)[2], rel=1e-14)
    target32 = tg.Tensor(np.array([2, 0], dtype=np.int32))
    loss32 = F.cross_entropy(t64([logits, logits]), target32, reduction="none")
    np.testing.assert_allclose(loss32.numpy(), -np_log_softmax(logits, 0)[[2, 0]], rtol=1e-14)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cross_entropy_with_huge_logits_is_finite(backend, dtype):
    x = tg.Tensor(np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]]), dtype=dtype, requires_grad=True)
    loss = F.cross_entropy(x, ids([1, 0]), reduction="none")
    np.testing.assert_allclose(loss.numpy(), [2e4, 2e4 + np.log(2)], rtol=1e-6)
    loss.sum().backward()
    g = x.grad.numpy()
    assert np.isfinite(g).all()
    np.testing.assert_allclose(g, [[1, -1, 0], [-1, 0.5, 0.5]], atol=1e-6)


def test_nll_loss_picks_the_log_probabilities(backend):
    log_p = np.log(np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]]))
    loss = F.nll_loss(t64(log_p), ids([1, 2]), reduction="none")
    np.testing.assert_allclose(loss.numpy(), [-np.log(0.5), -np.log(0.3)], rtol=1e-14)
    assert F.nll_loss(t64(log_p), ids([1, 2])).item() == pytest.approx(-(np.log(0.5) + np.log(0.3)) / 2)


# ---------------------------------------------------------------- other losses
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss(backend, reduction):
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((2, 3, 4))
    loss = F.mse_loss(t64(a), t64(b), reduction)
    sq = (a - b) ** 2
    expected = {"mean": sq.mean(), "sum": sq.sum(), "none": sq}[reduction]
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-14)
    x, y = t64(a, True), t64(b, True)
    assert tg.gradcheck(lambda x, y: F.mse_loss(x, y, reduction), [x, y])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_binary_cross_entropy_with_logits(backend, reduction):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 4)) * 3
    y = rng.uniform(0, 1, (3, 4))
    p = 1 / (1 + np.exp(-x))
    losses = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    expected = {"mean": losses.mean(), "sum": losses.sum(), "none": losses}[reduction]
    loss = F.binary_cross_entropy_with_logits(t64(x), t64(y), reduction)
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-12)
    assert tg.gradcheck(lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction),
                        [t64(x, True), t64(y, True)])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_binary_cross_entropy_with_huge_logits_and_at_zero(backend, dtype):
    x = tg.Tensor(np.array([1e4, -1e4, 1e4, -1e4, 0.0, 0.0]), dtype=dtype, requires_grad=True)
    y = tg.Tensor(np.array([1.0, 0.0, 0.0, 1.0, 1.0, 0.25]), dtype=dtype)
    loss = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    np.testing.assert_allclose(loss.numpy(), [0, 0, 1e4, 1e4, np.log(2), np.log(2)], rtol=1e-6, atol=1e-30)
    loss.sum().backward()
    # d/dx = sigmoid(x) - y, exact also at x = 0 where a max(x, 0) formulation gets it wrong
    np.testing.assert_allclose(x.grad.numpy(), [0, 0, 1, -1, -0.5, 0.25], atol=1e-7)


# ---------------------------------------------------------------- softmax, one_hot, wrappers
def test_softmax_and_log_softmax(backend):
    rng = np.random.default_rng(5)
    a = rng.standard_normal((3, 4, 2))
    for dim in (-1, 1, 0):
        np.testing.assert_allclose(F.log_softmax(t64(a), dim=dim).numpy(), np_log_softmax(a, dim), rtol=1e-13)
        np.testing.assert_allclose(F.softmax(t64(a), dim=dim).numpy(), np.exp(np_log_softmax(a, dim)), rtol=1e-13)
    assert tg.gradcheck(lambda x: F.softmax(x, dim=1), [t64(a, True)])
    assert tg.gradcheck(lambda x: F.log_softmax(x, axis=0), [t64(a, True)])


def test_one_hot(backend):
    out = F.one_hot(ids([[2, 0], [1, 3]]), 4)
    expected = np.zeros((2, 2, 4), dtype=np.float32)
    expected[0, 0, 2] = expected[0, 1, 0] = expected[1, 0, 1] = expected[1, 1, 3] = 1
    assert out.dtype == "float32" and not out.requires_grad and out.device == backend
    np.testing.assert_array_equal(out.numpy(), expected)
    assert F.one_hot(ids([0, 4])).shape == (2, 5)                  # num_classes from the largest id
    assert F.one_hot(ids([1]), 2, dtype="float64").dtype == "float64"


def test_linear_embedding_dropout_wrappers(backend):
    rng = np.random.default_rng(6)
    x, W, b = rng.standard_normal((2, 3)), rng.standard_normal((4, 3)), rng.standard_normal(4)
    np.testing.assert_allclose(F.linear(t64(x), t64(W), t64(b)).numpy(), x @ W.T + b, rtol=1e-14)
    np.testing.assert_allclose(F.linear(t64(x), t64(W)).numpy(), x @ W.T, rtol=1e-14)
    table = rng.standard_normal((5, 2))
    np.testing.assert_array_equal(F.embedding(ids([[4, 0, 4]]), t64(table)).numpy(), table[[[4, 0, 4]]])
    a = t64(np.ones((200, 50)))
    assert F.dropout(a, 0.3, training=False) is a
    kept = F.dropout(a, 0.3).numpy()
    assert set(np.unique(kept)) == {0.0, 1 / 0.7}
    assert abs((kept == 0).mean() - 0.3) < 0.02


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("call, error, message", [
    (lambda: F.cross_entropy(t64(np.zeros((4, 3))), t64([0.0, 1, 2, 0])), TypeError,
     r"cross_entropy: expected target to hold integer class ids \(int64\), got float64 of shape \(4,\)"),
    (lambda: F.cross_entropy(t64(np.zeros((4, 3))), ids([0, 1, 2])), ValueError,
     r"input of shape \(4, 3\) \(N, C, d1, ...\) needs a target of shape \(4,\) \(N, d1, ...\), got \(3,\)"),
    (lambda: F.cross_entropy(t64(np.zeros((4, 3, 5))), ids(np.zeros((4, 3)))), ValueError,
     r"needs a target of shape \(4, 5\) \(N, d1, ...\), got \(4, 3\)"),
    (lambda: F.cross_entropy(t64(np.zeros((4, 3))), ids([0, 1, 3, 0])), IndexError,
     r"cross_entropy: class id 3 at position \(2,\) is out of range; expected ids in \[0, 3\) or ignore_index=-100"),
    (lambda: F.cross_entropy(t64(np.zeros((2, 3))), ids([-1, 0])), IndexError, r"class id -1 at position \(0,\)"),
    (lambda: F.cross_entropy(ids([[0, 1]]), ids([0])), TypeError,
     r"cross_entropy: expected input to be float32 or float64, got int64 of shape \(1, 2\)"),
    (lambda: F.cross_entropy(t64(np.zeros((2, 3))), [0, 1]), TypeError,
     r"cross_entropy: expected target to be a Tensor, got list"),
    (lambda: F.cross_entropy(t64(np.zeros((2, 3))), ids([0, 1]), reduction="avg"), ValueError,
     r"reduction must be 'mean', 'sum' or 'none', got 'avg'"),
    (lambda: F.nll_loss(t64(np.zeros((2, 3))), ids([0, 5])), IndexError, r"nll_loss: class id 5"),
    (lambda: F.mse_loss(t64(np.zeros(3)), t64(np.zeros((3, 1)))), ValueError,
     r"mse_loss: target must have the input's shape \(3,\), got \(3, 1\)"),
    (lambda: F.binary_cross_entropy_with_logits(t64(np.zeros(3)), ids([0, 1, 1])), TypeError,
     r"expected target to be float32 or float64, got int64 of shape \(3,\)"),
    (lambda: F.one_hot(ids([[0, 5], [2, 1]]), 4), IndexError,
     r"one_hot: id 5 at position \(0, 1\) is out of range; expected ids in \[0, 4\)"),
    (lambda: F.one_hot(t64([0.0, 1.0]), 2), TypeError, r"one_hot: expected an integer tensor of ids, got float64"),
    (lambda: F.embedding(ids([0, 7]), t64(np.zeros((5, 2)))), IndexError,
     r"embedding: token id 7 at position \(1,\) is out of range; expected ids in \[0, 5\)"),
    (lambda: F.embedding(t64(np.zeros((5, 2))), ids([0])), TypeError,
     r"the order is embedding\(ids, weight\)"),
    (lambda: F.dropout(t64([1.0]), 1.0), ValueError, r"dropout probability must be in \[0, 1\), got 1.0"),
])
def test_errors_name_expected_and_actual(backend, call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_nn_exports_functional_as_F():
    assert nn.F is F and nn.functional is F


# ---------------------------------------------------------------- PyTorch parity
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ignore_index", [-100, 2, None], ids=["-100", "2", "none_ignored"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cross_entropy_and_nll_match_torch(backend, reduction, ignore_index, dtype):
    """none_ignored: the mean over (N, C) is the fused op."""
    torch = pytest.importorskip("torch")
    tdtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
    rng = np.random.default_rng(7)
    for shape, target_shape in SHAPES:
        logits = rng.standard_normal(shape) * 2
        target = rng.integers(0, shape[1], size=target_shape)
        if ignore_index is None:
            ignore_index = -100
        else:
            target.flat[-1] = ignore_index
        xt = torch.tensor(logits, dtype=tdtype, requires_grad=True)
        xe = tg.Tensor(logits, dtype=dtype, requires_grad=True)
        tt, te = torch.tensor(target), ids(target)
        for fe, ft, arg_e, arg_t in [(F.cross_entropy, torch.nn.functional.cross_entropy, xe, xt),
                                     (F.nll_loss, torch.nn.functional.nll_loss, xe * 1, xt * 1)]:
            le = fe(arg_e, te, reduction=reduction, ignore_index=ignore_index)
            lt = ft(arg_t, tt, reduction=reduction, ignore_index=ignore_index)
            tol = 1e-6 if dtype == "float32" else 1e-13
            np.testing.assert_allclose(le.numpy(), lt.detach().numpy(), rtol=tol, atol=tol)
            v = rng.standard_normal(lt.shape)
            xe.grad = None
            xt.grad = None
            (le * tg.Tensor(v, dtype=dtype)).sum().backward()
            (lt * torch.tensor(v, dtype=tdtype)).sum().backward()
            np.testing.assert_allclose(xe.grad.numpy(), xt.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_and_bce_match_torch(backend, reduction):
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    rng = np.random.default_rng(8)
    x = np.concatenate([rng.standard_normal(6) * 4, [0.0, 1e4, -1e4]])
    y = np.concatenate([rng.uniform(0, 1, 6), [0.3, 0.0, 1.0]])
    for fe, ft in [(F.mse_loss, tF.mse_loss), (F.binary_cross_entropy_with_logits, tF.binary_cross_entropy_with_logits)]:
        xe, ye = t64(x, True), t64(y, True)
        xt = torch.tensor(x, requires_grad=True)
        yt = torch.tensor(y, requires_grad=True)
        le, lt = fe(xe, ye, reduction=reduction), ft(xt, yt, reduction=reduction)
        np.testing.assert_allclose(le.numpy(), lt.detach().numpy(), rtol=1e-13)
        v = rng.standard_normal(lt.shape)
        (le * t64(v)).sum().backward()
        (lt * torch.tensor(v)).sum().backward()
        np.testing.assert_allclose(xe.grad.numpy(), xt.grad.numpy(), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(ye.grad.numpy(), yt.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_softmax_one_hot_linear_embedding_match_torch(backend):
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    rng = np.random.default_rng(9)
    a = rng.standard_normal((3, 5))
    np.testing.assert_allclose(F.softmax(t64(a), dim=0).numpy(), tF.softmax(torch.tensor(a), dim=0).numpy(),
                               rtol=1e-14)
    np.testing.assert_allclose(F.log_softmax(t64(a), dim=1).numpy(),
                               tF.log_softmax(torch.tensor(a), dim=1).numpy(), rtol=1e-14)
    i = np.array([[1, 4], [0, 0]])
    np.testing.assert_array_equal(F.one_hot(ids(i), 5).numpy(), tF.one_hot(torch.tensor(i), 5).numpy())
    W, b = rng.standard_normal((2, 5)), rng.standard_normal(2)
    np.testing.assert_allclose(F.linear(t64(a), t64(W), t64(b)).numpy(),
                               tF.linear(torch.tensor(a), torch.tensor(W), torch.tensor(b)).numpy(), rtol=1e-14)
    np.testing.assert_array_equal(F.embedding(ids(i), t64(a.T)).numpy(),
                                  tF.embedding(torch.tensor(i), torch.tensor(a.T)).numpy())
