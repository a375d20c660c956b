"""dtypes: their names, and Python numbers, lists and arrays made into backend arrays.

The engine's dtypes are float32, float64, int64, int32 and bool, named by strings
('float32'), which compare equal across backends. ``to_array`` is what ``Tensor(data)``
does with its data: Python floats become float32 and ints int64; arrays keep float32,
float64 and int32; integers that do not fit the dtype are refused, never wrapped.
"""
import numbers

from . import backend as _backends
from .backend import host as np


def dtype_name(dtype, backend):
    """Canonical dtype name from 'float32', np.float32, np.dtype(...) or a backend dtype."""
    if dtype is None:
        return None
    if isinstance(dtype, str):
        name = dtype
    else:
        try:
            name = np.dtype(dtype).name          # NumPy and CuPy dtypes, np.float32, float, int, bool
        except TypeError:
            try:
                name = backend.dtype_name(dtype)  # e.g. array_api_strict.float32
            except TypeError:
                raise TypeError(f"dtype: expected one of {', '.join(_backends.DTYPE_NAMES)}, got {dtype!r}") from None
    if name == "float16":
        raise TypeError("float16 is not supported (its range overflows in exp/softmax and there are no "
                        "float16 kernels on CPU): use float32 or float64")
    if name not in _backends.DTYPE_NAMES:
        raise TypeError(f"dtype: expected one of {', '.join(_backends.DTYPE_NAMES)}, got {dtype!r}")
    return name


def to_array(data, dtype, backend):
    """A fresh backend array holding ``data`` (host data or an array of any backend)."""
    xp = backend.xp
    if not isinstance(data, np.ndarray) and getattr(data, "__array_namespace__", None) is not None \
            and data.__array_namespace__() is xp:
        if dtype is not None or data.dtype in backend.dtypes.values():
            return xp.asarray(data, dtype=backend.dtypes[dtype or backend.dtype_name(data.dtype)], copy=True)
        data = backend.to_numpy(data)  # another dtype (uint64, int8...): converted and checked on the host
    if not isinstance(data, np.ndarray) and hasattr(data, "get"):
        data = data.get()  # a CuPy array, to the host first
    if not isinstance(data, (np.ndarray, np.generic, list, tuple, numbers.Number)) and not hasattr(data, "__array__"):
        raise TypeError(f"Tensor: expected a number, a list, a NumPy array or a backend array, "
                        f"got {type(data).__name__}")
    try:
        a = np.asarray(data)
    except ValueError as e:   # ragged nested lists
        raise ValueError(f"Tensor: nested lists must form a rectangular array ({e})") from None
    is_array = isinstance(data, np.ndarray) or hasattr(data, "__array__")
    dtype = dtype or _infer_dtype(a, is_array)
    if dtype in _INT_RANGES:
        _check_int_range(a, dtype, is_array)
    return backend.asarray(a, dtype)


def _infer_dtype(a, is_array):
    """float32 for Python floats; arrays keep float32/float64 and int32; other integers become int64
    (when they fit: see ``_check_int_range``)."""
    if a.dtype.kind == "f":
        if is_array and a.dtype.name in ("float32", "float64"):
            return a.dtype.name
        if a.dtype.name == "float16":
            return dtype_name("float16", None)  # raises the float16 message
        return "float32"
    if a.dtype.kind in "iu":
        return "int32" if is_array and a.dtype.name == "int32" else "int64"
    if a.dtype.kind == "b":
        return "bool"
    if a.dtype.kind == "O" and a.size and all(isinstance(v, numbers.Real) for v in a.flat):
        # Python ints beyond 64 bits (NumPy keeps them as objects): alone they are int64, and
        # _check_int_range names the one that does not fit; with a float among them, float32
        return "int64" if all(isinstance(v, numbers.Integral) for v in a.flat) else "float32"
    raise TypeError(f"Tensor: expected numbers, got an array of dtype {a.dtype}")


# The integer dtypes' ranges. There is no unsigned 64-bit dtype: uint64 data (and Python ints of
# 2**63 and more, which NumPy reads as uint64) become int64 when they fit and are refused when
# they do not, rather than wrap around to negative numbers.
_INT_RANGES = {"int64": (-2 ** 63, 2 ** 63 - 1), "int32": (-2 ** 31, 2 ** 31 - 1)}


def _check_int_range(a, dtype, is_array):
    """Raise OverflowError when a value of the host array ``a`` does not fit the integer ``dtype``
    (``is_array``: ``a`` came from an array, whose dtype the message names; else from Python numbers)."""
    lo, hi = _INT_RANGES[dtype]
    kind = a.dtype.kind
    if a.size == 0 or kind not in "iufO" or (kind in "iu" and np.iinfo(a.dtype).min >= lo
                                              and np.iinfo(a.dtype).max <= hi):
        return                                   # every value of a's dtype fits
    if kind == "O":
        # (what is not a number gets NumPy's own error in backend.asarray)
        bad = [v for v in a.flat if isinstance(v, numbers.Real) and not lo <= v <= hi]
    elif kind in "iu":
        bad = [v for v in (a.min(), a.max()) if not lo <= int(v) <= hi]
    else:                                        # float -> int truncates, but must not overflow; nan fails too
        bad = [v for v in (a.min(), a.max()) if not lo <= v < hi + 1]
    if bad:
        value = bad[0].item() if isinstance(bad[0], np.generic) else bad[0]
        what = f"the {a.dtype.name} value" if is_array and kind in "uf" else "the value"
        if kind == "f":
            advice = ""
        elif dtype == "int32" and -2 ** 63 <= value < 2 ** 63:
            advice = ": use dtype='int64'"
        else:
            advice = ": there is no uint64 or wider integer dtype; pass dtype='float64' to keep it approximately"
        raise OverflowError(f"Tensor: {what} {value!r} does not fit {dtype} (range {lo} to {hi}){advice}")
