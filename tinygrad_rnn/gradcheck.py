"""gradcheck: does backward agree with finite differences?

For each input x that requires grad and each element x[i]:

    numeric[i] = (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)

where L = sum_k <outputs_k, v_k> for fixed random v_k (so non-scalar outputs
are checked along a random direction, as in Chainer), compared with the
analytic ``x.grad`` from one backward pass. Run it in float64: in float32 the
rounding error of the difference quotient swamps the check.
"""
from .backend import host as np

from .function import no_grad
from .tensor import Tensor


class GradcheckError(AssertionError):
    """Analytic and numeric gradients disagree; the message names the worst element."""


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True, seed=0):
    """Check ``fn(*inputs)`` (a Tensor or tuple of Tensors) against central differences.

    Returns True when every checked element satisfies
    ``|analytic - numeric| <= atol + rtol * |numeric|``; otherwise raises a
    GradcheckError naming the input, the element, both values and the error
    (or returns False with ``raise_exception=False``). ``inputs`` keeps its order;
    non-tensors and tensors without requires_grad are passed through unchecked.
    """
    inputs = list(inputs)
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad, so there is nothing to check")
    for i in checked:
        if inputs[i].dtype != "float64":
            raise TypeError(f"gradcheck: input {i} is {inputs[i].dtype}; finite differences need float64 "
                            f"(make it with dtype='float64')")

    rng = np.random.default_rng(seed)
    outputs = _as_tuple(fn(*inputs))
    directions = [rng.standard_normal(o.shape) for o in outputs]

    def objective_value():
        with no_grad():
            outs = _as_tuple(fn(*inputs))
        return sum(float(np.sum(o.numpy().astype(np.float64) * v)) for o, v in zip(outs, directions))

    # analytic: one backward of L = sum_k <out_k, v_k> (the inputs' own .grad put back afterwards)
    saved_grads = {i: inputs[i].grad for i in checked}
    try:
        for i in checked:
            inputs[i].grad = None
        total = None
        for o, v in zip(outputs, directions):
            if not o.requires_grad:
                continue
            term = (o * Tensor(v, dtype=o.dtype, backend=o.backend)).sum()
            total = term if total is None else total + term
        if total is not None:
            total.backward()
        analytic = {i: (inputs[i].grad.numpy() if inputs[i].grad is not None
                        else np.zeros(inputs[i].shape)) for i in checked}
    finally:
        for i in checked:
            inputs[i].grad = saved_grads[i]

    # numeric: central differences, one element at a time
    for i in checked:
        x = inputs[i]
        original = x.data
        base = x.numpy()
        numeric = np.zeros(base.shape)
        try:
            for j in range(base.size):
                for sign in (1, -1):
                    bumped = base.copy()
                    bumped.flat[j] += sign * eps
                    x.data = x.backend.asarray(bumped, "float64")
                    numeric.flat[j] += sign * objective_value()
                numeric.flat[j] /= 2 * eps
        finally:
            x.data = original

        err = np.abs(analytic[i] - numeric)
        excess = err - (atol + rtol * np.abs(numeric))
        if base.size and excess.max() > 0:
            k = np.unravel_index(int(np.argmax(excess)), base.shape)
            msg = (f"gradcheck failed for input {i} (shape {base.shape}{', ' + repr(x.name) if x.name else ''}) "
                   f"at index {tuple(int(a) for a in k)}: analytic {analytic[i][k]:.8g}, numeric {numeric[k]:.8g}, "
                   f"|difference| {err[k]:.3g} > atol + rtol*|numeric| = {atol + rtol * abs(numeric[k]):.3g} "
                   f"({int((excess > 0).sum())} of {base.size} elements fail)")
            if raise_exception:
                raise GradcheckError(msg)
            return False
    return True


def _as_tuple(out, nested=False):
    """The tensors ``fn`` returned (a Tensor, or a tuple or list of them, nested), flattened."""
    if isinstance(out, Tensor):
        return (out,)
    if not isinstance(out, (tuple, list)):
        raise TypeError(f"gradcheck: fn must return a Tensor or a tuple/list of Tensors; its result "
                        f"{'holds' if nested else 'is'} a {type(out).__name__} ({out!r:.60}). Compute the "
                        f"result from the inputs with tensor ops: only a Tensor carries the graph that "
                        f"backward differentiates")
    flat = []
    for o in out:
        flat.extend(_as_tuple(o, nested=True))
    if not flat and not nested:
        raise ValueError("gradcheck: fn returned no tensors, so there is nothing to check")
    return tuple(flat)
