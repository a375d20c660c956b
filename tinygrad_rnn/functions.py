"""Ops that take several tensors, as module-level functions: concat, stack, where, lerp, linear, embedding."""
from . import ops
from .tensor import Tensor, _check_axis, _check_backends, _promote


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


def embedding(weight, idx):
    """Rows of ``weight`` (V, D) picked by integer ids ``idx`` (any shape): shape idx.shape + (D,)."""
    if idx.dtype not in ("int64", "int32"):
        raise TypeError(f"embedding: ids must be an integer tensor, got {idx.dtype}")
    _check_backends("embedding", weight, idx)
    return ops.Embedding.apply(weight, idx)
