"""Recurrence: a whole sequence through one cell, h_t = step(xw_t, h_{t-1}) for t = 1..T, as one
graph node.

A layer could call its fused step op (cell_ops.py) once per timestep, and it used to:
T graph nodes, each costing a few µs of Python to record in forward and to visit in
backward, which at small sizes is more than the arithmetic. ``Recurrence`` runs the
same step ops itself, as a hand-written BPTT loop does (tinygrad_rnn/by_hand.py):

    forward:  for t = 1..T:  h_t = step.forward(xw_t, h_{t-1})        (h_t written into row t of hs)
    backward: for t = T..1:  dh_t = dout_t + dh_t (from step t+1)
                             dxw_t, dh_{t-1}, da_t = step.gradients(dh_t)   (with step t's saved values)
              dW_hh = sum_t da_t.T @ h_{t-1}                         (BPTT's "+=", one matmul)

One instance of the step's op class (``runner``, not a graph node) runs every timestep.
What it keeps is what by_hand.py keeps: h_0..h_T in one array ``hs`` and, per step, only
the arrays its backward needs beyond them (the LSTM's c_t, gates and tanh(c_t); nothing
for the vanilla RNN, whose tanh' = 1 - h_t**2 comes from hs). Backward hands the runner
each step's saved values in turn (``saved_by_steps``). ``expand()`` makes the steps graph
nodes: it links T step ops, with those saved values, into the graph (xw unbound into its
T rows, each step fed by the one before, the hidden states stacked: exactly the graph
the T step ops would have made), and each step in turn expands into its primitive ops.
So the pictures, ``record_gradients()`` and ``detect_anomaly()`` see every op of every
timestep; only the speed and the memory are the loop's.

Inputs: xw (T, B, G*H), the input's share of the pre-activations; the initial state
(h_0, or h_0 and c_0 for an LSTM), each (B, H); the step's weights (W_hh, and b_hh for
the GRU). Outputs: the hidden states (T, B, H), then the final state (h_T, or h_T and c_T).
"""
import itertools

from .backend import backend_of
from .fused import known_value, release_below, stand_ins
from .function import Function, scope, setting
from .ops import OuterProducts, Stack


