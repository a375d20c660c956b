"""Fused ops: one graph node that computes what several primitive ops would, and can show them.

Some formulas cost far less as one op than as the primitive ops that spell them out: an
LSTM step is 11 primitive nodes (cell_ops.py), and softmax + cross-entropy is four
(log_softmax, pick, sum, mul) whose backward recomputes the softmax and fills a mostly
zero array, where the fused gradient is just softmax(x) - onehot(t). Each node costs a
few µs of Python in forward and again in backward, and each temporary array memory.

A fused op is a ``Fused``: an ordinary ``Function`` with its forward and backward side
by side, plus ``primitive(*inputs)``, the same computation written with primitive ops.
``expand()`` runs ``primitive`` on stand-ins for the node's inputs (their graph edges are
the node's own) and on the values it saved, so that the pictures draw every op inside,
``record_gradients()`` and ``detect_anomaly()`` watch them, and the tests can check the
fused backward against the primitive one. Nothing is hidden; only the speed is the
fused op's.
"""
from .backend import backend_of
from .function import AccumulateGrad, Function, setting
from .tensor import Tensor


class Fused(Function):
    """A Function that also knows its primitive ops: subclasses define ``primitive`` and may
    name, in ``saved_inputs`` ({input position: position in self.saved}), the inputs they save."""

    expansion = None      # made on demand (an instance attribute from then on)
    saved_inputs = {}

    def primitive(self, *inputs):
        """The same outputs (a tuple of tensors) computed with primitive ops."""
        raise NotImplementedError

    def expand(self):
        """(input tensors, output tensors) of this node written as primitive ops, made once.
        The input tensors stand for this node's inputs (their graph edges are its own)."""
        if self.expansion is None:
            self.expansion = self._rebuild()
        return self.expansion

    def _rebuild(self):
        inputs = stand_ins(self, [self._input_array(k, parent, index)
                                  for k, (parent, index) in enumerate(self.parents)])
        with setting("grad_enabled", True), setting("scope", self.scope), \
                setting("retain_values", self.values is not None), setting("anomaly", False):
            outputs = self.primitive(*inputs)
        for i, name in (self.out_names or {}).items():
            outputs[i].name = name
        if self.saved is None:                    # freed: the expansion shows the shapes only
            release_below(outputs, self.parents)
        return tuple(inputs), tuple(outputs)

    def _input_array(self, k, parent, index):
        """The value of input k for the expansion: what this node saved of it, else what
        ``known_value`` finds."""
        saved = self.saved_inputs.get(k)
        if saved is not None and self.saved:
            return self.saved[saved]
        return known_value(parent, index)

    def release(self):
        self.saved = None
        if self.expansion is not None:
            self.expansion = None


def known_value(parent, index):
    """The value an edge carries, where the graph still knows it: the tensor of a data edge,
    an op's retained output, a leaf's data; else None."""
    if index is None:
        return parent.data
    if parent.values is not None:
        return parent.values[index]
    leaf = parent.tensor if isinstance(parent, AccumulateGrad) else None
    return leaf.data if leaf is not None else None


def stand_ins(node, arrays):
    """Tensors standing for ``node``'s inputs in its expansion: a data input is the tensor
    itself; any other is a tensor whose graph edge is the node's own, holding ``arrays[k]``
    (zeros of its shape where that is None: a value no op of the expansion reads, of the
    inputs' float dtype)."""
    floats = backend_of(node.xp).float_dtypes
    dtype = next((a.dtype for a in arrays if a is not None and a.dtype in floats), node.xp.float32)
    inputs = []
    for (parent, index), a in zip(node.parents, arrays):
        if index is None:
            inputs.append(parent)
            continue
        if a is None:
            a = node.xp.zeros(parent.out_shapes[index], dtype=dtype)
        t = Tensor._wrap(a, backend_of(node.xp))
        t.requires_grad, t._ctx, t._out_idx = True, parent, index
        inputs.append(t)
    return inputs


def saved_value(node, j):
    """``node.saved[j]``, or None once freed."""
    return node.saved[j] if node.saved else None


def given(t, y):
    """``t``, the output of an activation in an expansion (sigmoid, tanh, log_softmax), made to
    hold ``y``, the value the fused forward computed and saved: the activation's input is not
    kept, and its output is all its backward needs. (The same number: both compute sigmoid as
    0.5 tanh(0.5 a) + 0.5.)"""
    if y is None:
        return t
    t.data = y
    node = t._ctx
    if node is not None:
        node.saved = (y,)
        if node.values is not None:
            node.values = (y,)
    return t


def release_below(outputs, stop):
    """Mark the expansion of a freed node freed too (its primitive ops' saved values are gone)."""
    stop = {id(p) for p, _ in stop}
    stack = [o._ctx for o in outputs if o._ctx is not None]
    seen = set()
    while stack:
        node = stack.pop()
        if id(node) in seen or id(node) in stop:
            continue
        seen.add(id(node))
        node.saved = None
        stack.extend(p for p, i in node.parents if i is not None)
