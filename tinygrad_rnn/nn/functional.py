"""Functions of tensors, as ``torch.nn.functional`` (import as ``F``): the ops that take
several tensors (concat, stack, where, lerp, linear, embedding; also ``tg.concat`` etc.),
and the losses.

Every loss is built from the engine's primitive ops, so the graph shows it.
Cross-entropy is the lecture's

    Loss = - sum_i log P(t_i) * [t_i = true]

written literally: ``log_softmax`` (one fused, stable op) gives log P, ``pick``
takes log P(t_i) * [t_i = true] summed over the classes (the entry of the true
class t_i), a sum adds the picks up, and the sign (or -1/n for the mean) comes
last: after the logits, four ops. The usual case, the mean over (N, C) logits, runs
them as one fused op (``CrossEntropy``, backward softmax(x) - onehot(t)) that draws
as those four.

Shapes: N is the batch, C the classes; ``d1, ...`` are extra axes (e.g. time),
as in PyTorch's (N, C, d1, ...) convention.
"""
from .. import ops
from ..backend import backend_of, host as np
from ..fused import Fused, given, saved_value
from ..tensor import Tensor, _check_axis, _check_backends, _promote

__all__ = ["concat", "cat", "stack", "where", "lerp", "linear", "embedding", "cross_entropy", "nll_loss",
           "mse_loss", "binary_cross_entropy_with_logits", "softmax", "log_softmax", "one_hot", "dropout"]

REDUCTIONS = ("mean", "sum", "none")


# ---------------------------------------------------------------- ops of several tensors
def _tensors(what, tensors):
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{what}: expected a non-empty sequence of tensors, got an empty one")
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"{what}: expected tensors, got {type(t).__name__} at position {i}")
    _check_backends(what, *tensors)
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) > 1:
        raise TypeError(f"{what}: all tensors must have one dtype, got {sorted(dtypes)}")
    return tensors


def concat(tensors, axis=0, dim=None):
    """Join tensors along an existing axis (``torch.cat``)."""
    tensors = _tensors("concat", tensors)
    axis = dim if dim is not None else axis
    ndim = tensors[0].ndim
    axis = _check_axis("concat", axis, ndim)
    for i, t in enumerate(tensors):
        if t.ndim != ndim or t.shape[:axis] + t.shape[axis + 1:] != tensors[0].shape[:axis] + tensors[0].shape[axis + 1:]:
            raise ValueError(f"concat: shapes must match except along axis {axis}; "
                             f"got {tensors[0].shape} and {t.shape} (position {i})")
    return ops.Concat.apply(*tensors, axis=axis)


cat = concat


def stack(tensors, axis=0, dim=None):
    """Join tensors of one shape along a new axis."""
    tensors = _tensors("stack", tensors)
    axis = dim if dim is not None else axis
    for i, t in enumerate(tensors):
        if t.shape != tensors[0].shape:
            raise ValueError(f"stack: all tensors must have one shape; got {tensors[0].shape} and {t.shape} (position {i})")
    return ops.Stack.apply(*tensors, axis=_check_axis("stack", axis, tensors[0].ndim + 1))


def where(cond, x, y):
    """``x`` where ``cond`` is true, else ``y`` (cond: a bool tensor; x or y may be numbers)."""
    if not isinstance(cond, Tensor) or cond.dtype != "bool":
        raise TypeError(f"where: cond must be a bool tensor, got {getattr(cond, 'dtype', type(cond).__name__)}")
    if not isinstance(x, Tensor):
        x = y._lift(x) if isinstance(y, Tensor) else cond._lift(float(x))
    if not isinstance(y, Tensor):
        y = x._lift(y)
    if x.dtype != y.dtype:
        x, y = _promote(ops.Where, x, y)
    return ops.Where.apply(cond, x, y)


def lerp(input, end, weight):
    """``input + weight * (end - input)`` as one op (``torch.lerp``); see ``Tensor.lerp``."""
    if not isinstance(input, Tensor):
        raise TypeError(f"lerp: input must be a tensor, got {type(input).__name__}")
    return input.lerp(end, weight)


