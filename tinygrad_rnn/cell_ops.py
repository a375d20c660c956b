"""Fused recurrent-cell ops: one timestep of an RNN, LSTM, GRU or residual RNN as one graph node.

Written with primitive ops, an LSTM step is 11 graph nodes, and each costs a few µs of
Python in forward and again in backward: at small sizes more than the arithmetic. These
ops compute a whole step the way hand-written BPTT does (tinygrad_rnn/by_hand.py): the
recurrent product with a row-major copy of W_hh.T, the gate nonlinearities in one pass,
W_hh's gradient kept as factors (``ops.OuterProducts``) and multiplied once for all
timesteps, and exactly the arrays hand-written backward keeps.

Nothing is hidden. Each op is a ``fused.Fused``: it also knows the primitive ops it stands
for (``primitive``, the same step as nn/cells.py writes it), and ``expand()`` rebuilds
them on the node's own inputs and saved values. So the pictures draw every sigmoid and mul inside a step,
``record_gradients()`` and ``detect_anomaly()`` name the op inside the cell, and the
tests check each fused backward against its primitive ops, finite differences,
by_hand.py and PyTorch.

A layer runs these ops through ``Recurrence`` (recurrence.py): one graph node for its
whole time loop, calling each step's ``forward`` and ``gradients``. ``nn.LSTMCell`` and
friends call ``apply``, one node per step.

Inputs: xw (B, G*H), the input's share W_ih x_t + b of the gate pre-activations (the
layer computes it for all timesteps in one product); the previous state h_prev (and
c_prev) (B, H); W_hh (G*H, H). Attributes: ``W_T``, W_hh.T as a row-major copy made once
per forward (optional), and ``out``, an array of h's shape to write h into (the layer's
output row, so each h(t) is kept once; ``gradients(dh, out)`` likewise writes dxw into a
row of the layer's dxw). NumPy computes straight into such a row (ufuncs' out=); the Array API
has no out=, so other libraries compute, then copy (``Backend.write``).
"""
from .backend import backend_of
from .fused import Fused, given, saved_value
from .ops import Linear, OuterProducts


class CellStep(Fused):
    """What the fused cell ops share: the recurrent weights' gradient, and their expansion into
    primitive ops.

    Every step starts with the affine map a = h_prev @ W_hh.T (+ b_hh). It saves
    (*state_prev, W_hh, *extras): the previous state (h_prev, and c_prev for the LSTM), then
    W_hh, then what its backward needs beyond them (the LSTM's gates and tanh(c)); the RNN's
    extra is its new h (``saves_h``). A step's ``gradients`` gives dxw, the previous state's
    gradient and da, the gradient of a; then dW_hh = da.T @ h_prev and db_hh = da (summed over
    the batch). ``Recurrence`` calls ``gradients`` for every timestep and forms dW_hh once."""

    biased = False        # with b_hh (GRU; a node sets its own only then)
    saves_h = False       # the last thing saved is the new h (Recurrence has it in its hs)

    def write(self, out, f, *args):
        """f(*args): a new array, or, when ``out`` is given (a row of the layer's output or of its
        dxw), written there by the backend (``Backend.write``: NumPy's out=, else a copy). The
        layer's Recurrence looks it up once and gives it to its step op."""
        return backend_of(self.xp).write(out, f, *args)

    def backward(self, dys):
        *dxs, da = self.gradients(dys)
        dW_hh = OuterProducts(self.xp, da, self.saved[0])
        return (*dxs, dW_hh, da) if self.biased else (*dxs, dW_hh)


