"""Reverse-mode automatic differentiation: the backward pass. The idea in a few lines::

    pending = count_consumers(loss)          # how many gradients will reach each node
    grads = {loss: 1}
    ready = [loss]
    while ready:
        node = ready.pop()
        dxs = node.backward(grads.pop(node))  # the chain rule, one op
        for parent, dx in zip(node.parents, dxs):
            grads[parent] += dx               # a tensor used twice gets the sum: BPTT's "+="
            pending[parent] -= 1
            if pending[parent] == 0:          # every consumer has sent its gradient
                ready.append(parent)

No recursion anywhere (a 100,000-op chain is fine): ``count_consumers`` is one
explicit-stack walk, and a node runs only when all of its gradient is in, as in
PyTorch's engine. The rest of this file is what makes that loop practical:

* a node has several outputs (``grads[node]`` is a list, ``(node, index)`` edges);
* broadcasting is undone in one place, ``sum_to_shape``;
* a weight used at every timestep receives its gradient as factors
  (``ops.OuterProducts``), multiplied once when all timesteps are in;
* what each node saved is freed after the pass (``retain_graph=False``), and a second
  pass through a freed graph says why (``GraphFreedError``);
* hooks and ``retain_grad()``; ``record_gradients()`` sees every gradient on every edge
  and ``detect_anomaly()`` checks each for NaN/inf. While either watches, a fused op
  (a layer's ``Recurrence``, a cell step of cell_ops.py) runs its backward as the ops
  it stands for, down to primitive ops, so what they report names the op inside the cell.
"""
import warnings
from contextlib import contextmanager

from .function import STATE, AnomalyError, all_finite
from .ops import OuterProducts


class GraphFreedError(RuntimeError):
    """Backward through a graph whose saved values were already freed."""


_edge_observers = []            # fn(source_node, source_index, consumer, grad) for every gradient
REPEATED_BACKWARD_WARNING = 4   # warn when one graph was built across more backward passes than this