def linear(x, weight, bias=None):
    """``x @ weight.T + bias`` as one op (PyTorch's F.linear): x (..., in), weight (out, in), bias (out,)."""
    xs, ws = x.data.shape, weight.data.shape   # the arrays' own shapes: this runs at every RNN step
    if len(ws) != 2 or not xs or xs[-1] != ws[1]:
        raise ValueError(f"linear: expected x (..., {weight.shape[-1] if weight.ndim == 2 else 'in'}) and "
                         f"weight (out, in), got x {x.shape} and weight {weight.shape}")
    if x.data.dtype != weight.data.dtype or (bias is not None and bias.data.dtype != weight.data.dtype):
        raise TypeError(f"linear: x, weight and bias must share a dtype, got {x.dtype}, {weight.dtype}"
                        f"{', ' + bias.dtype if bias is not None else ''}")
    if bias is None:
        return ops.Linear.apply(x, weight)
    return ops.Linear.apply(x, weight, bias)


# ---------------------------------------------------------------- checks
def _check_reduction(what, reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"{what}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _check_tensor(what, arg, x):
    if not isinstance(x, Tensor):
        raise TypeError(f"{what}: expected {arg} to be a Tensor, got {type(x).__name__}")


def _check_float(what, arg, x):
    _check_tensor(what, arg, x)
    if not x.is_floating_point:
        raise TypeError(f"{what}: expected {arg} to be float32 or float64, got {x.dtype} of shape {x.shape}")


def _check_same_shape(what, input, target, reduction):
    """A loss of two float tensors of one shape (no broadcasting: a (N,) vs (N, 1) slip is an error)."""
    _check_reduction(what, reduction)
    _check_float(what, "input", input)
    _check_float(what, "target", target)
    if target.shape != input.shape:
        raise ValueError(f"{what}: target must have the input's shape {input.shape}, got {target.shape}")


def _check_ids(what, ids, low, high, ignore=None, noun="class id"):
    """Every id in [low, high) (or equal to ``ignore``); the error names the first bad one.

    Skipped on CuPy: reading the ids back to the host would stall the GPU. Returns True when
    every id was seen inside [low, high) (then none equals an ``ignore`` outside that range)."""
    if ids.device == "cupy" or ids.numel() == 0:
        return False
    a = ids.numpy()
    if a.min() >= low and a.max() < high:       # the usual case, in two reductions
        return True
    bad = (a < low) | (a >= high)
    if ignore is not None:
        bad &= a != ignore
    if bad.any():
        pos = tuple(int(i) for i in np.argwhere(bad)[0])
        extra = f" or ignore_index={ignore}" if ignore is not None else ""
        raise IndexError(f"{what}: {noun} {int(a[pos])} at position {pos} is out of range; expected ids in "
                         f"[{low}, {high}){extra}")
    return False


def _check_class_target(what, input, target, ignore_index):
    """(N, C, d1, ...) input with (N, d1, ...) integer target in [0, C) (or ignore_index),
    or (C,) input with a 0-d target. Returns True when it saw that no element is ignored."""
    _check_float(what, "input", input)
    _check_tensor(what, "target", target)
    if target.dtype not in ("int64", "int32"):
        raise TypeError(f"{what}: expected target to hold integer class ids (int64), got {target.dtype} of shape "
                        f"{target.shape}; class probabilities as targets are not supported")
    if input.ndim == 0:
        raise ValueError(f"{what}: expected input of shape (N, C) or (N, C, d1, ...), got a 0-d tensor")
    expected = input.shape[:1] + input.shape[2:] if input.ndim >= 2 else ()
    if target.shape != expected:
        raise ValueError(f"{what}: input of shape {input.shape} (N, C, d1, ...) needs a target of shape "
                         f"{expected} (N, d1, ...), got {target.shape}")
    if target.device != input.device:
        raise ValueError(f"{what}: input is on backend {input.device!r} but target on {target.device!r}")
    C = input.shape[1] if input.ndim >= 2 else input.shape[0]
    return _check_ids(what, target, 0, C, ignore_index) and not 0 <= ignore_index < C


# ---------------------------------------------------------------- classification losses
def nll_loss(input, target, reduction="mean", ignore_index=-100):
    """Negative log-likelihood of the true classes: - sum_i input[i, t_i] (or its mean).

    input: (N, C) or (N, C, d1, ...) log-probabilities (e.g. from ``log_softmax(x, dim=1)``),
    or (C,) for one example; target: (N,) or (N, d1, ...) integer ids in [0, C).
    Elements whose target equals ``ignore_index`` add nothing, and the mean is over
    the others (NaN when every element is ignored, as PyTorch).
    reduction: "mean" -> scalar, "sum" -> scalar, "none" -> target's shape."""
    what = "nll_loss"
    _check_reduction(what, reduction)
    none_ignored = _check_class_target(what, input, target, ignore_index)
    return _nll(input, target, reduction, ignore_index, none_ignored)


def _nll(input, target, reduction, ignore_index, none_ignored):
    """nll_loss after the checks (``none_ignored``: they saw no id equal to ignore_index)."""
    class_axis = 1 if input.ndim >= 2 else 0
    # log P(t_i) * [t_i = true], summed over the classes: the true class's entry (a "pick"
    # rather than a product with a one-hot mask: no zeros made for the other classes, and a
    # log P of -inf at another class gives 0, not NaN). The ids t_i are a constant.
    picked = ops.Pick.apply(input, _class_ids(target), axis=class_axis,
                            ignore=None if none_ignored else ignore_index)
    if reduction == "none":
        return -picked
    if reduction == "sum":
        return -picked.sum()
    return picked.sum() * _mean_weight(input, target, ignore_index, none_ignored)


def _class_ids(target):
    """The target ids as a constant of the graph, drawn as t_true."""
    t = Tensor._wrap(target.data, target.backend)
    t._name = "t_true"
    return t


def _mean_weight(input, target, ignore_index, none_ignored):
    """-1 / n, n the elements not ignored, as a constant drawn as "-1 / n"."""
    xp = input.backend.xp
    if none_ignored:          # n = every element, known from the shape (and > 0: the checks saw ids)
        weight = xp.asarray(-1.0 / target.numel(), dtype=input.data.dtype)
    else:                     # n counted on the device (no host round trip); NaN for 0 / 0
        n = xp.sum(xp.astype(target.data != ignore_index, input.data.dtype))
        weight = xp.where(n > 0, -1 / xp.maximum(n, 1.0), xp.nan)
    weight = Tensor._wrap(weight, input.backend)
    weight._name = "-1 / n"
    return weight


class CrossEntropy(Fused):
    """loss = w * sum_i log softmax(x_i)[t_i], w = -1/N: the mean cross-entropy of logits x
    (N, C) against class ids t (N,), as one op (what by_hand.py computes).

    backward: dx = (softmax(x) - onehot(t)) * (-w) * dloss. It draws, and is watched, as the
    four ops it stands for: log_softmax, pick, sum, mul by w."""
    formula = "dx = (softmax(x) - onehot(t)) * dloss / N"

    def forward(self, x, t, w):
        xp = self.xp
        log_p = x - xp.max(x, axis=1, keepdims=True)
        log_p -= xp.log(xp.sum(xp.exp(log_p), axis=1, keepdims=True))
        index = xp.reshape(t, (-1, 1))
        self.save_for_backward(log_p, index, w)
        return xp.sum(backend_of(xp).take_along_axis(log_p, index, 1)) * w

    def backward(self, dloss):
        xp = self.xp
        log_p, index, w = self.saved
        dx = xp.exp(log_p)                                                 # softmax(x)
        dx = backend_of(xp).add_along_axis(dx, index, xp.full(index.shape, -1, dtype=dx.dtype), 1)
        dx *= -w * dloss
        return dx, None, None

    def primitive(self, x, t, w):
        """nll_loss(log_softmax(x)) as _nll makes it: pick, sum, mul by -1 / N."""
        log_p = given(x.log_softmax(axis=1), saved_value(self, 0))
        return (ops.Pick.apply(log_p, t, axis=1, ignore=None).sum() * w,)


def cross_entropy(input, target, reduction="mean", ignore_index=-100):
    """Softmax cross-entropy between logits and integer class ids, as ``torch.nn.functional.cross_entropy``:

        loss_i = - log softmax(input_i)[t_i] = - sum_c log P_i(c) * [c = t_i]

    input: (N, C) or (N, C, d1, ...) unnormalised logits (or (C,) for one example);
    target: (N,) or (N, d1, ...) integer ids in [0, C) (or ``ignore_index``).
    reduction "mean" averages over the elements not ignored, "sum" adds, "none" returns
    the per-element losses (target's shape). Stable for any finite logits (log_softmax
    subtracts the maximum first)."""
    what = "cross_entropy"
    _check_reduction(what, reduction)
    none_ignored = _check_class_target(what, input, target, ignore_index)
    if input.ndim == 2 and reduction == "mean" and none_ignored:
        return CrossEntropy.apply(input, _class_ids(target), _mean_weight(input, target, ignore_index, True))
    log_p = input.log_softmax(axis=1 if input.ndim >= 2 else 0)
    return _nll(log_p, target, reduction, ignore_index, none_ignored)


def binary_cross_entropy_with_logits(input, target, reduction="mean"):
    """- [y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))], elementwise, from logits x.

    Computed as a two-class cross-entropy: with logits [0, x] the classes have
    log-probabilities log_softmax([0, x]) = [log(1 - sigmoid(x)), log sigmoid(x)],
    and the soft target is [1 - y, y]. The fused, stable log_softmax keeps it finite
    for any finite x (|x| = 1e4 included) and its gradient is sigmoid(x) - y everywhere.
    input and target: the same shape (target floats in [0, 1]); reduction as cross_entropy."""
    what = "binary_cross_entropy_with_logits"
    _check_same_shape(what, input, target, reduction)
    zeros = Tensor._wrap(input.backend.xp.zeros_like(input.data), input.backend)
    log_p = stack([zeros, input], axis=-1).log_softmax(axis=-1)     # [log(1 - p), log p]
    y = stack([1 - target, target], axis=-1)                        # [1 - y, y]
    losses = -(log_p * y).sum(axis=-1)
    return _reduce(losses, reduction)


def mse_loss(input, target, reduction="mean"):
    """(input - target)**2, averaged ("mean"), added ("sum") or elementwise ("none").

    input and target: the same shape (no broadcasting, so a (N,) vs (N, 1) slip is an error)."""
    what = "mse_loss"
    _check_same_shape(what, input, target, reduction)
    diff = input - target
    return _reduce(diff * diff, reduction)


def _reduce(losses, reduction):
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    return losses


# ---------------------------------------------------------------- wrappers of engine ops
def softmax(input, dim=-1, axis=None):
    """exp(x) / sum(exp(x)) along ``dim`` (one fused op)."""
    return input.softmax(axis=dim if axis is None else axis)


def log_softmax(input, dim=-1, axis=None):
    """x - log(sum(exp(x))) along ``dim`` (one fused, stable op)."""
    return input.log_softmax(axis=dim if axis is None else axis)


def one_hot(ids, num_classes=-1, dtype="float32"):
    """ids (...) integer -> (..., num_classes) with 1.0 at each id and 0.0 elsewhere (no gradient).

    ``num_classes=-1`` uses max(ids) + 1. Unlike PyTorch the result is float (it is
    meant as network input); pass ``dtype`` to change it."""
    what = "one_hot"
    _check_tensor(what, "ids", ids)
    if ids.dtype not in ("int64", "int32"):
        raise TypeError(f"{what}: expected an integer tensor of ids, got {ids.dtype} of shape {ids.shape}")
    if num_classes == -1:
        if ids.numel() == 0:
            raise ValueError(f"{what}: cannot infer num_classes from an empty tensor; pass num_classes")
        num_classes = int(ids.numpy().max()) + 1
    if num_classes < 1:
        raise ValueError(f"{what}: num_classes must be positive (or -1), got {num_classes}")
    _check_ids(what, ids, 0, num_classes, noun="id")
    b = ids.backend
    xp = b.xp
    t = ids.data
    hit = xp.reshape(t, t.shape + (1,)) == xp.arange(num_classes, dtype=t.dtype)
    return Tensor._wrap(xp.astype(hit, b.dtypes[dtype]), b)


def embedding(input, weight):
    """Rows of ``weight`` (V, D) picked by the integer ids ``input`` (...): shape (..., D).

    Argument order as ``torch.nn.functional.embedding(input, weight)``."""
    what = "embedding"
    _check_tensor(what, "input", input)
    _check_tensor(what, "weight", weight)
    if input.dtype not in ("int64", "int32"):
        raise TypeError(f"{what}: ids must be an integer tensor, got {input.dtype} of shape {input.shape} (and weight "
                        f"{weight.dtype} {weight.shape}); the order is embedding(ids, weight) (tg.embedding: weight first)")
    if weight.ndim != 2:
        raise ValueError(f"{what}: expected weight of shape (num_embeddings, dim), got {weight.shape}")
    _check_ids(what, input, 0, weight.shape[0], noun="token id")
    return ops.Embedding.apply(weight, input)


def dropout(input, p=0.5, training=True):
    """Zero each element with probability p and scale the rest by 1/(1-p); identity when not training."""
    return input.dropout(p, training)
