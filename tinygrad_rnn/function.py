"""Function: one node of the computation graph, and the switches that shape recording.

Every primitive op is a subclass with ``forward`` and ``backward`` side by side
(early tinygrad's "the Function instance is the context")::

    class Tanh(Function):
        formula = "dx = dy * (1 - y**2)"
        def forward(self, x):
            y = self.xp.tanh(x)
            self.save_for_backward(y)
            return y
        def backward(self, dy):
            (y,) = self.saved
            return dy * (1 - y * y)

``Tanh.apply(x)`` runs ``forward`` on the arrays inside the tensors and, when a
gradient is wanted, records the node: its ``parents`` (one edge per input), the
``scope`` it ran in, and the shapes of its outputs. The outputs of ops are not
kept by the graph, only the arrays an op saved for its backward (as in PyTorch),
so memory holds what backward needs.

An edge is a pair ``(node, index)``: gradient for this input flows into output
``index`` of ``node``. A leaf tensor that requires grad is represented by its
``AccumulateGrad`` node, where the gradients of all its uses are summed (the
"+=" of backpropagation through time). An input that needs no gradient
(data, a constant, a detached hidden state) is kept as ``(tensor, None)`` so
that pictures can still show it.
"""
import weakref
from contextlib import contextmanager

_new = object.__new__
# How apply makes output tensors: tensor.py sets it to its _from_op when it loads (tensor.py imports
# this module, so this one cannot import tensor.py at the top).
_tensor = None


class _State:
    """Process-wide recording switches (each is changed only by a context manager below)."""
    grad_enabled = True
    scope = ()            # e.g. ("LSTM", "layer0", "t=3", "LSTMCell")
    anomaly = False       # check every op output for NaN/inf
    retain_values = False  # keep every op's output arrays on the graph, for pictures
    weight_transposes = None  # {id(W): (W, row-major W.T)} inside reuse_weight_transposes()
    backward_passes = 0   # how many backward passes have run (nodes record it when made)
    tape = None           # a list inside nn.replay's recording: every op applied is logged there
    retain_graph = False  # during a backward pass: was retain_graph=True given (else ops may free as they go)


STATE = _State()


class NeedsInputGrad:
    """``fn.needs_input_grad``: one bool per input, does a gradient have to flow into it?

    Read off the node's edges when asked (an eager node is asked once, in its backward).
    A replayed op, whose edges never change and whose backward runs at every timestep,
    stores the tuple on itself once: an instance attribute wins over this descriptor,
    which defines no ``__set__``."""

    def __get__(self, fn, cls=None):
        if fn is None:
            return self
        return tuple([index is not None for _, index in fn.parents])


