"""Function: one node of the computation graph. The whole idea of reverse mode:

    forward:  y = op(x, w)           run the op on arrays, and remember the node that made y
    backward: dx, dw = op'(dy)        each node turns the gradient of its output into
                                      gradients of its inputs (the chain rule, one op at a time)

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

``Tanh.apply(x)`` runs ``forward`` on the array inside the tensor and, when a
gradient is wanted, records the node: its ``parents`` (one edge per input), the
``scope`` it ran in (the layer and timestep), and the shapes of its outputs. The
graph keeps what each op saved for backward, not the intermediate tensors (as
PyTorch does), so memory holds what backward needs. ``autograd.py`` walks the
nodes back from the loss.

An edge is a pair ``(node, index)``: the gradient for this input flows into output
``index`` of ``node``. A leaf tensor that requires grad is represented by its
``AccumulateGrad`` node, where the gradients of all its uses are summed (the "+="
of backpropagation through time). An input that needs no gradient (data, a
constant, a detached hidden state) is kept as ``(tensor, None)``, so that pictures
can still show it.
"""
import weakref
from contextlib import contextmanager


class _State:
    """What shapes recording, process-wide; each setting is changed only inside a ``with`` below."""
    grad_enabled = True
    scope = ()             # e.g. ("LSTM", "layer0", "t=3", "LSTMCell")
    anomaly = False        # check every op's output for NaN/inf (detect_anomaly)
    retain_values = False  # keep every op's output arrays on the graph, for pictures
    backward_passes = 0    # how many backward passes have run (a node notes it when made)


STATE = _State()


class AnomalyError(FloatingPointError):
    """Raised under ``detect_anomaly()`` at the first NaN or inf, naming the op and its scope."""


class Function:
    """Base class of all ops. Subclasses define ``forward``, ``backward`` and ``formula``.

    A node keeps ``xp`` (the array namespace), ``parents`` (one edge per input),
    ``scope``, ``out_shapes``, ``saved`` (None once freed) and ``born`` (backward passes
    run before it was made) in slots; an op's own attributes (an axis, a shape) go in
    its ``__dict__``.
    """

    __slots__ = ("xp", "parents", "scope", "out_shapes", "saved", "born", "__dict__")
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
        fn = object.__new__(cls)
        x0 = inputs[0]
        backend = x0._backend
        fn.xp = backend.xp
        fn.saved = ()
        arrays, edges, requires_grad = [], [], False
        for t in inputs:
            if t._backend is not backend:
                raise _mixed_backend_error(cls, inputs)
            arrays.append(t.data)
            if t.requires_grad:                    # an edge per input (see the module docstring)
                requires_grad = True
                edges.append((t._ctx, t._out_idx) if t._ctx is not None else t._edge())
            else:
                edges.append((t, None))
        try:
            out = fn.forward(*arrays, **attrs)
        except (ValueError, TypeError, IndexError) as e:
            raise _forward_error(fn, inputs, e) from e
        record = requires_grad and STATE.grad_enabled
        if record:
            fn.link(edges, out)
        node = fn if record else None
        # the outputs are tensors of the inputs' kind (this module does not import tensor.py)
        if cls.multi_output:
            outs = tuple([x0._from_op(o, node, i) for i, o in enumerate(out)])
        else:
            outs = x0._from_op(out, node, 0)
        if STATE.anomaly or STATE.retain_values:
            _observe_forward(fn, inputs, outs, record)
        return outs

    def link(self, edges, out):
        """Record this node in the graph: what ``apply`` does once ``forward`` has made ``out``
        (an array, or a tuple of them). A fused layer op (recurrence.py) links the steps it ran."""
        self.parents = tuple(edges)
        self.scope = STATE.scope
        self.born = STATE.backward_passes
        self.out_shapes = shared(tuple([o.shape for o in out]) if self.multi_output else (out.shape,))

    # --- what ops use -----------------------------------------------------
    def save_for_backward(self, *arrays):
        self.saved = arrays

    @property
    def needs_input_grad(self):
        """One bool per input: does a gradient have to flow into it?"""
        return tuple([index is not None for _, index in self.parents])

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

    def expand(self):
        """The ops this node stands for, or None. A fused op (cell_ops.py, recurrence.py)
        returns ``(inputs, outputs)``: tensors standing for its inputs and outputs, with the
        nodes of those ops in between (which may expand in turn), so that pictures, anomaly
        checks and record_gradients() can see inside it."""
        return None

    def add_hook(self, index, hook):
        if self.out_hooks is None:
            self.out_hooks = {}
        self.out_hooks.setdefault(index, []).append(hook)

    def retain(self, index, tensor):
        """Keep the gradient of output ``index`` on ``tensor`` (Tensor.retain_grad)."""
        if self.out_retained is None:
            self.out_retained = {}
        self.out_retained[index] = weakref.ref(tensor)
        if self.out_hooks is None:      # backward looks at out_hooks alone: an empty entry is enough
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
        where = "/".join(self.scope) if hasattr(self, "scope") else ""
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


