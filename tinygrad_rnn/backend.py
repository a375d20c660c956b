"""Backends: the only module that imports NumPy, CuPy or array_api_strict.

The engine computes with ``xp``, the Python Array API namespace of a backend
(``numpy`` itself, ``cupy``, or ``array_api_strict``), and with the handful of
extras below that the standard lacks: random numbers, a scatter-add, copies
to and from the host, and dtype names. One small class per backend.

``array_api_strict`` is not for users: the test suite runs the engine on it to
prove that nothing NumPy-only (and so possibly missing on CuPy) sneaks in.
"""
import os
import types

import numpy as np

host = np  # the host array library, for conversions and printing in other modules

DTYPE_NAMES = ("float32", "float64", "int64", "int32", "bool")
FLOAT_DTYPES = ("float32", "float64")
ALIASES = {"cpu": "numpy", "np": "numpy", "cuda": "cupy", "gpu": "cupy"}
ENV_VAR = "TINYGRAD_RNN_BACKEND"


class Backend:
    """A backend: its Array API namespace ``xp`` plus the extras the engine needs."""

    name = "?"

    def __init__(self, xp, seed=0):
        self.xp = xp
        self.dtypes = {n: self.dtype_of(n) for n in DTYPE_NAMES}
        self._dtype_names = {v: n for n, v in self.dtypes.items()}
        self.float_dtypes = frozenset(self.dtypes[n] for n in FLOAT_DTYPES)  # for quick `in` tests
        self.seed(seed)

    def __deepcopy__(self, memo):
        return self          # one backend per name and process: a deep-copied tensor stays on it

    def __reduce__(self):
        return (get_backend, (self.name,))     # pickled by name, the same backend when loaded

    def dtype_of(self, name):
        """The dtype object this backend's arrays report for ``name``."""
        return getattr(self.xp, name)

    def __repr__(self):
        return f"<backend {self.name}>"

    def dtype_name(self, dtype):
        """The canonical name ('float32', 'int64', ...) of one of this backend's dtypes."""
        name = self._dtype_names.get(dtype)
        if name is None:
            raise TypeError(f"unsupported dtype {dtype}: tinygrad_rnn supports {', '.join(DTYPE_NAMES)}")
        return name

    # --- host <-> backend -------------------------------------------------
    def asarray(self, data, dtype_name):
        """A fresh backend array holding ``data`` (host data or an array of this backend)."""
        return self.xp.asarray(np.array(data, dtype=dtype_name, copy=True))

    def to_numpy(self, a):
        """A host NumPy copy of a backend array."""
        return np.array(a, copy=True)

    # --- random numbers ---------------------------------------------------
    def seed(self, n):
        self.rng = np.random.default_rng(n)

    def randn(self, shape, dtype_name):
        return self.xp.asarray(self.rng.standard_normal(shape).astype(dtype_name))

    def rand(self, shape, dtype_name):
        return self.xp.asarray(self.rng.random(shape).astype(dtype_name))

    def randint(self, low, high, shape):
        return self.xp.asarray(self.rng.integers(low, high, size=shape, dtype=np.int64))

    def uniform(self, shape, low, high, dtype_name):
        return self.xp.asarray(self.rng.uniform(low, high, size=shape).astype(dtype_name))

    def transposed_copy(self, a):
        """a.T as a row-major array (the Array API has no memory order: a plain transpose)."""
        return self.xp.matrix_transpose(a)

    def base_of(self, a):
        """The array whose memory the view ``a`` shares, or None (also when the library cannot say:
        the Array API has no such notion, so ``array_api_strict`` answers None)."""
        return None

    # --- scatter-add ------------------------------------------------------
    def index_add(self, shape, axis, index, values):
        """zeros(shape) with ``values`` added at positions ``index`` along ``axis``.

        ``index`` is a 1-D integer array and may repeat: repeats add up. This is
        the backward of gathering rows (embedding lookup, integer indexing).
        """
        raise NotImplementedError

    def take_along_axis(self, x, index, axis):
        """x's entries at ``index`` along ``axis`` (the standard's ``take_along_axis``)."""
        return self.xp.take_along_axis(x, index, axis=axis)

    def put_along_axis(self, shape, index, values, axis):
        """zeros(shape) with ``values`` put at ``index`` along ``axis``: the backward of
        ``take_along_axis``. ``index`` and ``values`` have size 1 along ``axis`` and the full
        size elsewhere; every index is in [0, shape[axis]).

        In the standard: compare every position along ``axis`` with the index (a one-hot
        mask) and keep the values where it matches."""
        xp = self.xp
        n = shape[axis]
        positions = xp.reshape(xp.arange(n, dtype=index.dtype), (n,) + (1,) * (len(shape) - axis - 1))
        zero = xp.zeros((), dtype=values.dtype)
        return xp.where(index == positions, values, zero)

    def add_along_axis(self, x, index, values, axis):
        """x plus ``values`` at ``index`` along ``axis`` (as ``put_along_axis``); may write into x,
        which must be the caller's own array."""
        return x + self.put_along_axis(x.shape, index, values, axis)

    def write(self, out, f, *args):
        """``f(*args)`` written into ``out`` (the caller's own array, e.g. a row of a bigger one),
        and returned; a new array when ``out`` is None. The standard has no ``out=``: compute,
        then copy."""
        if out is None:
            return f(*args)
        out[...] = f(*args)
        return out