class RNNStep(CellStep):
    """h = tanh(xw + h_prev @ W_hh.T)  (or relu): one Elman step.

    backward: dz = dh * (1 - h**2) (relu: dh * (h > 0));  dxw = dz;  dh_prev = dz @ W_hh;
              dW_hh = dz.T @ h_prev (kept as factors)"""
    formula = "dz = dh * (1 - h**2);  dxw = dz;  dh_prev = dz @ W_hh;  dW_hh = dz.T @ h_prev"
    out_names = {0: "h"}
    saved_inputs = {1: 0, 2: 1}            # input position -> position in self.saved
    saves_h = True
    nonlinearity = "tanh"                  # (a node sets its own only for relu)

    def forward(self, xw, h_prev, W_hh, nonlinearity="tanh", W_T=None, out=None):
        xp = self.xp
        if nonlinearity != "tanh":
            self.nonlinearity = nonlinearity
        a = h_prev @ (xp.matrix_transpose(W_hh) if W_T is None else W_T)
        a += xw
        if nonlinearity == "tanh":
            h = self.write(out, xp.tanh, a)
        else:
            h = self.write(out, xp.maximum, a, xp.zeros((), dtype=a.dtype))
        self.save_for_backward(h_prev, W_hh, h)
        return h

    def gradients(self, dh, out=None):
        """(dxw, dh_prev, da); here da = dz = dxw (written into ``out`` when given)."""
        xp = self.xp
        h_prev, W_hh, h = self.saved
        if self.nonlinearity == "tanh":
            dz = self.write(out, xp.multiply, 1 - h * h, dh)
        else:
            dz = self.write(out, xp.multiply, dh, xp.astype(h > 0, dh.dtype))
        return dz, dz @ W_hh, dz

    def primitive(self, xw, h_prev, W_hh):
        """The same step as primitive ops (nn.cells.rnn_step): linear, then tanh (or relu)."""
        a = linear(h_prev, W_hh, xw)
        h = a.tanh() if self.nonlinearity == "tanh" else a.relu()
        return (given(h, saved_value(self, 2)),)


class LSTMStep(CellStep):
    """One LSTM step, gates in PyTorch's order i, f, g, o:
        a = xw + h_prev @ W_hh.T;  i, f, o = sigmoid(a_i, a_f, a_o);  g = tanh(a_g)
        c = f * c_prev + i * g;    h = o * tanh(c)

    backward (the notes' "Backpropagation rules: Backward"):
        dc = dc_out + dh * o * (1 - tanh(c)**2)          (the constant error carousel)
        da = [dc * g, dc * c_prev, dc * i, dh * tanh(c)] * gate'(a)
        dc_prev = dc * f;  dh_prev = da @ W_hh;  dxw = da;  dW_hh = da.T @ h_prev"""
    formula = "dc = dc' + dh*o*(1 - tanh(c)**2);  da = [dc*g, dc*c_prev, dc*i, dh*tanh(c)] * gate';  dc_prev = dc*f"
    multi_output = True
    out_names = {0: "h", 1: "c"}
    saved_inputs = {1: 0, 2: 1, 3: 2}

    def forward(self, xw, h_prev, c_prev, W_hh, W_T=None, out=None):
        xp = self.xp
        H = c_prev.shape[-1]
        m, k = _gate_affine(xp, H, c_prev.dtype, 4, 2)   # sigmoid(a) = 0.5 tanh(0.5 a) + 0.5; tanh (g): 1, 0
        y = h_prev @ (xp.matrix_transpose(W_hh) if W_T is None else W_T)
        y += xw
        y *= m
        y = xp.tanh(y)
        y *= m
        y += k                                               # y = [i, f, g, o]
        i, f, g, o = y[..., :H], y[..., H:2 * H], y[..., 2 * H:3 * H], y[..., 3 * H:]
        c = f * c_prev + i * g
        tanh_c = xp.tanh(c)
        h = self.write(out, xp.multiply, o, tanh_c)
        self.save_for_backward(h_prev, c_prev, W_hh, y, tanh_c)
        return h, c

    def gradients(self, dys, out=None):
        """(dxw, dh_prev, dc_prev, da); da = dxw (written into ``out`` when given)."""
        xp = self.xp
        dh, dc = dys
        h_prev, c_prev, W_hh, y, tanh_c = self.saved
        H = c_prev.shape[-1]
        i, f, g, o = y[..., :H], y[..., H:2 * H], y[..., 2 * H:3 * H], y[..., 3 * H:]
        if dh is None:
            dh = xp.zeros_like(c_prev)
        dc_total = dh * o * (1 - tanh_c * tanh_c)
        if dc is not None:
            dc_total += dc
        da = xp.concat([dc_total * g, dc_total * c_prev, dc_total * i, dh * tanh_c], axis=-1)
        m, k = _gate_affine(xp, H, y.dtype, 4, 2)
        da = self.write(out, xp.multiply, da, m * m - (y - k) ** 2)    # gate'(a): y (1 - y) for sigmoid, 1 - y**2 for tanh
        return da, da @ W_hh, dc_total * f, da

    def primitive(self, xw, h_prev, c_prev, W_hh):
        """The same step as primitive ops (nn.cells.lstm_step): linear, split, sigmoid and
        tanh, mul, add, tanh, mul; the gates and tanh(c) hold the values forward saved."""
        y_i, y_f, y_g, y_o = _parts(saved_value(self, 3), 4)
        a = linear(h_prev, W_hh, xw)
        i, f, g, o = a.chunk(4, axis=-1)
        i, f, g = given(i.sigmoid(), y_i), given(f.sigmoid(), y_f), given(g.tanh(), y_g)
        c = f * c_prev + i * g
        h = given(o.sigmoid(), y_o) * given(c.tanh(), saved_value(self, 4))
        return h, c


