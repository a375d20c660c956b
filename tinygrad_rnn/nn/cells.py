"""One step of each recurrent cell, and the cell modules RNNCell, LSTMCell and GRUCell.

A step takes ``xw``, the input's contribution W_ih x_t + b already computed (the layers
compute it for all timesteps in one product), the previous state as a tuple, ``(h,)``
or ``(h, c)`` for the LSTM, and the weights; it returns the new state tuple.

Each step below is written with the engine's primitive ops, one graph node per op: the
cell's equations as you would write them. Layers and cells run the same step as one
fused op (``tinygrad_rnn.cell_ops``: RNNStep, LSTMStep, GRUStep), which computes the same
numbers faster and expands into exactly these ops for pictures, anomaly checks and
recorded gradients. The variants without a fused op (LSTM peepholes, the original GRU
with ``reset_after=False``, the ReLU of an RNN) run the steps below directly.

Shapes: x (B, input_size), h and c (B, H); W_ih (G*H, input_size), W_hh (G*H, H) with
G gates stacked in PyTorch's order.
"""
import math

from ..cell_ops import GRUStep, LSTMStep, RNNStep
from ..creation import zeros
from ..function import scope
from ..tensor import Tensor
from .functional import linear
from .init import check_sizes, recurrent_matrix, uniform
from .module import Module, Parameter


def rnn_step(xw, state, W_hh, nonlinearity="tanh"):
    """h_t = tanh(W_hh h_{t-1} + W_ih x_t + b)   (Elman)."""
    (h_prev,) = state
    a = linear(h_prev, W_hh, xw)
    h = a.tanh() if nonlinearity == "tanh" else a.relu()
    h.name = "h"
    return (h,)


def lstm_step(xw, state, W_hh, W_cif=None, W_co=None):
    """i, f, g, o = W_hh h_{t-1} + W_ih x_t + b, split in four (PyTorch's order)
    i, f, o = sigmoid(.), g = tanh(.)
    c_t = f * c_{t-1} + i * g        (the constant error carousel: only * f on the way back)
    h_t = o * tanh(c_t)

    With peepholes (the lecture's "complete LSTM unit") the gates also see the
    cell: i and f add W_cif c_{t-1}, o adds W_co c_t."""
    h_prev, c_prev = state
    a = linear(h_prev, W_hh, xw)
    i, f, g, o = a.chunk(4, axis=-1)
    if W_cif is not None:
        ci, cf = linear(c_prev, W_cif).chunk(2, axis=-1)
        i, f = i + ci, f + cf
    i, f, g = i.sigmoid(), f.sigmoid(), g.tanh()
    c = f * c_prev + i * g
    if W_co is not None:
        o = o + linear(c, W_co)
    h = o.sigmoid() * c.tanh()
    h.name, c.name = "h", "c"
    return h, c


def gru_step(xw, state, W_hh, b_hh=None, reset_after=True):
    """r, z = sigmoid(W_ir x + W_hr h + b_r), sigmoid(W_iz x + W_hz h + b_z)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))     (reset_after=True: PyTorch, cuDNN)
    n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)     (reset_after=False: Cho et al. 2014, the notes)
    h_t = (1 - z) * n + z * h_{t-1} = lerp(n, h_{t-1}, z), one op (torch.lerp)

    (The notes write h_t = (1 - z) h_{t-1} + z h~: the same cell with z and 1 - z swapped.)
    With reset_after=False, W_hh and b_hh may come split as (W_hrz, W_hn) (``split_reset_before``)."""
    (h_prev,) = state
    x_r, x_z, x_n = xw.chunk(3, axis=-1)
    if reset_after:
        h_r, h_z, h_n = linear(h_prev, W_hh, b_hh).chunk(3, axis=-1)
        r, z = (x_r + h_r).sigmoid(), (x_z + h_z).sigmoid()
        n = (x_n + r * h_n).tanh()
    else:
        H = h_prev.shape[-1]
        W_hrz, W_hn = split_reset_before(W_hh, H) if isinstance(W_hh, Tensor) else W_hh
        b_hrz, b_hn = split_reset_before(b_hh, H) if isinstance(b_hh, Tensor) else (b_hh or (None, None))
        h_r, h_z = linear(h_prev, W_hrz, b_hrz).chunk(2, axis=-1)
        r, z = (x_r + h_r).sigmoid(), (x_z + h_z).sigmoid()
        n = (x_n + linear(r * h_prev, W_hn, b_hn)).tanh()
    h = n.lerp(h_prev, z)
    h.name = "h"
    return (h,)


def split_reset_before(W_hh, H):
    """(W_hr and W_hz rows, W_hn rows) of W_hh (or of b_hh). A GRU layer with reset_after=False
    splits once per forward and passes the pair to ``gru_step`` instead of W_hh."""
    return W_hh.split([2 * H, H], axis=0)