def numpy_namespace():
    """NumPy's functions as the engine calls them, with the few used at almost every op
    (sum, max, mean, reshape, matrix_transpose, astype, unstack along axis 0) sent straight to
    the array's own methods. NumPy's module-level versions are Python wrappers around those
    methods and cost 1-4 µs more per call: as much as the arithmetic on an RNN step's arrays.
    Everything else is NumPy's own function."""
    xp = types.SimpleNamespace(**{name: getattr(np, name) for name in dir(np) if not name.startswith("__")})
    xp.__name__ = "numpy (tinygrad_rnn)"
    xp.sum = lambda x, /, *, axis=None, dtype=None, keepdims=False: x.sum(axis=axis, dtype=dtype, keepdims=keepdims)
    xp.max = lambda x, /, *, axis=None, keepdims=False: x.max(axis=axis, keepdims=keepdims)
    xp.mean = lambda x, /, *, axis=None, keepdims=False: x.mean(axis=axis, keepdims=keepdims)
    xp.reshape = lambda x, /, shape, *, copy=None: np.reshape(x, shape, copy=copy) if copy else x.reshape(shape)
    xp.matrix_transpose = lambda x, /: x.swapaxes(-1, -2)
    xp.astype = lambda x, dtype, /, *, copy=True: x.astype(dtype, copy=copy)
    xp.unstack = lambda x, /, *, axis=0: tuple(x) if axis == 0 else np.unstack(x, axis=axis)
    return xp


class NumpyBackend(Backend):
    name = "numpy"

    def __init__(self, seed=0):
        super().__init__(numpy_namespace(), seed)

    def dtype_of(self, name):   # arrays report np.dtype objects, not the scalar types np.float32 etc.
        return np.dtype(name)

    def asarray(self, data, dtype_name):
        return np.array(data, dtype=dtype_name, copy=True)

    def randn(self, shape, dtype_name):
        return self.rng.standard_normal(shape, dtype=np.dtype(dtype_name)) if dtype_name in FLOAT_DTYPES \
            else super().randn(shape, dtype_name)

    def rand(self, shape, dtype_name):
        return self.rng.random(shape, dtype=np.dtype(dtype_name)) if dtype_name in FLOAT_DTYPES \
            else super().rand(shape, dtype_name)

    def index_add(self, shape, axis, index, values):
        out = np.zeros(shape, dtype=values.dtype)
        np.add.at(out, (slice(None),) * axis + (index,), values)
        return out

    # NumPy's take_along_axis and put_along_axis build an index grid in Python (4-5 µs a call);
    # for (N, C) arrays along axis 1 (class scores) one fancy index does it in about 1 µs
    def take_along_axis(self, x, index, axis):
        if x.ndim == 2 and axis == 1:
            return x[np.arange(x.shape[0])[:, None], index]
        return np.take_along_axis(x, index, axis=axis)

    def put_along_axis(self, shape, index, values, axis):
        # one write per index instead of a comparison at every position: 10x faster on (1600, 65)
        out = np.zeros(shape, dtype=values.dtype)
        if len(shape) == 2 and axis == 1:
            out[np.arange(shape[0])[:, None], index] = values
        else:
            np.put_along_axis(out, index, values, axis)
        return out

    def write(self, out, f, *args):     # NumPy's functions (ufuncs) write there themselves (out=None: a new array)
        return f(*args, out=out)

    def add_along_axis(self, x, index, values, axis):     # in place: no (N, C) zeros to fill
        if x.ndim == 2 and axis == 1:
            x[np.arange(x.shape[0])[:, None], index] += values
        else:
            np.put_along_axis(x, index, np.take_along_axis(x, index, axis=axis) + values, axis)
        return x

    def transposed_copy(self, a):
        return np.ascontiguousarray(a.T)

    def base_of(self, a):
        return a.base


class StrictBackend(Backend):
    """``array_api_strict``: the Array API standard and nothing else (for tests)."""

    name = "array_api_strict"

    def __init__(self, seed=0):
        import array_api_strict
        super().__init__(array_api_strict, seed)

    def to_numpy(self, a):
        return np.array(np.asarray(a), copy=True)

    def index_add(self, shape, axis, index, values):
        # Without a scatter in the standard: a one-hot matrix times the values.
        xp = self.xp
        values = xp.moveaxis(values, axis, 0)
        n = values.shape[0]
        rest = values.shape[1:]
        m = 1
        for size in rest:
            m *= size
        index = index % shape[axis]   # -1 means the last row, as in x[idx]
        one_hot = xp.astype(xp.arange(shape[axis], dtype=index.dtype)[:, None] == index[None, :], values.dtype)
        out = one_hot @ xp.reshape(values, (n, m))
        return xp.moveaxis(xp.reshape(out, (shape[axis],) + rest), 0, axis)