# --- memory: nodes share their out_shapes tuples -------------------------------------
_SHAPES = {}


def shared(shapes):
    """``shapes`` (a node's out_shapes), one tuple per distinct value: a graph has few shapes and
    many nodes, and tuples of their own would cost each node 100 bytes or more, as much as the
    numbers of a small RNN step."""
    if len(shapes) > 4:          # many outputs (an unbind into T steps): one such node per forward
        return shapes
    hit = _SHAPES.get(shapes)
    if hit is None:
        if len(_SHAPES) > 10_000:             # shapes that keep changing: start afresh
            _SHAPES.clear()
        hit = _SHAPES[shapes] = shapes
    return hit


# --- anomaly checks and retained values (forward) -----------------------------
def _observe_forward(fn, inputs, outs, recorded):
    arrays = [o.data for o in outs] if fn.multi_output else [outs.data]
    if STATE.retain_values and recorded:
        fn.values = tuple(arrays)
    if STATE.anomaly:
        check_forward(fn, inputs, arrays)


def all_finite(a, xp):
    return not xp.isdtype(a.dtype, "real floating") or bool(xp.all(xp.isfinite(a)))


def check_forward(fn, inputs, outputs):
    """The first NaN/inf of a forward pass, named by op and scope. A fused op runs again as
    its primitive ops, each checked, so that the op inside it is named (an overflow inside
    can leave its outputs finite: sigmoid(inf) = 1)."""
    where = "/".join(STATE.scope) or "top level"
    for i, t in enumerate(inputs):
        if not all_finite(t.data, fn.xp):
            raise AnomalyError(f"forward: input {i} ({t.name or 'unnamed'}, shape {tuple(t.shape)}) of "
                               f"{fn.name} at {where} already contains NaN or inf")
    if hasattr(fn, "primitive"):
        with setting("grad_enabled", False):      # checked as they run; no graph needed
            fn.primitive(*inputs)                 # raises at the primitive op that makes a NaN or inf
    if all(all_finite(o, fn.xp) for o in outputs):
        return
    shapes = ", ".join(str(tuple(t.shape)) for t in inputs)
    raise AnomalyError(f"forward: {fn.name} at {where} produced NaN or inf "
                       f"(input shapes {shapes}; output shapes {', '.join(str(tuple(o.shape)) for o in outputs)})")


def _forward_error(fn, inputs, error):
    """An array library's error, re-raised with the op's name and what it was given."""
    kind = IndexError if isinstance(error, IndexError) else TypeError if isinstance(error, TypeError) else ValueError
    got = ", ".join(f"{tuple(t.shape)} {t.dtype}" for t in inputs)
    return kind(f"{fn.name}: {fn.explain([t.data for t in inputs], error)} (inputs: {got})")


def _mixed_backend_error(cls, inputs):
    names = sorted({t._backend.name for t in inputs})
    return ValueError(f"{cls.__name__.lower()}: all inputs must be on the same backend, got tensors on "
                      f"{' and '.join(repr(n) for n in names)}; move them with .to(name)")


# --- settings ---------------------------------------------------------------------
@contextmanager
def setting(name, value):
    """Inside, ``STATE.<name>`` is ``value``; on exit it is what it was (the one helper behind
    no_grad, enable_grad, detect_anomaly and retain_values)."""
    old = getattr(STATE, name)
    setattr(STATE, name, value)
    try:
        yield
    finally:
        setattr(STATE, name, old)


def no_grad():
    """Inside, ops build no graph (for evaluation and sampling)."""
    return setting("grad_enabled", False)


def enable_grad():
    return setting("grad_enabled", True)


def is_grad_enabled():
    return STATE.grad_enabled


def detect_anomaly():
    """Inside, the first NaN or inf made in forward or backward raises an AnomalyError
    naming the op, its scope (so the timestep) and the shapes."""
    return setting("anomaly", True)


def retain_values():
    """Inside, every recorded op keeps its output arrays, so pictures can print the numbers
    of intermediate tensors (costs the memory of all activations; for small graphs)."""
    return setting("retain_values", True)


class scope:
    """Nestable context: every op created inside records ``STATE.scope + names``.

    Layers run each layer, direction and timestep in a scope ("layer0", "t=3"),
    which is how the visualizer lays the unrolled graph out through time.
    ``scope("t=3", "LSTMCell")`` pushes two names at once. A small class rather
    than a generator, because layers enter one per timestep.
    """
    __slots__ = ("names", "old")

    def __init__(self, *names):
        self.names = tuple(map(str, names))

    def __enter__(self):
        self.old = STATE.scope
        STATE.scope = self.old + self.names
        return self

    def __exit__(self, *exc):
        STATE.scope = self.old


def current_scope():
    return STATE.scope