class Recurrence(Function):
    """out, *final = the states of ``step`` (a cell_ops class) run over xw's T rows.

    Attributes: ``step``; ``cell``, the scope name of a step ("LSTMCell"); ``reverse``
    (run t = T..1, the backward direction of a bidirectional layer); ``W_T`` for the
    step (not kept); and the step's own attributes (the RNN's ``nonlinearity``).
    Timestep t (from 1) runs in scope ("t=<t>", cell), inside the layer's scope."""
    formula = "for t = T..1: dxw_t, dh_(t-1), da_t = step_t'(dout_t + dh_t);  dW_hh = sum_t da_t.T @ h_(t-1)"
    multi_output = True
    expansion = None

    def forward(self, xw, *state_and_weights, step, cell, reverse=False, W_T=None, **attrs):
        xp = self.xp
        n = len(step.out_names)                     # states: (h,) or (h, c)
        state, weights = state_and_weights[:n], state_and_weights[n:]
        self.step, self.cell, self.reverse = step, cell, reverse
        self.attrs = attrs                          # not W_T: the graph would keep it
        T, h_0 = xw.shape[0], state[0]
        self.xw_shape = xw.shape
        # h_0 and every h_t in one array, in time order (reversed: h_0 after h_T), so that the
        # outputs are T consecutive rows and so are the h_prev that W_hh's gradient needs
        hs = xp.empty((T + 1,) + h_0.shape, dtype=h_0.dtype)
        hs[T if reverse else 0, ...] = h_0
        s = self.runner = object.__new__(step)      # one step op runs every timestep (not a graph node)
        s.xp, s.write = xp, backend_of(xp).write    # write: h_t straight into its row of hs
        extras = slice(n + 1, -1 if step.saves_h else None)     # saved = (*state_prev, W_hh, *extras[, h])
        out = hs[:T, ...] if reverse else hs[1:, ...]     # row t: the h that step t makes
        rows, xws = list(xp.unstack(out)), xp.unstack(xw)
        rows[self.times(T)[-1]] = None              # the final state: its own array (copied in below)
        kept = []                                   # per step: its states beyond h (the LSTM's c_t), its extras
        for t in self.times(T):
            new = s.forward(xws[t], *state, *weights, W_T=W_T, out=rows[t], **attrs)
            state = new if n > 1 else (new,)
            more = state[1:] + s.saved[extras]
            if more:
                kept.append(more)
        out[t, ...] = state[0]
        s.saved = None
        self.save_for_backward(hs, state_and_weights[1:n], weights[0], kept)
        return (out,) + state

    def times(self, T):
        """The timesteps (from 0) in the order they run."""
        return range(T - 1, -1, -1) if self.reverse else range(T)

    def saved_by_steps(self):
        """What each step saved in forward, in the order they ran: (*state_prev, W_hh, *extras[, h]),
        rebuilt from the rows of hs and what the loop kept (a column per item, zipped)."""
        hs, c_0, W_hh, kept = self.saved
        n = len(self.step.out_names)
        h = self.xp.unstack(hs, axis=0)
        if self.reverse:
            h = h[::-1]                             # h_0, h_1, ... in the order the steps ran
        columns = [h[:-1]]                          # h_prev
        kept = list(zip(*kept))                     # per step (c_t, *extras) -> per item, a column
        if n > 1:                                   # c_prev: c_0, then the c each step kept
            columns += [c_0 + kept[0][:-1]]
        columns += [itertools.repeat(W_hh)] + kept[n - 1:]
        if self.step.saves_h:
            columns += [h[1:]]
        return list(zip(*columns))

    def backward(self, dys):
        xp = self.xp
        d_out, d_state = dys[0], list(dys[1:])
        hs = self.saved[0]
        T, n = hs.shape[0] - 1, len(d_state)
        if d_out is None:                           # only the final state is used
            d_out = xp.zeros(self.out_shapes[0], dtype=hs.dtype)
        s = self.runner
        dxw = xp.empty(self.xw_shape, dtype=hs.dtype)   # filled from t = T down to 1, row by row
        d_outs, dxw_rows = xp.unstack(d_out), xp.unstack(dxw)
        da = None                                   # da_t where it is not dxw_t (the GRU's b_hh)
        for t, s.saved in zip(reversed(self.times(T)), reversed(self.saved_by_steps())):
            dh = d_state[0]                         # dh_t: from step t+1 and from the output at t
            d_state[0] = d_outs[t] if dh is None else dh + d_outs[t]
            dxw_t, *d_state, da_t = s.gradients(d_state[0] if n == 1 else tuple(d_state), dxw_rows[t])
            if dxw_t is not dxw_rows[t]:            # a step that does not write there
                dxw[t, ...] = dxw_t
            if da_t is not dxw_t:
                if da is None:
                    da = xp.empty((T,) + da_t.shape, dtype=da_t.dtype)
                da[t, ...] = da_t
        s.saved = None
        da = dxw if da is None else da
        # the shared weights, summed over t (BPTT's "+="): a = h_prev @ W_hh.T + b_hh at every step
        rows = T * hs.shape[1]
        h_prev = hs[1:, ...] if self.reverse else hs[:T, ...]
        dW_hh = OuterProducts(xp, xp.reshape(da, (rows, -1)), xp.reshape(h_prev, (rows, -1)))
        d_weights = (dW_hh,) if len(self.parents) == n + 2 else (dW_hh, xp.sum(da, axis=(0, 1)))
        return (dxw, *d_state, *d_weights)

    def primitive(self, xw, *state_and_weights):
        """The same sequence as T step ops, one graph node per timestep (what the layers ran
        before this op; detect_anomaly() re-runs it to name the op inside a step)."""
        n = len(self.step.out_names)
        state, weights = state_and_weights[:n], state_and_weights[n:]
        xw_t = xw.unbind(0)
        hs = [None] * xw.shape[0]
        for t in self.times(xw.shape[0]):
            with scope(f"t={t + 1}", self.cell):
                new = self.step.apply(xw_t[t], *state, *weights, **self.attrs)
            state = new if self.step.multi_output else (new,)
            hs[t] = state[0]
        return (Stack.apply(*hs, axis=0),) + state

    # --- drawing and watching: the steps as graph nodes -------------------------
    def expand(self):
        """(input tensors, output tensors): the steps this node ran, linked into the graph
        between stand-ins for its inputs (their edges are its own) and its outputs; made once."""
        if self.expansion is None:
            self.expansion = self._link_steps()
        return self.expansion

    def _link_steps(self):
        inputs = stand_ins(self, [known_value(parent, index) for parent, index in self.parents])
        n = len(self.step.out_names)
        xw, state, weights = inputs[0], tuple(inputs[1:1 + n]), inputs[1 + n:]
        T = xw.shape[0]
        zeros = None if self.saved else tuple(self.xp.zeros(s, dtype=xw.data.dtype) for s in self.out_shapes[1:])
        hs, steps = [None] * T, []
        self.linked_steps = steps
        with setting("grad_enabled", True), setting("scope", self.scope), \
                setting("retain_values", self.values is not None), setting("anomaly", False):
            xw_t = xw.unbind(0)
            saved = self.saved_by_steps() if self.saved else [None] * T
            hs_all, _, _, kept = self.saved or (None,) * 4
            for k, (t, step_saved) in enumerate(zip(self.times(T), saved)):
                s = object.__new__(self.step)       # the step op that ran, now as a graph node
                s.xp = self.xp
                vars(s).update(vars(self.runner))   # its attributes (relu, b_hh)
                s.saved = step_saved
                if self.saved:                      # h_t is a row of hs (h_0 is the other end's row)
                    arrays = (hs_all[t if self.reverse else t + 1, ...],) + (kept[k][:n - 1] if n > 1 else ())
                else:
                    arrays = zeros
                steps.append(s)
                with scope(f"t={t + 1}", self.cell):
                    s.link([x._edge() for x in (xw_t[t], *state, *weights)], arrays if n > 1 else arrays[0])
                s.born = self.born
                if self.values is not None:
                    s.values = tuple(arrays)
                state = tuple(xw._from_op(a, s, i) for i, a in enumerate(arrays))
                hs[t] = state[0]
            outputs = (Stack.apply(*hs, axis=0),) + state
        if not self.saved:                          # freed: the expansion shows the shapes only
            release_below(outputs, self.parents)
        return tuple(inputs), outputs

    def release(self):
        self.saved = None
        if self.expansion is not None:              # the steps it was drawn as free theirs too
            for s in self.linked_steps:
                s.release()
            self.expansion = None
