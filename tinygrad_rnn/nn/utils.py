"""Gradient clipping: the two rules of the lecture notes, with PyTorch's API.

Exploding gradients in an RNN show up as a few huge steps that throw the
weights far away. Between ``loss.backward()`` and ``opt.step()``, either

* clip each element:  ``clip_grad_value_(params, 5)``  puts every gradient
  entry into [-5, 5] (direction changes, magnitude is bounded), or
* clip the norm:      ``clip_grad_norm_(params, 5)``   rescales all gradients
  together when ||g|| > 5, so g becomes g / ||g|| * 5 (direction is kept).

Both change ``p.grad`` in place (its ``.data`` is replaced) and use only Array
API operations, so nothing waits for the host, except that
``error_if_nonfinite=True`` must look at the norm.
"""
import math

from ..tensor import Tensor


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale all gradients by min(1, max_norm / (total_norm + 1e-6)); return total_norm (a 0-d Tensor).

    total_norm is the ``norm_type``-norm of all gradients seen as one vector
    (``norm_type`` > 0, or ``inf`` for the largest |g|), computed before clipping.
    As in PyTorch, a NaN or inf norm is not an error by default: the gradients are
    scaled by max_norm / inf = 0 (inf entries become NaN) or by NaN (all become NaN).
    With ``error_if_nonfinite=True`` it raises a RuntimeError instead, naming the norm
    and the parameters whose gradients are not finite, before any gradient changes.
    Parameters without a gradient are skipped; with none at all the norm is 0.
    """
    params = _parameter_list("clip_grad_norm_", parameters)
    max_norm, norm_type = float(max_norm), float(norm_type)
    if not norm_type > 0:
        raise ValueError(f"clip_grad_norm_: norm_type must be positive or inf, got {norm_type}")
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return Tensor(0.0, backend=params[0].backend if params else None)
    _same_backend("clip_grad_norm_", grads)
    backend = grads[0].backend
    xp = backend.xp
    dtype = xp.float64 if any(g.dtype == "float64" for g in grads) else xp.float32
    norms = [xp.astype(_vector_norm(g.data, norm_type, xp), dtype) for g in grads]
    total_norm = _vector_norm(xp.stack(norms), norm_type, xp)
    if error_if_nonfinite and not bool(xp.isfinite(total_norm)):  # the one host sync, asked for
        bad = [p.name or f"parameters[{i}]" for i, p in enumerate(params)
               if p.grad is not None and not bool(xp.all(xp.isfinite(p.grad.data)))]
        raise RuntimeError(
            f"The total norm of order {norm_type} for gradients from `parameters` is non-finite "
            f"({float(total_norm)}), so it cannot be clipped (non-finite gradients in: {', '.join(bad)}). "
            f"To disable this error and scale the gradients by the non-finite norm anyway, set "
            f"`error_if_nonfinite=False`")
    # clip(NaN) stays NaN, so a NaN norm poisons every gradient, as in PyTorch
    clip_coef = xp.clip(max_norm / (total_norm + 1e-6), max=1.0)
    for g in grads:
        g.data = g.data * xp.astype(clip_coef, g.data.dtype)
    return Tensor._wrap(total_norm, backend)


def clip_grad_value_(parameters, clip_value):
    """Clip every gradient entry into [-clip_value, clip_value] (NaN stays NaN); returns None."""
    params = _parameter_list("clip_grad_value_", parameters)
    clip_value = float(clip_value)
    if not clip_value >= 0:
        raise ValueError(f"clip_grad_value_: clip_value must be >= 0, got {clip_value}")
    for p in params:
        if p.grad is not None:
            p.grad.data = p.grad.backend.xp.clip(p.grad.data, min=-clip_value, max=clip_value)


def _vector_norm(a, p, xp):
    """(sum |a|**p) ** (1/p) over all entries; p = inf: max |a|. An empty array has norm 0."""
    if a.size == 0:
        return xp.zeros((), dtype=a.dtype)
    if p == math.inf:
        return xp.max(xp.abs(a))
    if p == 2.0:
        return xp.sqrt(xp.sum(a * a))
    if p == 1.0:
        return xp.sum(xp.abs(a))
    return xp.sum(xp.abs(a) ** p) ** (1.0 / p)


def _parameter_list(who, parameters):
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    for i, p in enumerate(params):
        if not isinstance(p, Tensor):
            raise TypeError(f"{who}: expected tensors (parameters), got {type(p).__name__} at position {i}")
        if p.grad is not None and not isinstance(p.grad, Tensor):
            raise TypeError(f"{who}: the grad of {p.name or f'parameters[{i}]'} is a "
                            f"{type(p.grad).__name__}, expected a Tensor")
    return params


def _same_backend(who, grads):
    names = sorted({g.device for g in grads})
    if len(names) > 1:
        raise ValueError(f"{who}: all gradients must be on one backend, got {' and '.join(map(repr, names))}")


__all__ = ["clip_grad_norm_", "clip_grad_value_"]
