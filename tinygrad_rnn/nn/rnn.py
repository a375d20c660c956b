"""RNN, LSTM and GRU layers with PyTorch's API, unrolled through time.

``forward(input, hx=None)``:
    input: (T, B, input_size), or (B, T, input_size) with batch_first, or (T, input_size) unbatched
    hx:    (num_layers * D, B, H) (LSTM: a pair (h_0, c_0)); zeros when None
returns output (T, B, D * H) (batch_first: (B, T, D * H)) and h_n (LSTM: (h_n, c_n)),
with D = 2 when bidirectional. Parameters are named and shaped as PyTorch's:
weight_ih_l{k}{_reverse} (G*H, in), weight_hh_l{k}{_reverse} (G*H, H), bias_ih_l{k}, bias_hh_l{k}.

How it runs, per layer and direction:
  1. the input's contribution for every timestep in one product, xw = x @ W_ih.T + b   (T, B, G*H)
  2. the time loop as one node, ``Recurrence`` (recurrence.py): the cell's fused step op
     (cell_ops.py) for t = 1..T, h(t) made in its row of the output. Pictures, hooks and
     anomaly checks see it as what it stands for: ``xw.unbind(0)``, one step per t inside
     ``scope("t=<t>", "<Cell>")`` (each step: the primitive ops of nn/cells.py), and a
     ``stack`` of the hidden states.
A variant without a fused op (LSTM peephole, GRU reset_after=False) runs those three
stages as they read, with the primitive-op step of nn/cells.py.
The scopes ("LSTM", "layer0" or "layer0_reverse", "t=3", "LSTMCell") are what
the visualizer uses to lay the graph out through time, and what anomaly messages
name. ``t`` counts the input's positions from 1, as the notes number their steps
(h_t = f(W_hh h_{t-1} + W_ih x_t + b), after the initial state h_0), so the reverse
direction's first step is t=T.
"""
import math
import warnings

from ..cell_ops import GRUStep, LSTMStep, RNNStep
from ..creation import zeros
from ..function import scope
from ..recurrence import Recurrence
from ..tensor import Tensor
from .cells import check_input, gru_step, lstm_step, rnn_step, split_reset_before
from .functional import concat, linear, stack
from .init import check_sizes, recurrent_matrix, uniform
from .module import Module, Parameter


def time_major(name, input, input_size, weight, batch_first):
    """Check a layer's input and return it as (T, B, input_size), and whether it had a batch axis."""
    check_input(name, input, input_size, weight)
    if input.ndim not in (2, 3):
        raise ValueError(f"{name}: expected input of shape (T, B, {input_size}), (B, T, {input_size}) with "
                         f"batch_first, or (T, {input_size}) unbatched; got {input.shape}")
    batched = input.ndim == 3
    x = input.transpose(0, 1) if batched and batch_first else input
    if not batched:
        x = x.unsqueeze(1)
    if x.shape[0] == 0:
        raise ValueError(f"{name}: the input sequence is empty (0 timesteps, shape {input.shape})")
    return x, batched


def as_given(output, finals, batched, batch_first):
    """Output (T, B, F) and final states (one list per state: h, and c for an LSTM) back in the
    caller's layout: batch_first, or unbatched; returns (output, h_n) or (output, (h_n, c_n))."""
    final = [stack(lst, axis=0) if len(lst) > 1 else lst[0].unsqueeze(0) for lst in finals]
    if not batched:
        output = output.squeeze(1)
        final = [f.squeeze(1) for f in final]
    elif batch_first:
        output = output.transpose(0, 1)
    return output, (final[0] if len(final) == 1 else tuple(final))


def transposed(W):
    """A row-major copy of W.T, made once per forward: BLAS computes h @ W.T about 1.5x slower
    than h @ (a row-major W.T) at RNN sizes, and every timestep multiplies by W_hh."""
    return W.backend.transposed_copy(W.data)


