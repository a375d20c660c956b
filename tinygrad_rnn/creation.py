"""Making tensors: zeros, ones, full, arange, eye, randn, rand, randint and the *_like forms.

Every function takes ``dtype`` (default float32; arange of ints gives int64),
``backend`` (default: the active backend) and ``requires_grad``. Random draws
come from the backend's generator, which ``manual_seed(n)`` resets.
"""
from . import backend as _backends
from .dtypes import dtype_name
from .tensor import Tensor


def _shape(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    shape = tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ValueError(f"negative dimension in shape {shape}")
    return shape


def _make(array, backend, requires_grad, name=None):
    t = Tensor._wrap(array, backend)
    t._name = name
    if requires_grad:
        t.requires_grad_(True)
    return t


def _setup(dtype, backend, default="float32"):
    b = _backends.get_backend(backend)
    return b, dtype_name(dtype, b) or default


def zeros(*shape, dtype=None, backend=None, requires_grad=False, name=None):
    b, dt = _setup(dtype, backend)
    return _make(b.xp.zeros(_shape(shape), dtype=b.dtypes[dt]), b, requires_grad, name)


def ones(*shape, dtype=None, backend=None, requires_grad=False, name=None):
    b, dt = _setup(dtype, backend)
    return _make(b.xp.ones(_shape(shape), dtype=b.dtypes[dt]), b, requires_grad, name)


def full(shape, fill_value, dtype=None, backend=None, requires_grad=False, name=None):
    b, dt = _setup(dtype, backend)
    return _make(b.xp.full(_shape((shape,)), fill_value, dtype=b.dtypes[dt]), b, requires_grad, name)


def eye(n, m=None, dtype=None, backend=None, requires_grad=False, name=None):
    b, dt = _setup(dtype, backend)
    return _make(b.xp.eye(n, m, dtype=b.dtypes[dt]), b, requires_grad, name)


def arange(start, stop=None, step=1, dtype=None, backend=None, requires_grad=False):
    """Like NumPy: integers give int64, any float gives float32."""
    if stop is None:
        start, stop = 0, start
    is_int = all(isinstance(v, int) for v in (start, stop, step))
    b, dt = _setup(dtype, backend, default="int64" if is_int else "float32")
    return _make(b.xp.arange(start, stop, step, dtype=b.dtypes[dt]), b, requires_grad)


def _float_setup(what, dtype, backend):
    b, dt = _setup(dtype, backend)
    if dt not in _backends.FLOAT_DTYPES:
        raise TypeError(f"{what}: random floats need dtype float32 or float64, got {dt} (for integers: randint)")
    return b, dt


def randn(*shape, dtype=None, backend=None, requires_grad=False, name=None):
    """Standard normal samples."""
    b, dt = _float_setup("randn", dtype, backend)
    return _make(b.randn(_shape(shape), dt), b, requires_grad, name)


def rand(*shape, dtype=None, backend=None, requires_grad=False, name=None):
    """Uniform samples in [0, 1)."""
    b, dt = _float_setup("rand", dtype, backend)
    return _make(b.rand(_shape(shape), dt), b, requires_grad, name)


def uniform(shape, low, high, dtype=None, backend=None, requires_grad=False, name=None):
    """Uniform samples in [low, high)."""
    b, dt = _float_setup("uniform", dtype, backend)
    return _make(b.uniform(_shape((shape,)), low, high, dt), b, requires_grad, name)


def randint(low, high, shape, backend=None):
    """Integers uniformly from [low, high), int64."""
    b = _backends.get_backend(backend)
    return _make(b.randint(low, high, _shape((shape,))), b, False)


def tensor(data, requires_grad=False, dtype=None, backend=None, name=None):
    """Same as ``Tensor(...)`` (PyTorch's spelling)."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype, backend=backend, name=name)


def _like(fn, t, dtype, requires_grad, *args):
    return fn(*args, dtype=dtype or t.dtype, backend=t._backend, requires_grad=requires_grad)


def zeros_like(t, dtype=None, requires_grad=False):
    return _like(zeros, t, dtype, requires_grad, t.shape)


def ones_like(t, dtype=None, requires_grad=False):
    return _like(ones, t, dtype, requires_grad, t.shape)


def full_like(t, fill_value, dtype=None, requires_grad=False):
    return _like(full, t, dtype, requires_grad, t.shape, fill_value)


def randn_like(t, dtype=None, requires_grad=False):
    return _like(randn, t, dtype, requires_grad, t.shape)


def rand_like(t, dtype=None, requires_grad=False):
    return _like(rand, t, dtype, requires_grad, t.shape)
