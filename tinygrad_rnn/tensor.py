"""Tensor: an array of a backend, and the op that made it.

A tensor is a leaf (made by the user: data, parameters) or the output of an
op, in which case ``_ctx`` is that op's graph node and ``_out_idx`` says which
of its outputs this is. Arithmetic on tensors calls the ops in ``ops.py``;
``backward()`` hands the graph to ``autograd.backward``.
"""
import copy
import numbers

from .backend import host as np

from . import backend as _backends
from . import dtypes as _dtypes
from . import ops
from .autograd import backward as _backward
from .function import AccumulateGrad
from .indexing import normalized_key

_new = object.__new__


class Tensor:
    """A PyTorch-like tensor: ``Tensor(data, requires_grad=False, dtype=None, backend=None, name=None)``.

    ``data`` may be a Python scalar or (nested) list, a NumPy array or an array of a
    backend; it is copied. Python floats become float32 and Python ints int64;
    arrays keep float32/float64 and int32 (as ``torch.tensor(np_array)``). ``dtype`` takes
    'float32', 'float64', 'int64', 'int32', 'bool' or a NumPy dtype.
    """

    # What every tensor sets lives in slots; what only some set lives in __dict__ with a class default,
    # so making an op's output is six stores.
    __slots__ = ("data", "requires_grad", "_ctx", "_out_idx", "_backend", "_name", "__dict__", "__weakref__")
    grad = None     # a Tensor after backward (leaves, and retain_grad())
    _accum = None   # a leaf's AccumulateGrad node, made at its first recorded use
    _sink = None    # the edge (_accum, 0) that every recorded use of the leaf points at
    _cut = None     # for a detach()ed tensor: (op name, scope, name) of where the graph was cut
    __array_priority__ = 100  # numpy scalars/arrays on the left defer to our operators

    def __init__(self, data, requires_grad=False, dtype=None, backend=None, name=None):
        if isinstance(data, Tensor):
            backend = _backends.get_backend(backend) if backend is not None else data._backend
            data = data.data if backend is data._backend else data.numpy()
        else:
            backend = _backends.get_backend(backend)
        self._backend = backend
        dtype = _dtypes.dtype_name(dtype, backend)
        self.data = _dtypes.to_array(data, dtype, backend)
        self.requires_grad = False
        self._ctx = None
        self._out_idx = 0
        self._name = name
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _wrap(cls, array, backend, requires_grad=False):
        """Fast path: a leaf around an existing backend array (no copy, no checks)."""
        t = _new(cls)
        t.data = array
        t.requires_grad = requires_grad
        t._ctx = None
        t._out_idx = 0
        t._backend = backend
        t._name = None
        return t

    def _from_op(self, array, ctx, index):
        """A tensor for output ``index`` of op node ``ctx`` (None: the op was not recorded).
        ``Function.apply`` makes its outputs with this method of its first input."""
        t = _new(Tensor)
        t.data = array
        t.requires_grad = ctx is not None
        t._ctx = ctx
        t._out_idx = index
        t._backend = self._backend
        t._name = None
        return t

    def _edge(self):
        """How the graph refers to this tensor as an op input (see function.py)."""
        if not self.requires_grad:
            return (self, None)
        if self._ctx is not None:
            return (self._ctx, self._out_idx)
        edge = self._sink
        if edge is None:          # made once: every use of a weight shares the one edge
            self._accum = AccumulateGrad(self)
            edge = self._sink = (self._accum, 0)
        return edge

    def __deepcopy__(self, memo):
        """``copy.deepcopy`` of a leaf (data, a parameter): the same kind of tensor with its own copy
        of the numbers, its .grad and name, and no graph yet. As in PyTorch, a tensor made by an op
        cannot be deep-copied (its graph would come along): detach() it first."""
        if self._ctx is not None:
            raise RuntimeError(f"deepcopy: only tensors made by the user (graph leaves) can be deep-copied; this "
                               f"one was made by {self._ctx.name}. Deep-copy tensor.detach() instead")
        new = _new(type(self))
        memo[id(self)] = new
        new.data = self._backend.xp.asarray(self.data, copy=True)
        new.requires_grad, new._ctx, new._out_idx, new._backend, new._name = \
            self.requires_grad, None, 0, self._backend, self._name
        for key, value in self._extras().items():
            setattr(new, key, copy.deepcopy(value, memo))
        return new

    def __reduce_ex__(self, protocol):
        """``pickle``: the numbers as a host NumPy array, the backend by name, requires_grad, name,
        .grad; no graph, so a tensor made by an op comes back as a leaf (as PyTorch's does)."""
        return (_unpickled, (type(self), self.numpy(), self._backend.name, self.requires_grad, self._name,
                             self._extras()))

    def _extras(self):
        """What deepcopy and pickle carry over besides the numbers: .grad and the like, and a
        subclass's own slots (Parameter's); not the sink that ties a leaf to graphs already built."""
        extras = {key: value for key, value in vars(self).items() if key not in ("_accum", "_sink")}
        for cls in type(self).__mro__[:type(self).__mro__.index(Tensor)]:
            for slot in cls.__dict__.get("__slots__", ()):
                if hasattr(self, slot):
                    extras[slot] = getattr(self, slot)
        return extras

    # --- properties -------------------------------------------------------
    @property
    def shape(self):
        return self.data.shape

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def dtype(self):
        """The dtype's name: 'float32', 'float64', 'int64', 'int32' or 'bool'."""
        return self._backend.dtype_name(self.data.dtype)

    @property
    def device(self):
        """The backend's name: 'numpy', 'cupy' or 'array_api_strict'."""
        return self._backend.name

    @property
    def backend(self):
        return self._backend

    @property
    def is_leaf(self):
        return self._ctx is None

    @property
    def grad_fn(self):
        """The graph node that made this tensor (None for a leaf)."""
        return self._ctx

    @property
    def name(self):
        return self._name

    @name.setter
    def name(self, value):
        self._name = value
        if self._ctx is not None:
            self._ctx.set_output_name(self._out_idx, value)
        elif self._accum is not None:
            self._accum.label = value

    @property
    def is_floating_point(self):
        return self.dtype in _backends.FLOAT_DTYPES

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[dim]

    def numel(self):
        n = 1
        for s in self.shape:
            n *= s
        return n

    def dim(self):
        return self.ndim

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    # --- host access ------------------------------------------------------
    def numpy(self):
        """A host NumPy copy of the data (from any backend)."""
        return self._backend.to_numpy(self.data)

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def item(self):
        if self.numel() != 1:
            raise ValueError(f"item(): expected a tensor with one element, got shape {self.shape}")
        return self.numpy().reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def __bool__(self):
        if self.numel() != 1:
            raise ValueError(f"the truth value of a tensor of shape {self.shape} is ambiguous; use .any() or .all()")
        return bool(self.item())

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self.dtype not in ("int64", "int32") or self.numel() != 1:
            raise TypeError(f"only integer tensors of one element can be used as an index, got {self.dtype} {self.shape}")
        return int(self.item())

    def __repr__(self):
        body = np.array2string(self.numpy(), separator=", ", threshold=20, edgeitems=2, precision=4,
                               prefix="Tensor(")
        extras = [f"shape={self.shape}", f"dtype={self.dtype}"]
        if self._backend.name != "numpy":
            extras.append(f"device={self._backend.name!r}")
        if self.requires_grad:
            extras.append(f"grad_fn={self._ctx.name}" if self._ctx is not None else "requires_grad=True")
        if self._name:
            extras.append(f"name={self._name!r}")
        return f"Tensor({body}, {', '.join(extras)})"

    __hash__ = object.__hash__  # hashable by identity although == is elementwise, as in PyTorch

    # --- autograd ---------------------------------------------------------
    def requires_grad_(self, requires_grad=True):
        if requires_grad and not self.is_floating_point:
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {self.dtype}")
        if self._ctx is not None and not requires_grad:
            raise RuntimeError("requires_grad_(False) on a non-leaf tensor: use .detach()")
        self.requires_grad = bool(requires_grad)
        return self

    def detach(self):
        """The same data, cut from the graph: no gradient flows back through it.

        Truncated BPTT carries ``h = h.detach()`` from one chunk to the next. The
        result remembers where the cut was (op and scope), so pictures can draw it.
        """
        t = Tensor._wrap(self.data, self._backend)
        t._name = self._name
        if self._ctx is not None:
            t._cut = (self._ctx.name, self._ctx.scope, self._name)
        return t

    def backward(self, grad=None, retain_graph=False):
        """Compute d(self)/d(leaf) for every leaf that requires grad, accumulating into ``leaf.grad``."""
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad: no input of the "
                               "ops that made it has requires_grad=True (or it was made under no_grad())")
        if grad is None:
            if self.numel() != 1:
                raise RuntimeError(f"backward() without grad= needs a scalar output, got shape {self.shape}; "
                                   f"pass grad= with that shape (or reduce with .sum() / .mean())")
            grad = self._backend.xp.ones(self.data.shape, dtype=self.data.dtype)
        else:
            grad = _as_grad_array(grad, self)
        node, index = self._edge()
        _backward([(node, index, grad)], retain_graph=retain_graph)

    def _accumulate_grad(self, dx):
        """Called by this leaf's AccumulateGrad node."""
        if self.grad is None:  # a copy: dx may be shared with other gradients, or a broadcast view
            self.grad = Tensor._wrap(self._backend.xp.asarray(dx, copy=True), self._backend)
        else:
            self.grad = Tensor._wrap(self.grad.data + dx, self._backend)

    def retain_grad(self):
        """Keep ``.grad`` on this non-leaf tensor after backward (leaves always keep theirs).
        It is the gradient after any hooks registered on this tensor."""
        if self._ctx is not None:
            self._ctx.retain(self._out_idx, self)
        return self

    def register_hook(self, hook):
        """``hook(grad_array)`` sees the total gradient of this tensor in each backward pass;
        if it returns an array (or a Tensor), that replaces the gradient. It must keep the
        gradient's shape, dtype and backend (as in PyTorch: "hook has changed the type of value")."""
        if not self.requires_grad:
            raise RuntimeError("register_hook on a tensor that does not require grad")
        if not callable(hook):
            raise TypeError(f"register_hook: expected a function grad -> new grad or None, got {type(hook).__name__}")
        node, index = self._edge()
        node.add_hook(index, lambda dy: _checked_hook_result(hook, hook(dy), dy, self))
        return hook

    def zero_grad(self):
        self.grad = None

    # --- moving and casting -----------------------------------------------
    def to(self, target):
        """A copy on another backend ('numpy'/'cpu', 'cupy'/'cuda', 'array_api_strict'), or a cast
        when ``target`` is a dtype ('float64', np.float64, ...). The copy is a leaf with the same
        requires_grad."""
        if not isinstance(target, (str, _backends.Backend)) or target in _backends.DTYPE_NAMES \
                or target == "float16":
            return self.astype(target)
        try:
            b = _backends.get_backend(target)
        except ValueError:
            raise ValueError(f"to: expected a backend (numpy/cpu, cupy/cuda, array_api_strict) or a dtype "
                             f"({', '.join(_backends.DTYPE_NAMES)}), got {target!r}") from None
        if b is self._backend:
            return self
        t = Tensor._wrap(b.asarray(self.numpy(), self.dtype), b)
        t._name = self._name
        if self.requires_grad:
            t.requires_grad = True
        return t

    def cpu(self):
        return self.to("numpy")

    def astype(self, dtype):
        dtype = _dtypes.dtype_name(dtype, self._backend)
        if dtype == self.dtype:
            return self
        if dtype not in _backends.FLOAT_DTYPES:   # integer and bool tensors never require grad
            return Tensor._wrap(self._backend.xp.astype(self.data, self._backend.dtypes[dtype]), self._backend)
        return ops.Cast.apply(self, dtype=self._backend.dtypes[dtype])

    def float(self):
        return self.astype("float32")

    def double(self):
        return self.astype("float64")

    def long(self):
        return self.astype("int64")

    # --- arithmetic (each is one op in the graph) --------------------------
    def __add__(self, other):
        return _binary(ops.Add, self, other)

    def __radd__(self, other):
        return _binary(ops.Add, self._lift(other), self)

    def __sub__(self, other):
        return _binary(ops.Sub, self, other)

    def __rsub__(self, other):
        return _binary(ops.Sub, self._lift(other), self)

    def __mul__(self, other):
        return _binary(ops.Mul, self, other)

    def __rmul__(self, other):
        return _binary(ops.Mul, self._lift(other), self)

    def __truediv__(self, other):
        return _divide(self, other)

    def __rtruediv__(self, other):
        return _divide(self._lift(other), self)

    def __matmul__(self, other):
        return _binary(ops.MatMul, self, other)

    def __rmatmul__(self, other):
        return _binary(ops.MatMul, self._lift(other), self)

    def lerp(self, end, weight):
        """self + weight * (end - self), as one op (``torch.lerp``): weight 0 gives self, 1 gives end.
        ``end`` and ``weight`` are tensors of self's float dtype or numbers; shapes broadcast."""
        if self.dtype not in _backends.FLOAT_DTYPES:
            raise TypeError(f"lerp: expected a float tensor, got {self.dtype}")
        end, weight = self._lift(end), self._lift(weight)
        for what, t in (("end", end), ("weight", weight)):
            if t.dtype != self.dtype:
                raise TypeError(f"lerp: {what} must have the input's dtype {self.dtype}, got {t.dtype}")
        return ops.Lerp.apply(self, end, weight)

    def __pow__(self, exponent):
        if isinstance(exponent, (Tensor, list, tuple, np.ndarray)):
            return _power(self, exponent)
        if isinstance(exponent, (numbers.Integral, np.bool_)):
            return ops.Pow.apply(self.astype("int64") if self.dtype == "bool" else self, exponent=int(exponent))
        if isinstance(exponent, numbers.Real):  # int ** 0.5 is a float, as in PyTorch
            return ops.Pow.apply(_float(self), exponent=float(exponent))
        raise TypeError(f"** expects a number or a tensor exponent, got {type(exponent).__name__}")

    def __rpow__(self, base):
        return _power(self._lift(base), self)

    def __neg__(self):
        return ops.Neg.apply(self)

    # comparisons: no gradient, bool results
    def __lt__(self, other):
        return self._compare("less", other)

    def __le__(self, other):
        return self._compare("less_equal", other)

    def __gt__(self, other):
        return self._compare("greater", other)

    def __ge__(self, other):
        return self._compare("greater_equal", other)

    def __eq__(self, other):
        return self._compare("equal", other)

    def __ne__(self, other):
        return self._compare("not_equal", other)

    def _compare(self, name, other):
        a, b = self, self._lift(other)
        _check_backends(name, a, b)
        if a.data.dtype != b.data.dtype:
            a, b = _promote(name, a, b)
        try:
            return Tensor._wrap(getattr(self._backend.xp, name)(a.data, b.data), self._backend)
        except ValueError as e:
            raise ValueError(f"{name}: cannot compare shapes {a.shape} and {b.shape} ({e})") from e

    def _lift(self, value):
        """A Python number or array becomes a constant tensor of this tensor's backend.

        Numbers take this tensor's dtype, except that a float joining an integer tensor
        makes it float32 and an int joining a bool tensor makes it int64 (PyTorch's rules)."""
        if isinstance(value, Tensor):
            return value
        if isinstance(value, float):                 # the common case first: h * 0.5
            dtype = self.dtype
            if dtype not in _backends.FLOAT_DTYPES:
                dtype = "float32"
        elif isinstance(value, (numbers.Number, np.generic)):
            dtype = self.dtype
            if isinstance(value, (bool, np.bool_)):
                value = bool(value)
                if dtype != "bool":
                    value = int(value)
            elif isinstance(value, numbers.Integral):
                value = int(value)
                if dtype == "bool":
                    dtype = "int64"
            elif isinstance(value, numbers.Real):
                value = float(value)
                if dtype not in _backends.FLOAT_DTYPES:
                    dtype = "float32"
            else:
                raise TypeError(f"expected a real number or a tensor, got {value!r}")
        else:
            return Tensor(value, backend=self._backend, dtype=None)
        return Tensor._wrap(self._backend.xp.asarray(value, dtype=self._backend.dtypes[dtype]), self._backend)

    # --- elementwise functions --------------------------------------------
    def exp(self):
        return ops.Exp.apply(_float(self))

    def log(self):
        return ops.Log.apply(_float(self))

    def tanh(self):
        return ops.Tanh.apply(_float(self))

    def sigmoid(self):
        return ops.Sigmoid.apply(_float(self))

    def relu(self):
        return ops.ReLU.apply(self)

    def sqrt(self):
        return ops.Sqrt.apply(_float(self))

    def abs(self):
        return ops.Abs.apply(self)

    def clip(self, min=None, max=None):
        """Elementwise clamp to [min, max]; the gradient passes where min <= x <= max."""
        if min is None and max is None:
            raise ValueError("clip() needs min or max")
        for bound in (min, max):
            if bound is not None and not isinstance(bound, (numbers.Real, np.generic)):
                raise TypeError(f"clip: min and max must be numbers, got {type(bound).__name__} "
                                f"(for elementwise bounds use where())")
        x = self
        if isinstance(min, float) or isinstance(max, float):   # an int tensor clipped at 0.5 is float
            x = _float(self)
        return ops.Clip.apply(x, lo=min, hi=max)

    clamp = clip

    def softmax(self, axis=-1, dim=None):
        return ops.Softmax.apply(_float(self), axis=_axis(axis, dim, -1))

    def log_softmax(self, axis=-1, dim=None):
        return ops.LogSoftmax.apply(_float(self), axis=_axis(axis, dim, -1))

    # --- reductions -------------------------------------------------------
    def sum(self, axis=None, keepdims=False, dim=None, keepdim=None):
        """Sum over ``axis`` (all axes by default); bools count as int64, as in PyTorch."""
        x = self.astype("int64") if self.dtype == "bool" else self
        return ops.Sum.apply(x, axis=_norm_axes(_axis(axis, dim), self.ndim), keepdims=_keep(keepdims, keepdim))

    def mean(self, axis=None, keepdims=False, dim=None, keepdim=None):
        """Mean over ``axis`` (all axes by default); integer tensors give float32."""
        return ops.Mean.apply(_float(self), axis=_norm_axes(_axis(axis, dim), self.ndim),
                              keepdims=_keep(keepdims, keepdim))

    def max(self, axis=None, keepdims=False, dim=None, keepdim=None):
        """Maximum over ``axis`` (all axes by default); ties share the gradient equally."""
        return ops.Max.apply(self, axis=_norm_axes(_axis(axis, dim), self.ndim), keepdims=_keep(keepdims, keepdim))

    def argmax(self, axis=None, dim=None, keepdims=False):
        """Index of the maximum over ``axis`` (of the flattened tensor by default); int64, no gradient."""
        xp = self._backend.xp
        ax = _axis(axis, dim)
        data = self.data if self.dtype != "bool" else xp.astype(self.data, xp.int64)
        flat = ax is None or (self.ndim == 0 and ax in (0, -1))   # a 0-d tensor takes axis 0, as PyTorch
        if flat:
            data, ax = xp.reshape(data, (self.numel(),)), 0
        else:
            ax = _check_axis("argmax", ax, self.ndim)
        if data.shape[ax] == 0:
            raise ValueError(f"argmax: the axis to search is empty (tensor of shape {self.shape})")
        out = xp.argmax(data, axis=ax, keepdims=keepdims)
        if keepdims and flat:
            out = xp.reshape(out, (1,) * self.ndim)
        return Tensor._wrap(out, self._backend)

    def any(self):
        return bool(self._backend.xp.any(self.data))

    def all(self):
        return bool(self._backend.xp.all(self.data))

    # --- shapes -----------------------------------------------------------
    def reshape(self, *shape):
        """``reshape(2, 6)`` or ``reshape((2, 6))``; one dimension may be -1."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = shape[0]
        shape = tuple(int(s) for s in shape)
        if shape == self.shape:
            return self
        return ops.Reshape.apply(self, shape=shape)

    view = reshape

    def flatten(self):
        return self.reshape(-1)

    def transpose(self, *axes):
        """No arguments: reverse the axes (NumPy). Two axes: swap them (PyTorch). A tuple: a permutation."""
        n = self.ndim
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            perm = tuple(axes[0])
        elif len(axes) == 0:
            perm = tuple(reversed(range(n)))
        elif len(axes) == 2:
            a, b = (_check_axis("transpose", x, n) for x in axes)
            perm = list(range(n))
            perm[a], perm[b] = perm[b], perm[a]
            perm = tuple(perm)
        else:
            perm = tuple(axes)
        perm = tuple(_check_axis("transpose", p, n) for p in perm)
        if sorted(perm) != list(range(n)):
            raise ValueError(f"transpose: {axes} is not a permutation of the {n} axes of shape {self.shape}")
        return ops.Permute.apply(self, perm=perm)

    def permute(self, *dims):
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        return self.transpose(tuple(dims))

    @property
    def T(self):
        return self.transpose()

    @property
    def mT(self):
        return self.transpose(-2, -1)

    def unsqueeze(self, axis):
        axis = _check_axis("unsqueeze", axis, self.ndim + 1)
        return self.reshape(self.shape[:axis] + (1,) + self.shape[axis:])

    def squeeze(self, axis=None):
        if axis is None:
            return self.reshape(tuple(s for s in self.shape if s != 1))
        if self.ndim == 0:
            return self
        axis = _check_axis("squeeze", axis, self.ndim)
        if self.shape[axis] != 1:
            return self
        return self.reshape(self.shape[:axis] + self.shape[axis + 1:])

    def expand(self, *shape):
        """Broadcast to ``shape``; -1 keeps a size (the gradient is summed back)."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        lead = len(shape) - self.ndim
        shape = tuple(int(s) for s in shape[:max(lead, 0)]) + tuple(
            n if s == -1 else int(s) for s, n in zip(shape[max(lead, 0):], self.shape))
        if lead < 0 or any(s < 0 for s in shape) or any(n not in (1, s) for s, n in zip(shape[lead:], self.shape)):
            raise ValueError(f"expand: cannot expand shape {self.shape} to {shape}")
        xp = self._backend.xp
        return self + Tensor._wrap(xp.zeros(shape, dtype=self.data.dtype), self._backend)

    def __getitem__(self, key):
        return ops.GetItem.apply(self, key=normalized_key(_index_key(key, self), self.shape))

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return iter(self.unbind(0))

    def split(self, split_size_or_sections, axis=0, dim=None):
        """PyTorch's split: chunks of size ``n`` (the last may be smaller), or a list of sizes."""
        axis = _check_axis("split", _axis(axis, dim, 0), self.ndim)
        n = self.shape[axis]
        if isinstance(split_size_or_sections, int):
            size = split_size_or_sections
            if size <= 0:
                raise ValueError(f"split: size must be positive, got {size}")
            sizes = [size] * (n // size) + ([n % size] if n % size else [])
        else:
            sizes = [int(s) for s in split_size_or_sections]
            if sum(sizes) != n or any(s < 0 for s in sizes):
                raise ValueError(f"split: expected sizes >= 0 adding up to {n} (the length of axis {axis}), "
                                 f"got {sizes}")
        return ops.Split.apply(self, sizes=tuple(sizes), axis=axis)

    def chunk(self, chunks, axis=0, dim=None):
        """Split into ``chunks`` pieces of equal size (the last may be smaller), as PyTorch."""
        if type(chunks) is not int and (isinstance(chunks, bool) or not isinstance(chunks, numbers.Integral)) \
                or chunks <= 0:
            raise ValueError(f"chunk: the number of chunks must be a positive int, got {chunks!r}")
        axis = _check_axis("chunk", _axis(axis, dim, 0), self.ndim)
        n = self.shape[axis]
        size = max(-(-n // chunks), 1)     # an empty axis gives no pieces
        return self.split(size, axis=axis)

    def unbind(self, axis=0, dim=None):
        """All slices along ``axis`` as a tuple, in one op (its backward stacks the gradients)."""
        return ops.Unbind.apply(self, axis=_check_axis("unbind", _axis(axis, dim, 0), self.ndim))

    # --- misc ops -----------------------------------------------------------
    def dropout(self, p=0.5, training=True):
        """Zero each element with probability p and scale the rest by 1/(1-p) (inverted dropout)."""
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        if not training or p == 0:
            return self
        if not self.is_floating_point:
            raise TypeError(f"dropout: expected a floating-point tensor, got {self.dtype}")
        b = self._backend
        keep = b.rand(self.shape, self.dtype) >= p
        mask = Tensor._wrap(b.xp.astype(keep, self.data.dtype) / (1 - p), b)
        mask._name = "dropout mask"
        return self * mask


# --- helpers --------------------------------------------------------------------
def _unpickled(cls, array, backend_name, requires_grad, name, extras):
    """A tensor back from ``pickle`` (see Tensor.__reduce_ex__)."""
    backend = _backends.get_backend(backend_name)
    t = _new(cls)
    t.data = backend.asarray(array, array.dtype.name)
    t.requires_grad, t._ctx, t._out_idx, t._backend, t._name = requires_grad, None, 0, backend, name
    for key, value in extras.items():
        setattr(t, key, value)
    return t


def _as_grad_array(grad, like):
    g = grad if isinstance(grad, Tensor) else Tensor(grad, dtype=like.dtype, backend=like._backend)
    _check_backends("backward", like, g)
    if g.shape != like.shape:
        raise ValueError(f"backward: grad has shape {g.shape}, expected the output's shape {like.shape}")
    return g.data if g.dtype == like.dtype else like._backend.xp.astype(g.data, like.data.dtype)


def _check_backends(what, *tensors):
    names = {t._backend.name for t in tensors}
    if len(names) > 1:
        raise ValueError(f"{what}: all inputs must be on the same backend, got tensors on "
                         f"{' and '.join(repr(n) for n in sorted(names))}; move them with .to(name)")


def _float(t):
    """Integer and bool tensors become float32 for functions of the reals (exp, mean, ...), as in PyTorch."""
    return t if t.data.dtype in t._backend.float_dtypes else t.astype("float32")


def _divide(a, b):
    """True division: integers divide to float32, as in PyTorch."""
    if not isinstance(b, Tensor):
        b = a._lift(b)
    if a._backend is not b._backend or a.data.dtype != b.data.dtype:
        a, b = _promote(ops.Div, a, b)
    if a.data.dtype not in a._backend.float_dtypes:
        a, b = a.astype("float32"), b.astype("float32")
    return ops.Div.apply(a, b)


def _power(x, w):
    """x ** w with a tensor exponent; a bool base counts as int64 (NumPy would make int8)."""
    if x.dtype == "bool":
        x = x.astype("int64")
    return _binary(ops.Power, x, w)


def _binary(op, a, b):
    if not isinstance(b, Tensor):
        b = a._lift(b)
    if a._backend is not b._backend or a.data.dtype != b.data.dtype:
        a, b = _promote(op, a, b)
    return op.apply(a, b)


def _promote(op, a, b):
    """Mixed dtypes, as PyTorch: ints and bools join floats; float32 with float64 gives float64."""
    _check_backends(op if isinstance(op, str) else op.__name__.lower(), a, b)
    ka, kb = a.dtype, b.dtype
    order = ["bool", "int32", "int64", "float32", "float64"]
    target = max(ka, kb, key=order.index)
    if target in ("int32", "int64") and "bool" in (ka, kb):
        target = "int64"
    return a.astype(target), b.astype(target)


def _axis(axis, dim, default=None):
    """Reductions take NumPy's ``axis`` and accept PyTorch's ``dim``."""
    if dim is not None:
        if axis not in (None, default) and axis != dim:
            raise TypeError(f"got both axis={axis} and dim={dim}")
        return dim
    return axis if axis is not None else default


def _keep(keepdims, keepdim):
    return bool(keepdim) if keepdim is not None else bool(keepdims)


def _check_axis(what, axis, ndim):
    """``axis`` in [-ndim, ndim) as a non-negative int, or an IndexError naming both."""
    if type(axis) is not int and (isinstance(axis, bool) or not isinstance(axis, (int, np.integer))):
        raise TypeError(f"{what}: axis must be an int, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise IndexError(f"{what}: axis {axis} is out of range for a tensor with {ndim} dimensions "
                         f"(expected {-ndim} <= axis < {ndim})")
    return int(axis) % ndim


def _norm_axes(axis, ndim):
    if axis is None:
        return None
    axes = (int(axis),) if isinstance(axis, (int, np.integer)) else tuple(int(a) for a in axis)
    for a in axes:
        if not -max(ndim, 1) <= a < max(ndim, 1):     # a 0-d tensor takes axis 0 or -1, as in PyTorch
            raise IndexError(f"axis {a} is out of range for a tensor with {ndim} dimensions")
    return tuple(sorted(a % ndim for a in axes)) if ndim else ()


def _index_key(key, t):
    """Turn tensors, lists and NumPy arrays in an index into backend integer arrays."""
    if not isinstance(key, tuple):
        key = (key,)
    out = []
    for k in key:
        if isinstance(k, Tensor):
            if k.dtype == "bool":
                raise IndexError("boolean-mask indexing gives a data-dependent shape; use where() instead")
            if k.dtype not in ("int64", "int32"):
                raise IndexError(f"index tensors must be integer, got {k.dtype}")
            _check_backends("indexing", t, k)
            out.append(k.data)
        elif isinstance(k, (list, np.ndarray)):
            a = np.asarray(k)
            if a.dtype.kind == "b":
                raise IndexError("boolean-mask indexing gives a data-dependent shape; use where() instead")
            if a.size and a.dtype.kind not in "iu":
                raise IndexError(f"index arrays must be integer, got {a.dtype}")
            out.append(t._backend.asarray(a, "int64"))
        elif isinstance(k, (int, np.integer)) and not isinstance(k, bool):
            out.append(int(k))
        elif k is None or k is Ellipsis or isinstance(k, slice):
            out.append(k)
        else:
            raise IndexError(f"unsupported index {k!r}: use ints, slices, None, ..., or integer arrays")
    return tuple(out)


def _checked_hook_result(hook, new, dy, t):
    """What a hook returned, as a gradient array like ``dy`` (or None: keep ``dy``). As PyTorch, a hook
    may not change the gradient's type: its dtype, shape or backend."""
    if new is None:
        return None
    if isinstance(new, Tensor):
        new = new.data
    if isinstance(new, np.generic) and isinstance(dy, np.ndarray):    # NumPy makes 0-d results scalars
        new = np.asarray(new)
    who = f"a hook on {repr(t.name) if t.name else t._ctx.name if t._ctx is not None else 'a leaf tensor'}"
    if type(new) is not type(dy):
        raise TypeError(f"{who} returned {type(new).__name__}: expected None, a Tensor or a {t.device} array like "
                        f"the gradient it was given (hook has changed the type of value)")
    if new.dtype != dy.dtype:
        got = t._backend.dtype_name(new.dtype) if new.dtype in t._backend.dtypes.values() else new.dtype
        raise TypeError(f"{who} returned a gradient of dtype {got}, expected {t.dtype} "
                        f"(hook has changed the type of value)")
    if tuple(new.shape) != tuple(dy.shape):
        raise ValueError(f"{who} returned a gradient of shape {tuple(new.shape)}, expected {tuple(dy.shape)}")
    return new