class GRUStep(CellStep):
    """One GRU step (PyTorch's, reset gate after W_hn), gates r, z, n:
        hw = h_prev @ W_hh.T + b_hh;  r, z = sigmoid(xw_r + hw_r, xw_z + hw_z)
        n = tanh(xw_n + r * hw_n);   h = n + z * (h_prev - n)   (torch.lerp(n, h_prev, z))

    backward: dz_n = dh (1 - z)(1 - n**2);  dr = dz_n hw_n r(1 - r);  dz = dh (h_prev - n) z(1 - z)
              dxw = [dr, dz, dz_n];  dhw = [dr, dz, dz_n * r];  dh_prev = dh z + dhw @ W_hh"""
    formula = "dz_n = dh*(1-z)*(1-n**2);  dxw = [dr, dz, dz_n];  dhw = [dr, dz, dz_n*r];  dh_prev = dh*z + dhw @ W_hh"
    out_names = {0: "h"}
    saved_inputs = {1: 0, 2: 1}

    def forward(self, xw, h_prev, W_hh, b_hh=None, W_T=None, out=None):
        xp = self.xp
        H = h_prev.shape[-1]
        if b_hh is not None:
            self.biased = True
        hw = h_prev @ (xp.matrix_transpose(W_hh) if W_T is None else W_T)
        if b_hh is not None:
            hw += b_hh
        rz = xw[..., :2 * H] + hw[..., :2 * H]
        rz *= 0.5                                            # sigmoid of r and z in one pass
        rz = xp.tanh(rz)
        rz += 1
        rz *= 0.5
        r, z = rz[..., :H], rz[..., H:]
        hw_n = xp.asarray(hw[..., 2 * H:], copy=True)       # kept for dr; a copy, so hw is freed
        n = xp.tanh(xw[..., 2 * H:] + r * hw_n)
        h = self.write(out, xp.add, n, z * (h_prev - n))
        self.save_for_backward(h_prev, W_hh, rz, n, hw_n)
        return h

    def gradients(self, dh, out=None):
        """(dxw, dh_prev, da), with da = dhw, the gradient of h_prev @ W_hh.T + b_hh (``out``: unused)."""
        xp = self.xp
        h_prev, W_hh, rz, n, hw_n = self.saved
        H = h_prev.shape[-1]
        r, z = rz[..., :H], rz[..., H:]
        dz_n = dh * (1 - z) * (1 - n * n)
        drz = xp.concat([dz_n * hw_n, dh * (h_prev - n)], axis=-1)
        drz *= rz - rz * rz                                  # sigmoid' of r and z in one pass
        dxw = xp.concat([drz, dz_n], axis=-1)
        dhw = xp.concat([drz, dz_n * r], axis=-1)
        return dxw, dh * z + dhw @ W_hh, dhw

    def primitive(self, xw, h_prev, W_hh, b_hh=None):
        """The same step as primitive ops (nn.cells.gru_step); r, z and n hold the values
        forward saved."""
        y_r, y_z = _parts(saved_value(self, 2), 2)
        x_r, x_z, x_n = xw.chunk(3, axis=-1)
        h_r, h_z, h_n = linear(h_prev, W_hh, b_hh).chunk(3, axis=-1)
        r, z = given((x_r + h_r).sigmoid(), y_r), given((x_z + h_z).sigmoid(), y_z)
        n = given((x_n + r * h_n).tanh(), saved_value(self, 3))
        return (n.lerp(h_prev, z),)


class ResidualStep(CellStep):
    """h = h_prev + tanh(xw + h_prev @ W_hh.T): the residual step (nn/residual.py).

    backward: du = dh * (1 - u**2);  dxw = du;  dh_prev = dh + du @ W_hh   (the identity path:
              the gradient never shrinks on its way back);  dW_hh = du.T @ h_prev"""
    formula = "du = dh * (1 - u**2);  dxw = du;  dh_prev = dh + du @ W_hh;  dW_hh = du.T @ h_prev"
    out_names = {0: "h"}
    saved_inputs = {1: 0, 2: 1}

    def forward(self, xw, h_prev, W_hh, W_T=None, out=None):
        xp = self.xp
        a = h_prev @ (xp.matrix_transpose(W_hh) if W_T is None else W_T)
        a += xw
        u = xp.tanh(a)
        self.save_for_backward(h_prev, W_hh, u)
        return self.write(out, xp.add, h_prev, u)

    def gradients(self, dh, out=None):
        """(dxw, dh_prev, da); da = du = dxw (written into ``out`` when given)."""
        xp = self.xp
        h_prev, W_hh, u = self.saved
        du = self.write(out, xp.multiply, 1 - u * u, dh)
        return du, dh + du @ W_hh, du

    def primitive(self, xw, h_prev, W_hh):
        """The same step as primitive ops (nn.residual.residual_step): linear, tanh, add."""
        update = given(linear(h_prev, W_hh, xw).tanh(), saved_value(self, 2))
        return (h_prev + update,)