def check_input(name, x, input_size, weight):
    """The errors a user meets first: integer input, wrong feature size, wrong dtype."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a Tensor input, got {type(x).__name__}")
    if not x.is_floating_point:
        raise TypeError(f"{name}: expected a floating-point input ({weight.dtype}), got {x.dtype} of shape "
                        f"{x.shape}; token ids need an nn.Embedding or a one-hot encoding first")
    if x.ndim == 0 or x.shape[-1] != input_size:
        raise ValueError(f"{name}: expected input with {input_size} features in its last axis, got shape {x.shape}")
    if x.dtype != weight.dtype:
        raise TypeError(f"{name}: input is {x.dtype} but the parameters are {weight.dtype}; "
                        f"convert one with .float() / .double()")
    if x.device != weight.device:
        raise ValueError(f"{name}: input is on backend {x.device!r} but the parameters are on "
                         f"{weight.device!r}; move one with .to(...)")


class _CellBase(Module):
    """Parameters of one cell: weight_ih (G*H, I), weight_hh (G*H, H), bias_ih, bias_hh (G*H).
    ``forward(input, hx=None)``: input (B, I) or (I,); the state (B, H) or (H,) (LSTM: a pair),
    zeros when None; ``step(xw, state)`` (each subclass's) makes the new state."""

    n_gates = 1
    n_states = 1

    def __init__(self, input_size, hidden_size, bias=True, init="default", init_gain=1.0, dtype="float32"):
        super().__init__()
        check_sizes(type(self).__name__, input_size=(input_size, 0), hidden_size=(hidden_size, 1))
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        G, H, k = self.n_gates, hidden_size, 1 / math.sqrt(hidden_size)
        self.weight_ih = Parameter(uniform((G * H, input_size), k, dtype))
        self.weight_hh = Parameter(recurrent_matrix(init, H, G, init_gain, dtype))
        if bias:
            self.bias_ih = Parameter(uniform((G * H,), k, dtype))
            self.bias_hh = Parameter(uniform((G * H,), k, dtype))

    def forward(self, input, hx=None):
        x, state, batched = self._prepare(input, hx)
        with scope(type(self).__name__):
            state = self.step(linear(x, self.weight_ih, self._input_bias()), state)
        state = tuple(s if batched else s.squeeze(0) for s in state)
        return state[0] if self.n_states == 1 else state

    def _input_bias(self):
        """The bias folded into the input's share (b_ih + b_hh where the cell allows it)."""
        return self.bias_ih + self.bias_hh if self.bias else None

    def _prepare(self, x, hx):
        """Check shapes; add a batch axis to unbatched input; zeros for a missing state."""
        name, n_states = type(self).__name__, self.n_states
        check_input(name, x, self.input_size, self.weight_ih)
        if x.ndim not in (1, 2):
            raise ValueError(f"{name}: expected input of shape (batch, {self.input_size}) or "
                             f"({self.input_size},), got {x.shape}")
        batched = x.ndim == 2
        if not batched:
            x = x.unsqueeze(0)
        B, H = x.shape[0], self.hidden_size
        if hx is None:
            hx = (None,) * n_states
        elif n_states == 1:
            hx = (hx,)
        elif not (isinstance(hx, (tuple, list)) and len(hx) == n_states):
            raise TypeError(f"{name}: hx must be a pair (h, c) of tensors, got {type(hx).__name__}"
                            f"{' of shape ' + str(hx.shape) if isinstance(hx, Tensor) else ''}")
        states = []
        for s in hx:
            if s is None:
                s = zeros(B, H, dtype=x.dtype, backend=x.backend)
            else:
                if not isinstance(s, Tensor):
                    raise TypeError(f"{name}: expected the state to be a Tensor, got {type(s).__name__}")
                expected = (B, H) if batched else (H,)
                if s.shape != expected:
                    raise ValueError(f"{name}: expected state of shape {expected}, got {s.shape}")
                if s.dtype != x.dtype:
                    raise TypeError(f"{name}: the state is {s.dtype} but the input is {x.dtype}")
                if not batched:
                    s = s.unsqueeze(0)
            states.append(s)
        return x, tuple(states), batched

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")


class RNNCell(_CellBase):
    """h' = tanh(W_ih x + b_ih + W_hh h + b_hh) (or relu). forward(input, hx=None) -> h'."""

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", **kw):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, bias, **kw)
        self.nonlinearity = nonlinearity

    def step(self, xw, state, W_T=None, out=None):
        return (RNNStep.apply(xw, state[0], self.weight_hh, nonlinearity=self.nonlinearity, W_T=W_T, out=out),)


class LSTMCell(_CellBase):
    """forward(input, (h, c)=None) -> (h', c'); gates i, f, g, o as PyTorch."""

    n_gates, n_states = 4, 2

    def step(self, xw, state, W_T=None, out=None):
        return LSTMStep.apply(xw, state[0], state[1], self.weight_hh, W_T=W_T, out=out)


class GRUCell(_CellBase):
    """forward(input, hx=None) -> h'; gates r, z, n as PyTorch (``reset_after=False``: the original GRU)."""

    n_gates = 3

    def __init__(self, input_size, hidden_size, bias=True, reset_after=True, **kw):
        super().__init__(input_size, hidden_size, bias, **kw)
        self.reset_after = reset_after

    def _input_bias(self):       # b_hh stays inside the step: b_hn is multiplied by r
        return self.bias_ih if self.bias else None

    def step(self, xw, state, W_T=None, out=None):
        b_hh = self.bias_hh if self.bias else None
        if not self.reset_after:
            return gru_step(xw, state, self.weight_hh, b_hh, reset_after=False)
        inputs = (xw, state[0], self.weight_hh) + ((b_hh,) if b_hh is not None else ())
        return (GRUStep.apply(*inputs, W_T=W_T, out=out),)