def sum_to_shape(grad, shape, xp):
    """Reduce a broadcast gradient back to ``shape``: sum the axes broadcasting added or stretched."""
    extra = grad.ndim - len(shape)
    if extra:
        grad = xp.sum(grad, axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = xp.sum(grad, axis=stretched, keepdims=True)
    return grad


def value(g):
    """An array, whatever form the gradient was kept in (see ops.OuterProducts)."""
    return g.value() if type(g) is OuterProducts else g


def backward(roots, retain_graph=False):
    """Backpropagate from ``roots``, a list of ``(node, output index, gradient)`` (a loss: one)
    to every leaf, accumulating into the leaves' ``.grad``."""
    pending = count_consumers([node for node, _, _ in roots])
    STATE.backward_passes += 1
    _walk(roots, pending, retain_graph)


def count_consumers(roots, stop=()):
    """{node: number of edges from the graph below ``roots`` that bring it a gradient}.

    The walk does not go past the nodes in ``stop``. It also checks, before backward changes
    anything, that no node's saved values were freed by an earlier pass, and warns when the
    graph was built across many backward passes (a hidden state carried without detach)."""
    pending, seen = {}, set(roots)
    built_after = set()           # how many backward passes had run when each node was made
    for root in roots:
        if root.saved is None:
            raise GraphFreedError(_freed_message(root))
        built_after.add(root.born)
    stack = list(seen)
    while stack:
        node = stack.pop()
        for parent, index in node.parents:
            if index is None:
                continue
            pending[parent] = pending.get(parent, 0) + 1
            if parent in seen or parent in stop:
                continue
            if parent.saved is None:
                raise GraphFreedError(_freed_message(parent))
            seen.add(parent)
            if parent.parents:
                built_after.add(parent.born)
            stack.append(parent)
    if len(built_after) > REPEATED_BACKWARD_WARNING:
        _warn_growing_graph(len(built_after))
    return pending


def _walk(roots, pending, retain_graph):
    """The loop of ``backward``: nodes in dependency order, each once all its gradient is in.
    Returns the gradients that reached nodes that did not run (see _backward_expanded)."""
    grads = {}
    for node, index, grad in roots:
        slots = grads.setdefault(node, [None] * len(node.out_shapes))
        slots[index] = _add(slots[index], grad)
    ready = [node for node in grads if pending.get(node, 0) == 0]
    observers = list(_edge_observers)
    watching = STATE.anomaly or bool(observers)

    while ready:
        node = ready.pop()
        dys = grads.pop(node, None)
        parents = node.parents
        expanded = False
        if dys is None:               # no gradient reached it: just pass the news on to its parents
            dxs = (None,) * len(parents)
        else:
            if node.multi_output:
                dys = [value(dy) for dy in dys]
            elif type(dys[0]) is OuterProducts:
                dys[0] = dys[0].value()
            if node.out_hooks:              # hooks and retain_grad()
                dys = _run_hooks(node, dys)
            expanded = watching and node.expand() is not None
            if expanded:
                dxs = _backward_expanded(node, dys)
            else:
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
            if watching and not expanded:     # an expanded node's ops were watched inside
                _watch(node, parent, index, dx, observers)
            slots = grads.get(parent)         # grads[parent][index] += dx
            if slots is None:
                slots = grads[parent] = [None] * len(parent.out_shapes)
                slots[index] = dx
            else:
                slots[index] = _add(slots[index], dx)
        if not retain_graph:
            node.release()
    return grads


def _add(prev, dx):
    """prev + dx, two gradients of one tensor. A shared weight's per-timestep products join into
    one OuterProducts (one matmul later); anything else is added as arrays."""
    if prev is None:
        return dx
    if type(prev) is OuterProducts and type(dx) is OuterProducts:
        prev.join(dx)
        return prev
    return value(prev) + value(dx)


def _backward_expanded(node, dys):
    """A fused op's backward done as the primitive ops it stands for (the same numbers), so
    that anomaly checks and observers see each op inside. The ops' inputs are the fused
    node's own parents; the walk stops there and hands their gradients back."""
    inputs, outputs = node.expand()
    roots = [(o._ctx, o._out_idx, dy) for o, dy in zip(outputs, dys) if dy is not None]
    stop = {parent for parent, index in node.parents if index is not None}
    pending = count_consumers([n for n, _, _ in roots], stop)
    for parent in stop:                      # one count more than they will get: they never run here
        pending[parent] = pending.get(parent, 0) + 1
    grads = _walk(roots, pending, True)
    dxs, given = [], set()
    for parent, index in node.parents:      # one gradient per input (an edge used twice: its sum, once)
        taken = index is None or (parent, index) in given
        given.add((parent, index))
        dxs.append(None if taken else value(grads.get(parent, [None] * (index + 1))[index]))
    return tuple(dxs)


def _watch(node, parent, index, dx, observers):
    """Anomaly checks and edge observers see every gradient as an array."""
    dx = value(dx)
    if STATE.anomaly:
        check_backward(node, dx)
    for observe in observers:
        observe(parent, index, node, dx)


def _run_hooks(node, dys):
    """The user's hooks may replace a gradient (Tensor.register_hook checks what they return);
    then retain_grad() keeps the result on its tensor."""
    dys = list(dys)
    for index, hooks in node.out_hooks.items():
        for hook in hooks:
            if dys[index] is not None:
                new = hook(dys[index])
                if new is not None:
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
        RuntimeWarning, stacklevel=5)


def check_backward(fn, dx):
    if not all_finite(dx, fn.xp):
        raise AnomalyError(
            f"backward: {fn.name} at {'/'.join(fn.scope) or 'top level'} produced a NaN or inf gradient of "
            f"shape {tuple(dx.shape)} (its local derivative: {fn.formula})")


@contextmanager
def record_gradients():
    """Collect every gradient contribution of the backward passes run inside.

    Yields a list that fills with ``GradientEdge`` records, one per edge per pass:
    the gradient ``grad`` that ``consumer`` sent back into output ``source_index``
    of ``source`` (for a leaf, ``source`` is its AccumulateGrad node). Summing
    the records of one source gives that tensor's total gradient. Inside a fused
    cell op the records are those of the primitive ops it stands for.
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