class RNNBase(Module):
    """Shared machinery of RNN, LSTM and GRU: parameters, shapes, the loop over layers and time."""

    n_gates = 1
    n_states = 1      # LSTM: 2 (h and c)
    cell_name = "RNNCell"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, *, init="default", init_gain=1.0, dtype="float32", replay=None):
        super().__init__()
        if replay is not None:
            warnings.warn(f"{type(self).__name__}(replay=...) is deprecated and does nothing: every layer now runs "
                          f"each timestep as one fused op, fast and drawable", DeprecationWarning, stacklevel=2)
        check_sizes(type(self).__name__, input_size=(input_size, 0), hidden_size=(hidden_size, 1),
                    num_layers=(num_layers, 1))
        if not 0 <= dropout < 1:
            raise ValueError(f"{type(self).__name__}: dropout must be in [0, 1), got {dropout}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, dropout
        self.bidirectional, self.init, self.init_gain = bidirectional, init, init_gain
        self.num_directions = 2 if bidirectional else 1
        G, H, k = self.n_gates, hidden_size, 1 / math.sqrt(hidden_size)
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else H * self.num_directions
            for suffix in self._suffixes():
                tag = f"l{layer}{suffix}"
                setattr(self, f"weight_ih_{tag}", Parameter(uniform((G * H, layer_in), k, dtype)))
                setattr(self, f"weight_hh_{tag}", Parameter(recurrent_matrix(init, H, G, init_gain, dtype)))
                if bias:
                    setattr(self, f"bias_ih_{tag}", Parameter(uniform((G * H,), k, dtype)))
                    setattr(self, f"bias_hh_{tag}", Parameter(uniform((G * H,), k, dtype)))
                self._extra_parameters(tag, H, k, dtype)

    def _suffixes(self):
        return ("", "_reverse") if self.bidirectional else ("",)

    def _extra_parameters(self, tag, H, k, dtype):
        """Hook for parameters beyond PyTorch's (LSTM peepholes)."""

    def _param(self, name, tag):
        return getattr(self, f"{name}_{tag}", None)

    # --- forward -------------------------------------------------------------
    def forward(self, input, hx=None):
        name = type(self).__name__
        x, batched = time_major(name, input, self.input_size, self.weight_ih_l0, self.batch_first)
        states = self._initial_states(hx, x.shape[1], batched, x)

        finals = [[] for _ in range(self.n_states)]
        with scope(name):
            layer_input = x
            for layer in range(self.num_layers):
                outputs = []
                for d, suffix in enumerate(self._suffixes()):
                    k = layer * self.num_directions + d
                    with scope(f"layer{layer}{suffix}"):
                        out, last = self._run_direction(layer_input, tuple(s[k] for s in states), f"l{layer}{suffix}",
                                                        reverse=d == 1)
                    outputs.append(out)
                    for lst, s in zip(finals, last):
                        lst.append(s)
                layer_input = outputs[0] if len(outputs) == 1 else concat(outputs, axis=2)
                if self.dropout and self.training and layer < self.num_layers - 1:
                    layer_input = layer_input.dropout(self.dropout, True)
        return as_given(layer_input, finals, batched, self.batch_first)

    def _initial_states(self, hx, B, batched, x):
        """One list per state (h, and c for LSTM) of (B, H) tensors, one per layer and direction."""
        name = type(self).__name__
        L, H = self.num_layers * self.num_directions, self.hidden_size
        if hx is None:
            zero = zeros(B, H, dtype=x.dtype, backend=x.backend)
            return [[zero] * L for _ in range(self.n_states)]
        if self.n_states == 2 and not (isinstance(hx, (tuple, list)) and len(hx) == 2):
            raise TypeError(f"{name}: hx must be a pair (h_0, c_0), got {type(hx).__name__}")
        hx = tuple(hx) if self.n_states == 2 else (hx,)
        expected = (L, B, H) if batched else (L, H)
        states = []
        for which, s in zip(("h_0", "c_0"), hx):
            if not isinstance(s, Tensor):
                raise TypeError(f"{name}: {which} must be a Tensor, got {type(s).__name__}")
            if s.shape != expected:
                raise ValueError(f"{name}: expected {which} of shape {expected}, got {s.shape}")
            if s.dtype != x.dtype:
                raise TypeError(f"{name}: {which} is {s.dtype} but the input is {x.dtype}")
            cut = s._cut
            if not batched:
                s = s.unsqueeze(1)
            pieces = list(s.unbind(0)) if L > 1 else [s.squeeze(0)]
            if cut is not None:     # a detached state (truncated BPTT): pictures draw the cut
                for piece in pieces:
                    if piece._ctx is None:
                        piece._cut = cut
            states.append(pieces)
        return states

    def _run_direction(self, x, state, tag, reverse):
        """One layer, one direction: x (T, B, in) -> (outputs (T, B, H), final state tuple)."""
        xw = linear(x, self._param("weight_ih", tag), self._input_bias(tag))
        fused = self._fused(tag)
        if fused is not None:       # the whole time loop as one node, drawn as its steps
            step, weights, attrs = fused
            out, *last = Recurrence.apply(xw, *state, *weights, step=step, cell=self.cell_name, reverse=reverse,
                                          **attrs)
            return out, tuple(last)
        step = self._cell(tag)      # a variant without a fused op: the primitive ops, step by step
        T = x.shape[0]
        xw_t = xw.unbind(0)
        hs = [None] * T
        for t in reversed(range(T)) if reverse else range(T):
            with scope(f"t={t + 1}", self.cell_name):    # steps t = 1..T after h_0, as in the notes
                state = step(xw_t[t], state)
            hs[t] = state[0]
        return stack(hs, axis=0), state

    def _input_bias(self, tag):
        """The bias folded into the input projection (b_ih + b_hh where the cell allows it)."""
        if not self.bias:
            return None
        return self._param("bias_ih", tag) + self._param("bias_hh", tag)

    def _fused(self, tag):
        """The fused step op that runs this layer and direction, its weights looked up once per
        forward: ``(step class, weights, attributes)`` for ``Recurrence``; None where the
        variant has none."""
        return None

    def _cell(self, tag):
        """The same step as primitive ops (nn/cells.py): ``step(xw_t, state) -> new state``
        (a tuple: (h,), or (h, c) for the LSTM)."""
        raise NotImplementedError

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        for attr, default in (("bias", True), ("batch_first", False), ("dropout", 0.0), ("bidirectional", False),
                              ("init", "default")):
            if getattr(self, attr) != default:
                s += f", {attr}={getattr(self, attr)!r}"
        return s


class RNN(RNNBase):
    """Elman RNN: h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh) (``nonlinearity="relu"`` for ReLU)."""

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, **kw):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, **kw)

    def _fused(self, tag):
        W_hh = self._param("weight_hh", tag)
        return RNNStep, (W_hh,), {"W_T": transposed(W_hh), "nonlinearity": self.nonlinearity}

    def _cell(self, tag):
        W_hh, nonlinearity = self._param("weight_hh", tag), self.nonlinearity
        return lambda xw, state: rnn_step(xw, state, W_hh, nonlinearity)


