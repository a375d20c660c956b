"""Initialisation of parameters (every draw comes from the backend's seeded generator).

The recurrent matrix W_hh sets how gradients behave through time: backprop
from h_t to h_{t-1} multiplies by W_hh^T (and the tanh derivative), so after k
steps the gradient scales like (spectral radius of W_hh)^k. ``orthogonal`` and
``identity`` make that radius exactly ``gain``, so students can put it below,
at or above 1 and watch gradients vanish or explode.
"""
import math
import numbers

from ..backend import get_backend, host as np
from ..tensor import Tensor


def check_sizes(who, **sizes):
    """Refuse a layer size that is not an int of at least its minimum, before any parameter is made.

    ``check_sizes("LSTM", input_size=(input_size, 0), hidden_size=(hidden_size, 1))``: each size
    is given as (value, minimum). Without this a size of 0 or -2 fails deep in the initialiser
    (1/sqrt(0), a negative shape) with a message that names neither the layer nor the size."""
    for name, (value, minimum) in sizes.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{who}: {name} must be an int, got {type(value).__name__} {value!r}")
        if value < minimum:
            rule = "cannot be negative" if minimum == 0 else f"must be at least {minimum}"
            raise ValueError(f"{who}: {name} {rule}, got {value}")


def uniform(shape, bound, dtype="float32", backend=None):
    """U(-bound, bound): PyTorch's default for Linear and the recurrent layers (bound = 1/sqrt(fan))."""
    b = get_backend(backend)
    return Tensor._wrap(b.uniform(shape, -bound, bound, dtype), b)


def normal(shape, std=1.0, dtype="float32", backend=None):
    b = get_backend(backend)
    return Tensor._wrap(std * b.randn(shape, dtype), b)


def orthogonal(n, gain=1.0, dtype="float32", backend=None):
    """An n x n orthogonal matrix times ``gain`` (all singular values = gain)."""
    b = get_backend(backend)
    a = np.asarray(Tensor._wrap(b.randn((n, n), "float64"), b).numpy())
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))  # a uniformly random rotation, not one biased by QR's sign choice
    return Tensor._wrap(b.asarray(gain * q, dtype), b)


def identity(n, gain=1.0, dtype="float32", backend=None):
    """``gain`` times the n x n identity (Le et al. 2015's IRNN)."""
    b = get_backend(backend)
    return Tensor._wrap(b.asarray(gain * np.eye(n), dtype), b)


def recurrent_matrix(kind, hidden_size, n_blocks, gain=1.0, dtype="float32", backend=None):
    """W_hh of shape (n_blocks * H, H): one (H, H) block per gate, each built by ``kind``.

    kind: "default" (U(-1/sqrt(H), 1/sqrt(H)), PyTorch's), "orthogonal" or "identity" (each block
    then has spectral radius exactly ``gain``). ``gain`` multiplies the default one too."""
    H = hidden_size
    if kind == "default":
        return uniform((n_blocks * H, H), gain / math.sqrt(H), dtype, backend)
    if kind not in ("orthogonal", "identity"):
        raise ValueError(f"init: expected 'default', 'orthogonal' or 'identity', got {kind!r}")
    make = orthogonal if kind == "orthogonal" else identity
    blocks = [make(H, gain, dtype, backend).numpy() for _ in range(n_blocks)]
    b = get_backend(backend)
    return Tensor._wrap(b.asarray(np.concatenate(blocks, axis=0), dtype), b)