class CupyBackend(Backend):
    """CuPy on an NVIDIA GPU, through ``array_api_compat.cupy`` (the Array API over CuPy's arrays).
    Every array stays on the device; ``to_numpy`` copies to the host."""

    name = "cupy"

    def __init__(self, seed=0):
        try:
            import cupy
        except ImportError as e:
            raise RuntimeError(
                "the 'cupy' backend needs CuPy: pip install 'tinygrad_rnn[cuda12]' "
                "(or cupy-cuda11x / cupy-cuda12x matching your CUDA)") from e
        try:
            n_gpus = cupy.cuda.runtime.getDeviceCount()
        except Exception as e:  # CUDA driver missing or broken
            raise RuntimeError(f"the 'cupy' backend found no usable CUDA device ({e})") from e
        if n_gpus == 0:
            raise RuntimeError("the 'cupy' backend found no CUDA device on this machine")
        try:  # CuPy's own namespace follows NumPy; array_api_compat makes it the Array API standard
            import array_api_compat.cupy as xp
        except ImportError as e:
            raise RuntimeError("the 'cupy' backend needs array-api-compat: pip install 'tinygrad_rnn[cuda12]'") from e
        self.cupy = cupy
        super().__init__(xp, seed)

    def dtype_of(self, name):   # CuPy arrays report NumPy dtype objects, as on the numpy backend
        return np.dtype(name)

    def asarray(self, data, dtype_name):
        if isinstance(data, self.cupy.ndarray):
            return data.astype(dtype_name, copy=True)
        return self.cupy.asarray(np.array(data, dtype=dtype_name))

    def to_numpy(self, a):
        return self.cupy.asnumpy(a)

    def seed(self, n):
        self.rng = self.cupy.random.default_rng(n)

    def randn(self, shape, dtype_name):
        return self.rng.standard_normal(shape, dtype=dtype_name)

    def rand(self, shape, dtype_name):
        return self.rng.random(shape, dtype=dtype_name)

    def randint(self, low, high, shape):
        return self.rng.integers(low, high, size=shape, dtype=self.cupy.int64)

    def uniform(self, shape, low, high, dtype_name):
        return self.rng.uniform(low, high, size=shape, dtype=dtype_name)

    def transposed_copy(self, a):
        return self.cupy.ascontiguousarray(a.T)

    def base_of(self, a):
        return a.base

    def index_add(self, shape, axis, index, values):
        import cupyx
        out = self.cupy.zeros(shape, dtype=values.dtype)
        cupyx.scatter_add(out, (slice(None),) * axis + (index,), values)
        return out


_CLASSES = {"numpy": NumpyBackend, "array_api_strict": StrictBackend, "cupy": CupyBackend}
_instances = {}
_default = None
_seed = 0


def canonical_name(name):
    """'cpu' -> 'numpy', 'cuda' -> 'cupy'; raise on an unknown name."""
    key = ALIASES.get(str(name).lower(), str(name).lower())
    if key not in _CLASSES:
        raise ValueError(f"unknown backend {name!r}: expected one of numpy (cpu), cupy (cuda), array_api_strict")
    return key


def get_backend(name=None):
    """The backend called ``name``, or the default one (set_backend / $TINYGRAD_RNN_BACKEND / numpy)."""
    global _default
    if name is None:
        if _default is None:
            _default = get_backend(os.environ.get(ENV_VAR, "numpy"))
        return _default
    if isinstance(name, Backend):
        return name
    key = canonical_name(name)
    if key not in _instances:
        _instances[key] = _CLASSES[key](seed=_seed)
    return _instances[key]


def set_backend(name):
    """Make ``name`` the backend of newly created tensors; returns it."""
    global _default
    _default = get_backend(name)
    return _default


def backend_of(xp):
    """The backend whose array namespace is ``xp`` (ops use it for the extras: index_add, ...)."""
    for backend in _instances.values():
        if backend.xp is xp:
            return backend
    raise RuntimeError(f"no backend computes with the namespace {xp!r}; make backends with get_backend(name)")


def manual_seed(n):
    """Seed the random generator of every backend, so every random draw is reproducible."""
    global _seed
    _seed = int(n)
    for backend in _instances.values():
        backend.seed(_seed)


def get_rng_state():
    """The random state of every created backend (host backends only), for checkpoints."""
    return {name: b.rng.bit_generator.state for name, b in _instances.items() if name != "cupy"}


def set_rng_state(state):
    for name, s in state.items():
        get_backend(name).rng.bit_generator.state = s