class LSTM(RNNBase):
    """LSTM with gates i, f, g, o (PyTorch's order). ``peephole=True`` adds the notes' peephole
    connections: weight_cif_l{k} (2H, H) lets i and f see c_{t-1}, weight_co_l{k} (H, H) lets o see c_t."""

    n_gates, n_states, cell_name = 4, 2, "LSTMCell"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, *, peephole=False, **kw):
        self.peephole = peephole
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, **kw)

    def _extra_parameters(self, tag, H, k, dtype):
        if self.peephole:
            setattr(self, f"weight_cif_{tag}", Parameter(uniform((2 * H, H), k, dtype)))
            setattr(self, f"weight_co_{tag}", Parameter(uniform((H, H), k, dtype)))

    def _fused(self, tag):
        if self.peephole:        # no fused op for peepholes: the primitive ops of lstm_step
            return None
        W_hh = self._param("weight_hh", tag)
        return LSTMStep, (W_hh,), {"W_T": transposed(W_hh)}

    def _cell(self, tag):
        W_hh, W_cif, W_co = (self._param(name, tag) for name in ("weight_hh", "weight_cif", "weight_co"))
        return lambda xw, state: lstm_step(xw, state, W_hh, W_cif, W_co)

    def extra_repr(self):
        return super().extra_repr() + (", peephole=True" if self.peephole else "")


class GRU(RNNBase):
    """GRU with gates r, z, n (PyTorch's order). ``reset_after=False``: the original GRU of the
    notes, where the reset gate multiplies h before W_hn."""

    n_gates, cell_name = 3, "GRUCell"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, *, reset_after=True, **kw):
        self.reset_after = reset_after
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, **kw)

    def _input_bias(self, tag):  # b_hh stays inside the step: b_hn is multiplied by r
        return self._param("bias_ih", tag) if self.bias else None

    def _fused(self, tag):
        if not self.reset_after:   # no fused op for the original GRU: the primitive ops of gru_step
            return None
        W_hh, b_hh = self._param("weight_hh", tag), self._param("bias_hh", tag)
        return GRUStep, (W_hh,) if b_hh is None else (W_hh, b_hh), {"W_T": transposed(W_hh)}

    def _cell(self, tag):
        W_hh, b_hh = self._param("weight_hh", tag), self._param("bias_hh", tag)
        if not self.reset_after:   # W_hh's (r, z) and n rows are used apart: split them once
            W_hh = split_reset_before(W_hh, self.hidden_size)
            b_hh = split_reset_before(b_hh, self.hidden_size) if b_hh is not None else None
        return lambda xw, state: gru_step(xw, state, W_hh, b_hh, reset_after=self.reset_after)

    def extra_repr(self):
        return super().extra_repr() + ("" if self.reset_after else ", reset_after=False")