class Function:
    """Base class of all ops. Subclasses define ``forward``, ``backward`` and ``formula``.

    A node keeps ``xp`` (the array namespace), ``parents`` (one edge per input),
    ``scope``, ``out_shapes``, ``saved`` (None once freed), ``passes`` (backward passes through
    it) and ``born`` (backward passes run before it was made) in slots;
    an op's own attributes (an axis, a shape) go in its ``__dict__``.
    """

    __slots__ = ("xp", "parents", "scope", "out_shapes", "saved", "passes", "born", "__dict__")
    formula = ""            # the local derivative, for humans and for the graph renderer
    multi_output = False    # True when forward returns a tuple of arrays
    # Rarely set, so class-level defaults (an instance sets its own only when needed).
    out_hooks = None        # {output index: [hook, ...]}
    out_retained = None     # {output index: weakref to a tensor that retain_grad()}
    out_names = None        # {output index: name}
    values = None           # output arrays, kept only under retain_values()

    @classmethod
    def apply(cls, *inputs, **attrs):
        """Run the op on tensors; record it in the graph when a gradient is wanted."""
        fn = _new(cls)
        backend = inputs[0]._backend
        fn.xp = backend.xp
        fn.saved = ()
        requires_grad = False
        arrays = []
        for t in inputs:
            if t._backend is not backend:
                raise _mixed_backend_error(cls, inputs)
            if t.requires_grad:
                requires_grad = True
            arrays.append(t.data)
        try:
            out = fn.forward(*arrays, **attrs)
        except (ValueError, TypeError, IndexError) as e:  # free when nothing is raised
            raise _forward_error(fn, inputs, e) from e
        if not (requires_grad and STATE.grad_enabled):
            if STATE.anomaly:
                _observe_forward(fn, inputs, out)
            if cls.multi_output:
                outs = tuple([_tensor(o, backend, None, 0) for o in out])
            else:
                outs = _tensor(out, backend, None, 0)
            if STATE.tape is not None:
                STATE.tape.append((cls, inputs, attrs, outs))
            return outs
        parents = []
        for t in inputs:   # an edge per input (see the module docstring)
            if not t.requires_grad:
                parents.append((t, None))
            elif t._ctx is not None:
                parents.append((t._ctx, t._out_idx))
            else:
                parents.append(t._edge())
        fn.parents = tuple(parents)
        fn.scope = STATE.scope
        fn.passes = 0
        fn.born = STATE.backward_passes
        if STATE.anomaly or STATE.retain_values:
            _observe_forward(fn, inputs, out)
        if cls.multi_output:
            fn.out_shapes = tuple([o.shape for o in out])
            outs = tuple([_tensor(o, backend, fn, i) for i, o in enumerate(out)])
        else:
            fn.out_shapes = _ONE_SHAPE.get(out.shape) or _one_shape(out.shape)
            outs = _tensor(out, backend, fn, 0)
        if STATE.tape is not None:
            STATE.tape.append((cls, inputs, attrs, outs))
        return outs

    # --- what ops use -----------------------------------------------------
    def save_for_backward(self, *arrays):
        self.saved = arrays

    needs_input_grad = NeedsInputGrad()

    # --- what the engine and the visualizer use ---------------------------
    @property
    def name(self):
        """The op's short name, e.g. 'tanh' or 'matmul'."""
        return type(self).__name__.lower()

    @property
    def freed(self):
        """True once a backward pass without retain_graph has freed what was saved."""
        return self.saved is None

    def release(self):
        """Free what was saved for backward (after a backward pass without retain_graph)."""
        self.saved = None

    def add_hook(self, index, hook):
        if self.out_hooks is None:
            self.out_hooks = {}
        self.out_hooks.setdefault(index, []).append(hook)

    def retain(self, index, tensor):
        """Keep the gradient of output ``index`` on ``tensor`` (Tensor.retain_grad)."""
        if self.out_retained is None:
            self.out_retained = {}
        self.out_retained[index] = weakref.ref(tensor)
        if self.out_hooks is None:      # backward checks out_hooks alone: an empty entry is enough
            self.out_hooks = {}
        self.out_hooks.setdefault(index, [])

    def set_output_name(self, index, name):
        if self.out_names is None:
            self.out_names = {}
        self.out_names[index] = name

    def explain(self, arrays, error):
        """Why ``forward`` failed on ``arrays``, in words (ops override it to be more specific)."""
        return str(error)

    def __repr__(self):
        where = "/".join(self.scope)
        return f"<{type(self).__name__}{' in ' + where if where else ''}>"


class AccumulateGrad(Function):
    """The sink of a leaf tensor: ``x.grad += dx``, summed over every use of x.

    The node holds its tensor weakly (the tensor holds the node), so a graph
    never keeps a dead leaf alive.
    """

    formula = "x.grad += dx (summed over every use of x)"

    def __init__(self, tensor):
        self.tensor_ref = weakref.ref(tensor)
        self.xp = tensor._backend.xp
        self.parents = ()
        self.scope = ()
        self.out_shapes = (tensor.shape,)
        self.saved = ()
        self.passes = 0
        self.born = 0
        self.label = tensor.name

    @property
    def tensor(self):
        return self.tensor_ref()

    def backward(self, dx):
        t = self.tensor_ref()
        if t is not None:
            t._accumulate_grad(dx)
        return ()

    def release(self):  # a leaf's sink is reused by every backward pass
        pass