class GatedResidualStep(CellStep):
    """h = sigmoid(f) * h_prev + tanh(u), with [u, f] = xw + h_prev @ W_hh.T (nn/residual.py).

    backward: du = dh (1 - tanh(u)**2);  df = dh h_prev sigmoid(f) (1 - sigmoid(f));
              dxw = [du, df];  dh_prev = dh sigmoid(f) + [du, df] @ W_hh"""
    formula = "da = [dh*(1 - tanh(u)**2), dh*h_prev*f'];  dxw = da;  dh_prev = dh*sigmoid(f) + da @ W_hh"
    out_names = {0: "h"}
    saved_inputs = {1: 0, 2: 1}

    def forward(self, xw, h_prev, W_hh, W_T=None, out=None):
        xp = self.xp
        H = h_prev.shape[-1]
        m, k = _gate_affine(xp, H, h_prev.dtype, 2, 0)          # tanh(u), sigmoid(f) in one pass
        y = h_prev @ (xp.matrix_transpose(W_hh) if W_T is None else W_T)
        y += xw
        y *= m
        y = xp.tanh(y)
        y *= m
        y += k                                                   # y = [tanh(u), sigmoid(f)]
        self.save_for_backward(h_prev, W_hh, y)
        return self.write(out, xp.add, y[..., H:] * h_prev, y[..., :H])

    def gradients(self, dh, out=None):
        """(dxw, dh_prev, da); da = dxw (written into ``out`` when given)."""
        xp = self.xp
        h_prev, W_hh, y = self.saved
        H = h_prev.shape[-1]
        m, k = _gate_affine(xp, H, y.dtype, 2, 0)
        da = xp.concat([dh, dh * h_prev], axis=-1)
        da = self.write(out, xp.multiply, da, m * m - (y - k) ** 2)     # tanh' and sigmoid' in one pass
        return da, dh * y[..., H:] + da @ W_hh, da

    def primitive(self, xw, h_prev, W_hh):
        """The same step as primitive ops (nn.residual.gated_residual_step)."""
        y_u, y_f = _parts(saved_value(self, 2), 2)
        u, f = linear(h_prev, W_hh, xw).chunk(2, axis=-1)
        return (given(f.sigmoid(), y_f) * h_prev + given(u.tanh(), y_u),)


# --- helpers --------------------------------------------------------------------------
def linear(x, W, b=None):
    """x @ W.T + b as the primitive op (nn.functional.linear without its checks: the inputs are a
    step's own)."""
    return Linear.apply(x, W) if b is None else Linear.apply(x, W, b)


_GATE_AFFINE = {}


def _gate_affine(xp, H, dtype, n, tanh_gate):
    """Per-column constants m, k with gate = m * tanh(m * a) + k for ``n`` gates of H columns:
    0.5 and 0.5 (sigmoid) except gate ``tanh_gate``, 1 and 0 (tanh), so that all the gates take
    one pass. Made once per (namespace, H, dtype, gates)."""
    key = (id(xp), H, dtype, n, tanh_gate)
    hit = _GATE_AFFINE.get(key)
    if hit is None:
        before, after = tanh_gate * H, (n - 1 - tanh_gate) * H
        m = xp.concat([xp.full((before,), 0.5, dtype=dtype), xp.ones((H,), dtype=dtype),
                       xp.full((after,), 0.5, dtype=dtype)])
        k = xp.concat([xp.full((before,), 0.5, dtype=dtype), xp.zeros((H,), dtype=dtype),
                       xp.full((after,), 0.5, dtype=dtype)])
        hit = _GATE_AFFINE[key] = (m, k)
    return hit


def _parts(y, n):
    """``y``'s n equal slices along its last axis (None: n Nones)."""
    if y is None:
        return (None,) * n
    H = y.shape[-1] // n
    return tuple(y[..., j * H:(j + 1) * H] for j in range(n))
