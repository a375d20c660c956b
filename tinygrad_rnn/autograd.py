"""Reverse-mode automatic differentiation: the backward pass.

Backward walks the graph from the output to the leaves without recursion
(a 100,000-op chain is fine), by counting dependencies as PyTorch's engine does:

1. ``count_consumers``: for every node the output depends on, count the edges
   that will bring it a gradient (one explicit-stack walk over the graph).
2. Start at the output. Process a node: pop the gradients that have arrived at
   its outputs, call ``node.backward`` and add each input gradient into the node
   it came from (``grads[parent][index] += dx``). A node whose count drops to
   zero has all its gradient and is ready. A tensor used many times (a shared
   RNN weight) therefore gets the sum of its per-use gradients before its own
   backward runs. Broadcasting is undone in one place, ``sum_to_shape``.

Anything can watch the walk: ``record_gradients()`` collects every gradient
contribution on every edge (what the visualizer draws), ``detect_anomaly()``
checks each gradient for NaN/inf.
"""
import warnings
from contextlib import contextmanager

from .function import STATE


class AnomalyError(FloatingPointError):
    """Raised under ``detect_anomaly()`` at the first NaN or inf."""


class GraphFreedError(RuntimeError):
    """Backward through a graph whose saved values were already freed."""


# Callbacks that see every gradient contribution: fn(source_node, source_index, consumer, grad)
_edge_observers = []
REPEATED_BACKWARD_WARNING = 4  # warn when one graph was built across more backward passes than this