# ``out_shapes`` of one-output nodes, one tuple per distinct shape: a graph has a few shapes and many
# nodes (each tuple would cost a node about 100 bytes). Started afresh when shapes keep changing.
_ONE_SHAPE = {}


def _one_shape(shape):
    if len(_ONE_SHAPE) >= 10_000:
        _ONE_SHAPE.clear()
    _ONE_SHAPE[shape] = (shape,)
    return _ONE_SHAPE[shape]


def _observe_forward(fn, inputs, out):
    outs = out if fn.multi_output else (out,)
    if STATE.retain_values:
        fn.values = outs
    if STATE.anomaly:
        from .autograd import check_forward
        check_forward(fn, inputs, outs)


def _forward_error(fn, inputs, error):
    """An array library's error, re-raised with the op's name and what it was given."""
    kind = IndexError if isinstance(error, IndexError) else TypeError if isinstance(error, TypeError) else ValueError
    got = ", ".join(f"{tuple(t.shape)} {t.dtype}" for t in inputs)
    return kind(f"{fn.name}: {fn.explain([t.data for t in inputs], error)} (inputs: {got})")


def _mixed_backend_error(cls, inputs):
    names = sorted({t._backend.name for t in inputs})
    return ValueError(f"{cls.__name__.lower()}: all inputs must be on the same backend, got tensors on "
                      f"{' and '.join(repr(n) for n in names)}; move them with .to(name)")


# --- context managers -------------------------------------------------------
@contextmanager
def no_grad():
    """Inside, ops build no graph (for evaluation and sampling)."""
    old, STATE.grad_enabled = STATE.grad_enabled, False
    try:
        yield
    finally:
        STATE.grad_enabled = old


@contextmanager
def enable_grad():
    old, STATE.grad_enabled = STATE.grad_enabled, True
    try:
        yield
    finally:
        STATE.grad_enabled = old


def is_grad_enabled():
    return STATE.grad_enabled


class scope:
    """Nestable context: every op created inside records ``STATE.scope + names``.

    Layers run each layer, direction and timestep in a scope ("layer0", "t=3"),
    which is how the visualizer lays the unrolled graph out through time.
    ``scope("t=3", "LSTMCell")`` pushes two names at once. A small class rather
    than a generator, because layers enter one per timestep.
    """
    __slots__ = ("names", "old")

    def __init__(self, *names):
        self.names = tuple(str(n) for n in names)

    def __enter__(self):
        self.old = STATE.scope
        STATE.scope = self.old + self.names
        return self

    def __exit__(self, *exc):
        STATE.scope = self.old


def current_scope():
    return STATE.scope


@contextmanager
def detect_anomaly():
    """Inside, the first NaN or inf made in forward or backward raises an AnomalyError
    naming the op, its scope (so the timestep) and the shapes."""
    old, STATE.anomaly = STATE.anomaly, True
    try:
        yield
    finally:
        STATE.anomaly = old


@contextmanager
def reuse_weight_transposes():
    """Inside, ``linear`` makes a row-major copy of each weight's transpose once and reuses it.

    An RNN layer multiplies by the same W_hh at every timestep. BLAS computes x @ W.T
    about 1.5x slower than x @ (a row-major copy of W.T) at RNN sizes, so a layer's time
    loop runs inside this context (as hand-written BPTT transposes W_hh once per
    forward). Weights cannot change inside one forward, so the copies stay valid;
    they are dropped on exit."""
    old, STATE.weight_transposes = STATE.weight_transposes, {}
    try:
        yield
    finally:
        STATE.weight_transposes = old


@contextmanager
def retain_values():
    """Inside, every recorded op keeps its output arrays, so pictures can print the numbers
    of intermediate tensors (costs the memory of all activations; for small graphs)."""
    old, STATE.retain_values = STATE.retain_values, True
    try:
        yield
    finally:
        STATE.retain_values = old
