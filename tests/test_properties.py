"""Hostile input, drawn by hypothesis: random shapes (including 0-d and empty) and dtypes
(float32, float64, int64, bool) thrown at the public ops and at nn.Linear / nn.LSTM.

Every call must either give the result NumPy gives (same values, a supported dtype, and a
backward that returns a gradient of the input's shape), or raise a ValueError, TypeError or
IndexError whose message names what it was given (a shape, a dtype or an axis). A raw
NumPy / array_api_strict error leaking out, a wrong value, or a crash in backward fails.
"""
import functools
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_rnn as tg
import tinygrad_rnn.nn as nn

PROPS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
DTYPES = ["float32", "float64", "int64", "bool"]
FLOATS = ("float32", "float64")
ORDER = ["bool", "int32", "int64", "float32", "float64"]
ELEMENTS = {"float32": st.floats(-4, 4, width=32), "float64": st.floats(-4, 4),
            "int64": st.integers(-3, 3), "bool": st.booleans()}
any_shape = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)
axes = st.integers(-4, 3)


@st.composite
def arrays(draw, shape=any_shape, dtypes=st.sampled_from(DTYPES)):
    dtype = draw(dtypes)
    shape = draw(shape) if not isinstance(shape, tuple) else shape
    return draw(hnp.arrays(np.dtype(dtype), shape, elements=ELEMENTS[dtype]))


def tensor(a):
    """The tensor for array ``a``; floats require grad so that backward is exercised too."""
    return tg.Tensor(a, requires_grad=a.dtype.kind == "f")


def promote(*dtypes):
    target = max(dtypes, key=ORDER.index)
    if target in ("int32", "int64") and "bool" in dtypes:
        target = "int64"
    return target


def informative(error, *arrays, extra=()):
    """Is ``error`` one of ours, naming what it was given?"""
    if not isinstance(error, (ValueError, TypeError, IndexError)):
        return False
    message = str(error)
    names = [str(tuple(a.shape)) for a in arrays] + [str(a.dtype) for a in arrays] + list(extra)
    return any(n in message for n in names)


def check(run, reference, inputs, rtol=1e-5, atol=1e-6, errors=()):
    """``run()`` must match ``reference()`` (a NumPy array, or an exception NumPy raised), or raise
    an informative error. ``errors``: extra words that make an error message informative."""
    try:
        expected = reference()
    except (ValueError, TypeError, IndexError, ZeroDivisionError) as e:
        expected = e
    try:
        out = run()
    except (ValueError, TypeError, IndexError) as e:
        assert informative(e, *inputs, extra=errors), f"unhelpful error: {type(e).__name__}: {e}"
        # Refusing is only right where NumPy refuses too (an op that refused everything fails here),
        # or for bool arithmetic and ordering on array_api_strict, which the Array API standard forbids.
        standard_forbids = (tg.get_backend().name == "array_api_strict"
                            and any(str(a.dtype) == "bool" for a in inputs) and "bool" in str(e))
        documented_limit = "index in two steps" in str(e)    # integer arrays mixed with slices (README)
        assert isinstance(expected, Exception) or standard_forbids or documented_limit, \
            f"NumPy computed a result, but we raised {type(e).__name__}: {e}"
        return None
    assert not isinstance(expected, Exception), f"NumPy raised {expected!r}, we returned {out!r}"
    outs = out if isinstance(out, (tuple, list)) else (out,)
    refs = expected if isinstance(expected, (tuple, list)) else (expected,)
    assert len(outs) == len(refs)
    for o, r in zip(outs, refs):
        r = np.asarray(r)
        assert o.dtype in ORDER, o.dtype     # never an unsupported dtype like int8
        assert o.shape == r.shape, (o.shape, r.shape)
        got = o.numpy()
        if got.dtype == np.float32:
            r = r.astype(np.float32)     # what float32 arithmetic gives (1 / 1e-40 overflows to inf)
        if r.dtype.kind in "fc" or got.dtype.kind == "f":
            np.testing.assert_allclose(got.astype(np.float64), r.astype(np.float64), rtol=rtol, atol=atol)
        else:
            np.testing.assert_array_equal(got, r)
    # backward through whatever came out: a gradient of each float input's shape, or none
    leaves = [t for t in inputs if t.requires_grad]
    wired = [o for o in outs if o.requires_grad]
    if wired:
        sum(o.sum() for o in wired).backward()
        for t in leaves:
            assert t.grad is None or t.grad.shape == t.shape
    return out