def sum_to_shape(grad, shape, xp):
    """Reduce a broadcast gradient back to ``shape``: sum the axes broadcasting added or stretched."""
    extra = grad.ndim - len(shape)
    if extra:
        grad = xp.sum(grad, axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = xp.sum(grad, axis=stretched, keepdims=True)
    return grad


class OuterProducts:
    """A weight gradient  sum_k dy_k.T @ x_k, kept as its factors until every term is in.

    In BPTT a weight used at every timestep receives one product per step:
    dL/dW_hh = sum_t dL/da(t).T @ h(t-1), the notes' "+=". T small products and
    T additions cost far more than stacking the factors and multiplying once,
    which is how a hand-written BPTT computes dW_hh after its time loop. So
    ``Linear.backward`` returns its weight gradient as one of these, the
    backward pass joins them as they arrive, and ``value()`` multiplies once
    when the total is needed. (Same numbers, up to float rounding.)
    """
    __slots__ = ("xp", "dys", "xs", "shape")

    def __init__(self, xp, dy, x):
        self.xp, self.dys, self.xs = xp, [dy], [x]
        self.shape = (dy.shape[-1], x.shape[-1])

    def join(self, other):
        self.dys += other.dys
        self.xs += other.xs

    def value(self):
        xp = self.xp
        if len(self.dys) == 1:
            dy, x = self.dys[0], self.xs[0]
        else:
            dy, x = xp.concat(self.dys, axis=0), xp.concat(self.xs, axis=0)
        if dy.shape[0] == 1:   # one row: an outer product, which matmul does slowly (inner size 1)
            return xp.reshape(dy, (-1, 1)) * x
        return xp.matrix_transpose(dy) @ x


def value(g):
    """An array, whatever form the gradient was kept in."""
    return g.value() if type(g) is OuterProducts else g


def add_gradients(prev, dx):
    """prev + dx, two gradients of one tensor: the "+=" of a tensor used more than once.
    A shared weight's per-timestep products join into one OuterProducts (one matmul later)."""
    if type(prev) is OuterProducts and type(dx) is OuterProducts:
        prev.join(dx)
        return prev
    return value(prev) + value(dx)


def topological_order(root):
    """Nodes reachable from ``root``, each before the nodes it feeds (root first)."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        for parent, index in node.parents:
            if index is not None and id(parent) not in visited:
                stack.append((parent, False))
    order.reverse()
    return order


def count_consumers(root):
    """{node: number of edges from the graph below ``root`` that bring it a gradient}.

    The same walk checks, before backward changes anything, that no node's saved values were
    freed by an earlier pass, and warns when the graph was built across many backward passes."""
    if root.saved is None:
        raise GraphFreedError(_freed_message(root))
    pending = {}
    built_after = {root.born}     # how many backward passes had run when each node was made
    stack = [root]
    while stack:
        node = stack.pop()
        for parent, index in node.parents:
            if index is None:
                continue
            if parent in pending:
                pending[parent] += 1
                continue
            if parent.saved is None:
                raise GraphFreedError(_freed_message(parent))
            pending[parent] = 1
            if parent.parents:
                built_after.add(parent.born)
            stack.append(parent)
    if len(built_after) > REPEATED_BACKWARD_WARNING:
        _warn_growing_graph(len(built_after))
    return pending


def backward(root_node, root_index, grad, retain_graph=False):
    """Backpropagate ``grad`` from output ``root_index`` of ``root_node`` to every leaf."""
    pending = count_consumers(root_node)
    STATE.backward_passes += 1
    old, STATE.retain_graph = STATE.retain_graph, retain_graph   # ops that free as they go read it
    try:
        _walk(root_node, root_index, grad, retain_graph, pending)
    finally:
        STATE.retain_graph = old


def _walk(root_node, root_index, grad, retain_graph, pending):
    """The loop of ``backward``: nodes in dependency order, each once all its gradient is in."""
    grads = {root_node: [None] * len(root_node.out_shapes)}
    grads[root_node][root_index] = grad
    observers = list(_edge_observers)
    anomaly = STATE.anomaly
    ready = [root_node]

    while ready:
        node = ready.pop()
        dys = grads.pop(node, None)
        parents = node.parents
        if dys is None:               # no gradient reached it: just pass the news on to its parents
            dxs = (None,) * len(parents)
        else:
            if node.multi_output:
                dys = [value(dy) for dy in dys]
            elif type(dys[0]) is OuterProducts:
                dys[0] = dys[0].value()
            if node.out_hooks:              # hooks and retain_grad()
                dys = _run_hooks(node, dys)
            node.passes += 1
            dxs = node.backward(dys) if node.multi_output else node.backward(dys[0])
            if not isinstance(dxs, tuple):   # one-input ops return a bare array
                dxs = (dxs,)
        for (parent, index), dx in zip(parents, dxs, strict=True):
            if index is None:
                continue
            left = pending[parent] - 1
            pending[parent] = left
            if left == 0:
                ready.append(parent)
            if dx is None:
                continue
            if dx.shape != parent.out_shapes[index]:
                dx = sum_to_shape(dx, parent.out_shapes[index], node.xp)
            if anomaly or observers:
                _watch(node, parent, index, dx, anomaly, observers)
            slots = grads.get(parent)
            if slots is None:
                slots = grads[parent] = [None] * len(parent.out_shapes)
                slots[index] = dx
                continue
            prev = slots[index]
            slots[index] = dx if prev is None else add_gradients(prev, dx)
        if not retain_graph:
            node.release()


def _watch(node, parent, index, dx, anomaly, observers):
    """Anomaly checks and edge observers see every gradient as an array."""
    dx = value(dx)
    if anomaly:
        check_backward(node, dx)
    for observe in observers:
        observe(parent, index, node, dx)


def _run_hooks(node, dys):
    """The user's hooks may replace a gradient; then retain_grad() keeps the result on its tensor."""
    from .tensor import Tensor
    dys = list(dys)
    for index, hooks in node.out_hooks.items():
        for hook in hooks:
            if dys[index] is not None:
                new = hook(dys[index])
                if new is None:
                    continue
                if isinstance(new, Tensor):   # a hook may answer with a Tensor or an array
                    new = new.data
                if tuple(new.shape) != tuple(dys[index].shape):
                    raise ValueError(f"a hook on {node.name} returned a gradient of shape {tuple(new.shape)}, "
                                     f"expected {tuple(dys[index].shape)}")
                dys[index] = new
    for index, ref in (node.out_retained or {}).items():
        t = ref()
        if t is not None and dys[index] is not None:
            t._accumulate_grad(dys[index])
    return dys


def _freed_message(node):
    where = "/".join(node.scope) or "top level"
    return (f"backward through {node.name} ({where}) a second time: its saved values were freed by the "
            f"first backward. Pass retain_graph=True to the first backward if you really need two passes. "
            f"In a truncated-BPTT loop the usual cause is a hidden state carried into the next chunk "
            f"without h = h.detach().")


def _warn_growing_graph(n_passes):
    warnings.warn(
        f"this backward pass walks a graph whose parts were built across {n_passes} different backward "
        f"passes: the graph keeps growing across iterations. If a hidden state is carried between "
        f"truncated-BPTT chunks, cut it with h = h.detach() (and drop retain_graph=True).",
        RuntimeWarning, stacklevel=4)


@contextmanager
def record_gradients():
    """Collect every gradient contribution of the backward passes run inside.

    Yields a list that fills with ``GradientEdge`` records, one per edge per pass:
    the gradient ``grad`` that ``consumer`` sent back into output ``source_index``
    of ``source`` (for a leaf, ``source`` is its AccumulateGrad node). Summing
    the records of one source gives that tensor's total gradient.
    """
    records = []

    def observe(source, source_index, consumer, grad):
        records.append(GradientEdge(source, source_index, consumer, grad))

    _edge_observers.append(observe)
    try:
        yield records
    finally:
        _edge_observers.remove(observe)


class GradientEdge:
    """One gradient contribution: ``consumer`` sent ``grad`` into ``source``'s output ``source_index``."""
    __slots__ = ("source", "source_index", "consumer", "grad")

    def __init__(self, source, source_index, consumer, grad):
        self.source, self.source_index, self.consumer, self.grad = source, source_index, consumer, grad

    @property
    def input_index(self):
        """Which input slot of ``consumer`` this edge enters."""
        for i, (p, idx) in enumerate(self.consumer.parents):
            if p is self.source and idx == self.source_index:
                return i
        return None

    def __repr__(self):
        return f"<GradientEdge {self.consumer.name} -> {self.source.name}[{self.source_index}] {tuple(self.grad.shape)}>"


# --- anomaly detection --------------------------------------------------------
def _all_finite(a, xp):
    if not xp.isdtype(a.dtype, "real floating"):
        return True
    return bool(xp.all(xp.isfinite(a)))


def _where(fn):
    scope = getattr(fn, "scope", ())
    return "/".join(scope) if scope else "top level"


def check_forward(fn, inputs, outputs):
    for i, t in enumerate(inputs):
        if not _all_finite(t.data, fn.xp):
            raise AnomalyError(
                f"forward: input {i} ({t.name or 'unnamed'}, shape {tuple(t.shape)}) of {fn.name} at "
                f"{'/'.join(STATE.scope) or 'top level'} already contains NaN or inf")
    for o in outputs:
        if not _all_finite(o, fn.xp):
            shapes = ", ".join(str(tuple(t.shape)) for t in inputs)
            raise AnomalyError(
                f"forward: {fn.name} at {'/'.join(STATE.scope) or 'top level'} produced NaN or inf "
                f"(input shapes {shapes}; output shape {tuple(o.shape)})")


def check_backward(fn, dx):
    if not _all_finite(dx, fn.xp):
        raise AnomalyError(
            f"backward: {fn.name} at {_where(fn)} produced a NaN or inf gradient of shape "
            f"{tuple(dx.shape)} (its local derivative: {fn.formula})")
