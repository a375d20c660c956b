"""The steps between the vanilla RNN and the LSTM (lecture notes: "Residual RNN step",
"What we drew"), and the highway connection (Srivastava et al. 2015).

Vanilla:         h_t = tanh(W_hid h_{t-1} + W_inp x_t + b)
Residual:        h_t = h_{t-1} + update(x_t, h_{t-1})
Gated residual:  h_t = forget(x_t, h_{t-1}) * h_{t-1} + update(x_t, h_{t-1})

    update(x, h) = tanh(W_hid^u h + W_inp^u x + b^u)
    forget(x, h) = sigmoid(W_hid^f h + W_inp^f x + b^f)

Backprop from h_t to h_{t-1} multiplies by the Jacobian. For the vanilla step it
is diag(1 - h_t**2) W_hid, which shrinks the gradient at every step. The residual
step adds the identity, I + diag(1 - u**2) W_hid^u. The gradient keeps a path
that is never multiplied down ("gradients do not vanish"), but the state can
only grow, since nothing can reset it. The gated step multiplies that path by
the forget gate. With forget = 1 and update = 0 the state is copied unchanged
("preserving information is effortless"), and forget = 0 can clear it. The
LSTM adds an input and an output gate to this.

Parameters follow PyTorch's RNN layout, with the gates stacked in the order
[update, forget]: weight_ih (G*H, I), weight_hh (G*H, H), bias_ih and
bias_hh (G*H), where G = 1 (residual) or 2 (gated). The notes' W_inp is
weight_ih, W_hid is weight_hh and b is bias_ih + bias_hh. All are drawn from
U(-1/sqrt(H), 1/sqrt(H)).
"""
import math

from ..creation import full
from ..function import scope
from ..cell_ops import GatedResidualStep, ResidualStep
from .cells import _CellBase, check_input
from .functional import linear
from .init import check_sizes, uniform
from .module import Module, Parameter
from .rnn import RNNBase, transposed


def residual_step(xw, state, W_hh):
    """h_t = h_{t-1} + tanh(W_hh h_{t-1} + xw),  with xw = W_ih x_t + b.

    xw (B, H), state (h_prev,) with h_prev (B, H), W_hh (H, H) -> (h_t,)."""
    (h_prev,) = state
    update = linear(h_prev, W_hh, xw).tanh()
    h = h_prev + update
    h.name = "h"
    return (h,)


def gated_residual_step(xw, state, W_hh):
    """update, forget = W_hh h_{t-1} + xw, split in two (order [update, forget])
    h_t = sigmoid(forget) * h_{t-1} + tanh(update)

    xw (B, 2H), state (h_prev,) with h_prev (B, H), W_hh (2H, H) -> (h_t,)."""
    (h_prev,) = state
    u, f = linear(h_prev, W_hh, xw).chunk(2, axis=-1)
    h = f.sigmoid() * h_prev + u.tanh()
    h.name = "h"
    return (h,)


def _open_forget_gate(bias_ih, bias_hh, H, value):
    """Make forget = sigmoid(value) at the start: b_ih^f = value, b_hh^f = 0.
    A positive value opens the gate, so the state is carried at first (as the
    forget-gate bias of 1 usually given to LSTMs, Jozefowicz et al. 2015)."""
    for b, v in ((bias_ih, value), (bias_hh, 0.0)):
        a = b.numpy()
        a[H:2 * H] = v
        b.data = b.backend.asarray(a, b.dtype)


# --- cells ---------------------------------------------------------------------
class ResidualRNNCell(_CellBase):
    """h' = h + tanh(W_ih x + b_ih + W_hh h + b_hh).  forward(input, hx=None) -> h'.

    input (B, I) or (I,); hx (B, H) or (H,), zeros when None."""

    def step(self, xw, state, W_T=None, out=None):
        return (ResidualStep.apply(xw, state[0], self.weight_hh, W_T=W_T, out=out),)


class GatedResidualRNNCell(_CellBase):
    """h' = sigmoid(f) * h + tanh(u),  with [u, f] = W_ih x + b_ih + W_hh h + b_hh.
    forward(input, hx=None) -> h'.

    ``forget_bias``: when given, the forget gate's bias starts at this value
    (b_ih^f = forget_bias, b_hh^f = 0), not at a random one."""

    n_gates = 2

    def __init__(self, input_size, hidden_size, bias=True, *, forget_bias=None, **kw):
        super().__init__(input_size, hidden_size, bias, **kw)
        self.forget_bias = forget_bias
        if forget_bias is not None:
            if not bias:
                raise ValueError("GatedResidualRNNCell: forget_bias needs bias=True")
            _open_forget_gate(self.bias_ih, self.bias_hh, hidden_size, forget_bias)

    def step(self, xw, state, W_T=None, out=None):
        return (GatedResidualStep.apply(xw, state[0], self.weight_hh, W_T=W_T, out=out),)