def make(*arrays_):
    tensors = [tensor(a) for a in arrays_]
    return tensors if len(tensors) > 1 else tensors[0]


def quiet(fn):
    """NumPy warns on overflow, 0/0, log(-1), mean of nothing: all expected here."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            return fn(*args, **kwargs)
    return wrapper


def tol(*dtypes):
    return (1e-12, 1e-12) if all(d == "float64" for d in dtypes) else (2e-5, 2e-5)


# ------------------------------------------------------------------ binary ops
pairs = st.one_of(
    hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=0, max_side=3)
    .map(lambda s: s.input_shapes),
    st.tuples(any_shape, any_shape))


@st.composite
def two_arrays(draw):
    sa, sb = draw(pairs)
    return draw(arrays(shape=sa)), draw(arrays(shape=sb))


def _np_binary(name, a, b):
    target = promote(str(a.dtype), str(b.dtype))
    if name == "div":
        return np.divide(a.astype(np.float64), b.astype(np.float64))
    if name == "pow":
        if target == "bool":
            target = "int64"
        if target in FLOATS:
            return np.power(a.astype(np.float64), b.astype(np.float64))
        return np.power(a.astype(target), b.astype(target))
    if target == "bool" and name == "sub":
        return np.subtract(a, b)      # NumPy refuses: so must we
    wide = "float64" if target in FLOATS else target
    fn = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "matmul": np.matmul}[name]
    return fn(a.astype(wide), b.astype(wide))


@pytest.mark.parametrize("name, fn", [("add", lambda x, y: x + y), ("sub", lambda x, y: x - y),
                                      ("mul", lambda x, y: x * y), ("div", lambda x, y: x / y),
                                      ("pow", lambda x, y: x ** y), ("matmul", lambda x, y: x @ y)])
@PROPS
@given(ab=two_arrays())
@quiet
def test_binary_ops(backend, name, fn, ab):
    a, b = ab
    x, y = make(a, b)
    out = check(lambda: fn(x, y), lambda: _np_binary(name, a, b), [x, y], *tol(str(a.dtype), str(b.dtype)),
                errors=("matmul: cannot multiply",))
    if out is not None:
        target = promote(str(a.dtype), str(b.dtype))
        if name in ("div",) and target not in FLOATS:
            target = "float32"
        if name == "pow" and target == "bool":
            target = "int64"
        assert out.dtype == target, (name, a.dtype, b.dtype, out.dtype)


@pytest.mark.parametrize("op", ["__lt__", "__le__", "__eq__", "__ne__", "__gt__"])
@PROPS
@given(ab=two_arrays())
@quiet
def test_comparisons(backend, op, ab):
    a, b = ab
    x, y = make(a, b)
    out = check(lambda: getattr(x, op)(y), lambda: getattr(np.asarray(a, dtype=object), op)(b).astype(bool)
                if a.size and b.size else getattr(a.astype(np.float64), op)(b.astype(np.float64)), [x, y])
    if out is not None:
        assert out.dtype == "bool" and not out.requires_grad


@PROPS
@given(ab=two_arrays(), c=arrays(dtypes=st.sampled_from(["bool", "bool", "float32"])))
@quiet
def test_where(backend, ab, c):
    a, b = ab
    x, y = make(a, b)
    cond = tg.Tensor(c)

    def reference():
        if c.dtype != bool:
            raise TypeError("cond must be bool")
        wide = promote(str(a.dtype), str(b.dtype))
        return np.where(c, a.astype(wide), b.astype(wide))
    check(lambda: tg.where(cond, x, y), reference, [x, y, cond], *tol(str(a.dtype), str(b.dtype)))


@PROPS
@given(ab=two_arrays(), axis=axes)
@quiet
def test_concat_and_stack(backend, ab, axis):
    a, b = ab
    x, y = make(a, b)

    def same_dtype(fn):
        def reference():
            if a.dtype != b.dtype:
                raise TypeError("one dtype")
            return fn()
        return reference
    check(lambda: tg.concat([x, y], axis), same_dtype(lambda: np.concatenate([a, b], axis=axis)), [x, y],
          errors=(f"axis {axis}",))
    check(lambda: tg.stack([x, y], axis), same_dtype(lambda: np.stack([a, b], axis=axis)), [x, y],
          errors=(f"axis {axis}",))


# ------------------------------------------------------------------ one-input ops
def _f(a):
    """What a function of the reals computes in: float64 for float64 input, else float32."""
    return a.astype(np.float64)


UNARY = {
    "neg": (lambda x: -x, lambda a: np.negative(a)),
    "exp": (lambda x: x.exp(), lambda a: np.exp(_f(a))),
    "log": (lambda x: x.log(), lambda a: np.log(_f(a))),
    "tanh": (lambda x: x.tanh(), lambda a: np.tanh(_f(a))),
    "sigmoid": (lambda x: x.sigmoid(), lambda a: 1 / (1 + np.exp(-_f(a)))),
    "relu": (lambda x: x.relu(), lambda a: np.maximum(a, np.zeros((), a.dtype))),
    "sqrt": (lambda x: x.sqrt(), lambda a: np.sqrt(_f(a))),
    "abs": (lambda x: x.abs(), lambda a: np.abs(a)),
    "square": (lambda x: x ** 2, lambda a: np.power(a.astype("int64") if a.dtype == bool else a, 2)),
    "half_power": (lambda x: x ** 0.5, lambda a: np.power(_f(a), 0.5)),
    "rsub": (lambda x: 1 - x, lambda a: 1 - (a.astype("int64") if a.dtype == bool else a)),
    "scale": (lambda x: x * 2.5, lambda a: _f(a) * 2.5),
}


@pytest.mark.parametrize("name", list(UNARY))
@PROPS
@given(a=arrays())
@quiet
def test_elementwise(backend, name, a):
    fn, reference = UNARY[name]
    x = make(a)
    out = check(lambda: fn(x), lambda: reference(a), [x], *tol(str(a.dtype)))
    if out is not None and name in ("exp", "log", "tanh", "sigmoid", "sqrt", "half_power", "scale"):
        assert out.dtype == ("float64" if a.dtype == np.float64 else "float32")


@PROPS
@given(a=arrays(), lo=st.floats(-3, 0) | st.integers(-3, 0), width=st.floats(0, 4))
@quiet
def test_clip(backend, a, lo, width):
    hi = lo + width
    x = make(a)
    check(lambda: x.clip(lo, hi), lambda: np.clip(_f(a) if isinstance(lo, float) or a.dtype.kind == "f"
                                                    else a.astype("int64"), lo, hi), [x], *tol(str(a.dtype)))


def _np_softmax(a, axis, log):
    a = _f(a)
    m = a.max(axis=axis, keepdims=True)
    y = a - m - np.log(np.exp(a - m).sum(axis=axis, keepdims=True))
    return y if log else np.exp(y)


@pytest.mark.parametrize("log", [False, True])
@PROPS
@given(a=arrays(), axis=axes)
@quiet
def test_softmax(backend, log, a, axis):
    x = make(a)
    check(lambda: x.log_softmax(axis) if log else x.softmax(axis), lambda: _np_softmax(a, axis, log), [x],
          *tol(str(a.dtype)), errors=(f"axis {axis}",))


def _np_reduce(name, a, axis, keepdims):
    if a.ndim == 0 and axis is not None and all(k in (0, -1) for k in np.atleast_1d(axis)):
        axis = None           # as PyTorch: dim 0 or -1 of a 0-d tensor is the tensor itself
    if name == "sum":
        return np.sum(a.astype("int64") if a.dtype == bool else a, axis=axis, keepdims=keepdims)
    if name == "mean":
        return np.mean(_f(a), axis=axis, keepdims=keepdims)
    return np.max(a, axis=axis, keepdims=keepdims)


@pytest.mark.parametrize("name", ["sum", "mean", "max"])
@PROPS
@given(a=arrays(), axis=st.none() | axes | st.tuples(axes, axes), keepdims=st.booleans())
@quiet
def test_reductions(backend, name, a, axis, keepdims):
    x = make(a)
    check(lambda: getattr(x, name)(axis=axis, keepdims=keepdims), lambda: _np_reduce(name, a, axis, keepdims),
          [x], *tol(str(a.dtype)), errors=("axis",))


@PROPS
@given(a=arrays(), shape=st.lists(st.integers(-1, 4), max_size=3))
@quiet
def test_reshape(backend, a, shape):
    x = make(a)
    check(lambda: x.reshape(*shape), lambda: a.reshape(shape), [x], errors=(str(tuple(shape)),))


@PROPS
@given(a=arrays(), perm=st.lists(axes, max_size=4))
@quiet
def test_transpose(backend, a, perm):
    x = make(a)
    args = tuple(perm)

    def reference():
        if len(args) == 2:
            return np.swapaxes(a, *args)
        return np.transpose(a, args if args else None)
    check(lambda: x.transpose(*args), reference, [x], errors=("axis", "permutation"))


index_parts = st.one_of(st.integers(-4, 4), st.slices(4), st.none(), st.just(Ellipsis),
                        st.lists(st.integers(-4, 4), min_size=0, max_size=3))


@PROPS
@given(a=arrays(), key=st.lists(index_parts, min_size=1, max_size=3))
@quiet
def test_getitem(backend, a, key):
    x = make(a)
    key = tuple(key)

    def reference():
        return a[tuple(np.asarray(k, dtype=np.int64) if isinstance(k, list) else k for k in key)]
    # some NumPy index mixes are refused on purpose ("index in two steps instead")
    check(lambda: x[key], reference, [x], errors=("index", "indices"))


@PROPS
@given(a=arrays(), axis=axes, size=st.integers(-1, 3), chunks=st.integers(-1, 3))
@quiet
def test_split_chunk_unbind(backend, a, axis, size, chunks):
    x = make(a)

    def pieces(step):
        n = a.shape[axis]
        return [np.take(a, np.arange(i, min(i + step, n)), axis=axis) for i in range(0, n, step)]

    def split_ref():
        if size <= 0:
            raise ValueError("size")
        return pieces(size)

    def chunk_ref():
        if chunks <= 0:
            raise ValueError("chunks")
        n = a.shape[axis]
        return pieces(max(-(-n // chunks), 1)) if n else []

    words = (f"axis {axis}", "size", "chunk")
    check(lambda: x.split(size, axis=axis), split_ref, [x], errors=words)
    check(lambda: x.chunk(chunks, axis=axis), chunk_ref, [x], errors=words)
    check(lambda: x.unbind(axis), lambda: [np.take(a, i, axis=axis) for i in range(a.shape[axis])], [x],
          errors=words)


@PROPS
@given(a=arrays(), dtype=st.sampled_from(DTYPES + ["float16", "int8"]))
@quiet
def test_cast(backend, a, dtype):
    x = make(a)

    def reference():
        if dtype in ("float16", "int8"):
            raise TypeError(dtype)
        return a.astype(dtype)
    out = check(lambda: x.astype(dtype), reference, [x], errors=(dtype,))
    if out is not None:
        assert out.dtype == dtype and out.requires_grad == (dtype in FLOATS and a.dtype.kind == "f")


@PROPS
@given(a=arrays(), p=st.floats(0, 0.9))
@quiet
def test_dropout(backend, a, p):
    x = make(a)
    try:
        y = x.dropout(p)
    except TypeError as e:
        assert a.dtype.kind != "f" and str(a.dtype) in str(e)
        return
    out = y.numpy()
    assert y.shape == a.shape and y.dtype == str(a.dtype)
    kept = out != 0
    np.testing.assert_allclose(out[kept], a[kept] / (1 - p), rtol=1e-5)


@PROPS
@given(a=arrays(), axis=st.none() | axes, keepdims=st.booleans())
@quiet
def test_argmax(backend, a, axis, keepdims):
    x = make(a)
    out = check(lambda: x.argmax(axis=axis, keepdims=keepdims),
                lambda: np.argmax(a.astype("int64") if a.dtype == bool else a, axis=axis, keepdims=keepdims),
                [x], errors=("axis", "empty"))
    if out is not None:
        assert out.dtype == "int64" and not out.requires_grad


@PROPS
@given(a=arrays(), axis=axes, shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=3))
@quiet
def test_unsqueeze_squeeze_expand(backend, a, axis, shape):
    x = make(a)
    check(lambda: x.unsqueeze(axis), lambda: np.expand_dims(a, axis), [x], errors=(f"axis {axis}",))

    def squeezed():
        if a.ndim and not -a.ndim <= axis < a.ndim:
            raise IndexError("axis")
        return a if a.ndim == 0 or a.shape[axis] != 1 else np.squeeze(a, axis)   # PyTorch: a no-op if not 1
    check(lambda: x.squeeze(axis), squeezed, [x], errors=(f"axis {axis}",))
    check(lambda: x.expand(*shape), lambda: np.broadcast_to(a, shape), [x], errors=(str(shape),))


@PROPS
@given(W=arrays(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4)),
       ids=arrays(shape=hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=3),
                  dtypes=st.sampled_from(["int64", "int64", "float32", "bool"])))
@quiet
def test_embedding_function(backend, W, ids):
    w, i = tensor(W), tg.Tensor(ids)

    def reference():
        if ids.dtype.kind != "i":
            raise TypeError("ids")
        if W.ndim != 2:                      # PyTorch's rule: an embedding table is (num_embeddings, dim)
            raise ValueError("weight")
        return W[ids]
    check(lambda: tg.embedding(w, i), reference, [w, i], errors=("index", "ids", "num_embeddings"))


@PROPS
@given(x=arrays(shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)),
       W=arrays(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=3)),
       b=st.none() | arrays(shape=hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3)))
@quiet
def test_linear_function(backend, x, W, b):
    xt, Wt = make(x, W)
    bt = None if b is None else tensor(b)
    inputs = [xt, Wt] + ([bt] if bt is not None else [])

    def reference():
        if W.ndim != 2 or x.shape[-1:] != W.shape[1:]:
            raise ValueError("shapes")
        if len({str(a.dtype) for a in (x, W) + (() if b is None else (b,))}) > 1:
            raise TypeError("dtypes")
        y = np.matmul(x.astype(np.float64), W.T.astype(np.float64)) if x.dtype.kind == "f" else x @ W.T
        return y if b is None else y + b
    check(lambda: tg.linear(xt, Wt, bt), reference, inputs, *tol(str(x.dtype)), errors=("linear: expected",))


# ------------------------------------------------------------------ layers
@PROPS
@given(x=arrays(shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)),
       in_features=st.integers(1, 4), out_features=st.integers(1, 3), bias=st.booleans())
@quiet
def test_linear_layer(backend, x, in_features, out_features, bias):
    layer = nn.Linear(in_features, out_features, bias=bias)
    W = layer.weight.numpy()
    b = layer.bias.numpy() if bias else 0.0
    xt = make(x)

    def reference():
        if x.shape[-1:] != (in_features,):
            raise ValueError("shape")
        if x.dtype != np.float32:
            raise TypeError("dtype")
        return x @ W.T + b
    check(lambda: layer(xt), reference, [xt], 1e-5, 1e-5, errors=(f"(..., {in_features})",))
    if layer.weight.grad is not None:
        assert layer.weight.grad.shape == (out_features, in_features)


def np_lstm(layer, x, batch_first):
    """PyTorch's LSTM equations in NumPy (gates i, f, g, o)."""
    W_ih, W_hh = layer.weight_ih_l0.numpy(), layer.weight_hh_l0.numpy()
    b = layer.bias_ih_l0.numpy() + layer.bias_hh_l0.numpy()
    unbatched = x.ndim == 2
    if unbatched:
        x = x[:, None]
    elif batch_first:
        x = x.swapaxes(0, 1)
    H = W_hh.shape[1]
    h = np.zeros((x.shape[1], H), np.float32)
    c = np.zeros_like(h)
    outs = []
    for x_t in x:
        z = x_t @ W_ih.T + h @ W_hh.T + b
        i, f, g, o = np.split(z, 4, axis=-1)
        sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
        c = sig(f) * c + sig(i) * np.tanh(g)
        h = sig(o) * np.tanh(c)
        outs.append(h)
    out = np.stack(outs)
    if unbatched:
        return out[:, 0], h[None, 0], c[None, 0]
    if batch_first:
        out = out.swapaxes(0, 1)
    return out, h[None], c[None]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(x=arrays(shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=3),
                dtypes=st.sampled_from(DTYPES + ["float32", "float32"])),
       input_size=st.integers(1, 3), hidden=st.integers(1, 3), batch_first=st.booleans())
@quiet
def test_lstm_layer(backend, x, input_size, hidden, batch_first):
    layer = nn.LSTM(input_size, hidden, batch_first=batch_first)
    xt = make(x)

    def reference():
        time_axis = 1 if batch_first and x.ndim == 3 else 0
        if x.ndim not in (2, 3) or x.shape[-1] != input_size or x.dtype != np.float32 or x.shape[time_axis] == 0:
            raise ValueError("bad input")
        return np_lstm(layer, x, batch_first)      # a batch of 0 sequences is fine

    def run():
        out, (h, c) = layer(xt)
        return out, h, c
    check(run, reference, [xt], 1e-5, 1e-5, errors=(f"{input_size} features", "empty", "expected input of shape"))


# ------------------------------------------------------------------ messages
def test_informative_rejects_raw_library_errors():
    """The acceptance rule itself: a bare NumPy message naming nothing we passed is not enough."""
    a = np.zeros((3, 4), np.float32)
    assert not informative(ValueError("operands could not be broadcast together"), a)
    assert informative(ValueError("add: ... (inputs: (3, 4) float32, (5, 2) float32)"), a)
    assert not informative(RuntimeError("(3, 4)"), a)