# --- layers ----------------------------------------------------------------------
class ResidualRNN(RNNBase):
    """Residual RNN layer: h_t = h_{t-1} + tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh).

    The API of ``RNN``: ResidualRNN(input_size, hidden_size, num_layers=1, bias=True,
    batch_first=False, dropout=0.0, bidirectional=False, init=, init_gain=, dtype=);
    forward(input (T, B, I), hx (L*D, B, H) = None) -> output (T, B, D*H), h_n (L*D, B, H).
    Each step runs in scope ("ResidualRNN", "layer<k>", "t=<t>", "ResidualRNNCell")."""

    cell_name = "ResidualRNNCell"

    def _fused(self, tag):
        W_hh = self._param("weight_hh", tag)
        return ResidualStep, (W_hh,), {"W_T": transposed(W_hh)}

    def _cell(self, tag):
        W_hh = self._param("weight_hh", tag)
        return lambda xw, state: residual_step(xw, state, W_hh)


class GatedResidualRNN(RNNBase):
    """Gated residual RNN layer: h_t = sigmoid(f_t) * h_{t-1} + tanh(u_t), where
    [u_t, f_t] = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh (gates stacked [update, forget]).

    The API of ``RNN``, plus ``forget_bias`` (None: random like every bias; a number
    such as 1.0: the forget gate's bias starts there, so the state is carried at first).
    Each step runs in scope ("GatedResidualRNN", "layer<k>", "t=<t>", "GatedResidualRNNCell")."""

    n_gates, cell_name = 2, "GatedResidualRNNCell"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, *, forget_bias=None, **kw):
        if forget_bias is not None and not bias:
            raise ValueError("GatedResidualRNN: forget_bias needs bias=True")
        self.forget_bias = forget_bias
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, **kw)

    def _extra_parameters(self, tag, H, k, dtype):
        # runs right after this layer's biases are made
        if self.forget_bias is not None:
            _open_forget_gate(self._param("bias_ih", tag), self._param("bias_hh", tag), H, self.forget_bias)

    def _fused(self, tag):
        W_hh = self._param("weight_hh", tag)
        return GatedResidualStep, (W_hh,), {"W_T": transposed(W_hh)}

    def _cell(self, tag):
        W_hh = self._param("weight_hh", tag)
        return lambda xw, state: gated_residual_step(xw, state, W_hh)

    def extra_repr(self):
        return super().extra_repr() + ("" if self.forget_bias is None else f", forget_bias={self.forget_bias}")


# --- highway -----------------------------------------------------------------------
class Highway(Module):
    """Highway connection (Srivastava et al. 2015; notes: "Highway Networks"):

        g = sigmoid(W_T x + b_T)           the transform gate
        y = g * H(x) + (1 - g) * x,        H(x) = tanh(W_H x + b_H)  (or relu)

    computed as y = x + g * (H(x) - x), which is one op shorter. With g = 0 the
    input is carried through unchanged. ``gate_bias`` is the initial b_T, and it
    is negative (-1 by default, as the paper advises) so that the layer starts
    close to the identity and gradients pass straight through it.

    x: (..., size) -> y: (..., size). Between recurrent layers it applies to the
    whole sequence (T, B, size) at once, inside scope "Highway".
    Parameters: weight_H, weight_T (size, size), bias_H, bias_T (size,),
    drawn from U(-1/sqrt(size), 1/sqrt(size)) except bias_T = gate_bias.
    """

    def __init__(self, size, activation="tanh", gate_bias=-1.0, dtype="float32"):
        super().__init__()
        check_sizes("Highway", size=(size, 1))
        if activation not in ("tanh", "relu"):
            raise ValueError(f"Highway: activation must be 'tanh' or 'relu', got {activation!r}")
        self.size, self.activation, self.gate_bias = size, activation, gate_bias
        k = 1 / math.sqrt(size)
        self.weight_H = Parameter(uniform((size, size), k, dtype))
        self.bias_H = Parameter(uniform((size,), k, dtype))
        self.weight_T = Parameter(uniform((size, size), k, dtype))
        self.bias_T = Parameter(full((size,), gate_bias, dtype=dtype))

    def forward(self, x):
        check_input("Highway", x, self.size, self.weight_H)
        with scope("Highway"):
            g = linear(x, self.weight_T, self.bias_T).sigmoid()
            a = linear(x, self.weight_H, self.bias_H)
            H = a.tanh() if self.activation == "tanh" else a.relu()
            return x + g * (H - x)

    def extra_repr(self):
        s = f"{self.size}"
        if self.activation != "tanh":
            s += f", activation={self.activation!r}"
        return s + f", gate_bias={self.gate_bias}"
