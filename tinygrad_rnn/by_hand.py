"""Backpropagation through time by hand: RNN, LSTM and GRU in plain NumPy, no autodiff.

This module is deliberately *outside* the engine: it imports NumPy directly,
knows nothing of Tensors or graphs, and runs on the host only. Every gradient
below was derived on paper from the lecture notes in ../shared/seeds/ and is
written out step by step. The formulas quoted come from the "Deep Learning
Recurrent Networks" slides (seeds/002_*.txt): [BPTT] its "Back Propagation
Through Time" slides, e.g.

    dDIV/dh_i(t) = sum_j w_ij^(1) dDIV/dZ_j^(1)(t) + sum_j w_ij^(11) dDIV/dZ_j^(0)(t+1)
    dDIV/dZ_i(t) = dDIV/dh_i(t) f'(Z_i(t))
    dDIV/dw_ij^(11) += dDIV/dZ_j(t) h_i(t-1)        (shared weights: "+=" over every t)

and [LSTM] its "Backpropagation rules: Forward / Backward" slides; the loss is
the char-RNN slides' (seeds/001_*.txt) Loss = sum_i log P(t_i) [t_i = true],
negated and averaged. It serves three purposes:

* teaching: read it side by side with ``tinygrad_rnn.nn.cells``, where the
  same forward is written with the engine's ops and backward comes for free;
* a test oracle: the engine's gradients must equal these (tests/test_by_hand.py);
* the speed floor for benchmarks: it is written the way a careful person
  writes NumPy BPTT, so the engine is timed against something fair:
    - the input's share of every pre-activation, W_ih x(t) + b, for all t in one matmul;
    - the gate nonlinearities in one pass over all gate columns;
    - backward collects the pre-activation gradients dDIV/dZ(t) of all steps in one
      (T, B, G*H) array and computes each weight gradient as ONE matmul after the loop
      (the notes' "+=" over t, done by BLAS);
    - sigmoid(x) = 0.5 * (1 + tanh(0.5 * x)), the engine's formula.

Shapes and names follow PyTorch: x (T, B, I), h (T, B, H); W_ih (G*H, I),
W_hh (G*H, H), b_ih and b_hh (G*H,) with G gates stacked as i, f, g, o (LSTM)
or r, z, n (GRU, PyTorch's "reset after" form).

Each ``*_forward`` returns ``(outputs, final_state, cache)``; the cache is a dict
holding exactly the arrays backward needs (``cache_nbytes`` measures it). Each
``*_backward(d_outputs, cache, W_ih, W_hh, d_final=None)`` returns a dict of
gradients named like the parameters ("weight_ih", ...) plus "input" and "h0"
(and "c0").
"""
import math

import numpy as np

__all__ = ["sigmoid", "one_hot", "cache_nbytes",
           "rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward", "gru_forward", "gru_backward",
           "init_char_params", "char_model_forward", "char_model_backward", "sgd_update", "char_model_step"]


def sigmoid(x):
    """sigmoid(x) = 1 / (1 + exp(-x)) = 0.5 * (1 + tanh(0.5 x)): never overflows (the engine's formula)."""
    return 0.5 * (1 + np.tanh(0.5 * x))


def one_hot(ids, num_classes, dtype=np.float32):
    """ids (...) integers -> (..., num_classes) with a 1 at each id."""
    out = np.zeros(ids.shape + (num_classes,), dtype=dtype)
    np.put_along_axis(out, ids[..., None], 1, axis=-1)
    return out


def cache_nbytes(cache):
    """Bytes of memory a (possibly nested) forward cache keeps alive: every array's buffer,
    counted once however many views of it the cache holds (h_n is a view of h)."""
    buffers = {}
    stack = [cache]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, (tuple, list)):
            stack.extend(v)
        elif isinstance(v, np.ndarray):
            owner = v if v.base is None else v.base
            buffers[id(owner)] = getattr(owner, "nbytes", v.nbytes)
    return sum(buffers.values())


def _input_projection(x, W_ih, b):
    """W_ih x(t) + b for every t at once: one (T*B, I) @ (I, G*H) product -> (T, B, G*H)."""
    T, B, I = x.shape
    z = x.reshape(T * B, I) @ W_ih.T                  # one product: the transposed view costs nothing here
    z += b
    return z.reshape(T, B, -1)


def _weight_grads(dZ, inputs, h_prev, need_input, W_ih):
    """The notes' sums over time, each as one matmul over all T*B rows [BPTT]:

        dDIV/dw_ij^(0)  = sum_t dDIV/dZ_j(t) X_i(t)       -> dW_ih = dZ^T X
        dDIV/dw_ij^(11) = sum_t dDIV/dZ_j(t) h_i(t-1)     -> dW_hh = dZ^T h_prev
    dZ: (T, B, G*H) pre-activation gradients. Returns dW_ih, dW_hh, db, dx."""
    T, B, GH = dZ.shape
    dZ2 = dZ.reshape(T * B, GH)
    dW_ih = dZ2.T @ inputs.reshape(T * B, -1)
    dW_hh = dZ2.T @ h_prev.reshape(T * B, -1)
    db = dZ2.sum(axis=0)
    dx = (dZ2 @ W_ih).reshape(T, B, -1) if need_input else None
    return dW_ih, dW_hh, db, dx


# ============================================================================ vanilla RNN
def rnn_forward(x, h0, W_ih, W_hh, b_ih, b_hh):
    """Elman RNN [BPTT]:  Z(t) = W_ih x(t) + W_hh h(t-1) + b,   h(t) = tanh(Z(t)).

    x (T, B, I), h0 (B, H) -> outputs h(1..T) (T, B, H), h_n (B, H), cache."""
    T, B, _ = x.shape
    H = W_hh.shape[1]
    h = np.empty((T + 1, B, H), dtype=x.dtype)   # h[0] = h0, h[t + 1] = h(t): h_prev is h[:-1]
    h[0] = h0
    Z = _input_projection(x, W_ih, b_ih + b_hh)
    W_hh_T = np.ascontiguousarray(W_hh.T)         # once: a product with a transposed view is slower
    for t in range(T):
        Z[t] += h[t] @ W_hh_T
        np.tanh(Z[t], out=h[t + 1])
    # tanh' = 1 - h^2 comes from h itself, so Z need not be kept
    return h[1:], h[T], {"x": x, "h": h}


def rnn_backward(dh_out, cache, W_ih, W_hh, d_final=None, need_input_grad=True):
    """Backward through time [BPTT], from t = T-1 down to 0:

        dDIV/dh_i(t) = [dDIV/dh_i(t) from the output at t] + sum_j w_ij^(11) dDIV/dZ_j(t+1)
        dDIV/dZ_i(t) = dDIV/dh_i(t) f'(Z_i(t)),        f' = tanh' = 1 - h(t)^2
        dDIV/dh(-1)  = sum_j w_ij^(11) dDIV/dZ_j(0)     (the initial state's gradient)

    dh_out (T, B, H): gradient arriving at each output; d_final (B, H): at the final state h_n."""
    x, h = cache["x"], cache["h"]
    T = dh_out.shape[0]
    dZ = np.empty_like(dh_out)
    dh_next = np.zeros_like(h[0]) if d_final is None else d_final     # dDIV/dh(t) from step t+1
    for t in range(T - 1, -1, -1):
        dh = dh_out[t] + dh_next
        np.multiply(dh, 1 - h[t + 1] * h[t + 1], out=dZ[t])
        dh_next = dZ[t] @ W_hh
    dW_ih, dW_hh, db, dx = _weight_grads(dZ, x, h[:-1], need_input_grad, W_ih)
    return {"weight_ih": dW_ih, "weight_hh": dW_hh, "bias_ih": db, "bias_hh": db.copy(),
            "input": dx, "h0": dh_next}


# ============================================================================ LSTM
def _lstm_gate_affine(H, dtype):
    """Per-column constants m, k with gate = m * tanh(m * a) + k:
    sigmoid(a) = 0.5 tanh(0.5 a) + 0.5 for i, f, o; tanh(a) = 1 tanh(1 a) + 0 for g.
    One formula for all 4H columns, so the nonlinearities take one pass; and the
    derivative is m^2 - (gate - k)^2 (= y (1 - y) for sigmoid, 1 - y^2 for tanh)."""
    m = np.full(4 * H, 0.5, dtype=dtype)
    k = np.full(4 * H, 0.5, dtype=dtype)
    m[2 * H:3 * H], k[2 * H:3 * H] = 1, 0
    return m, k


def lstm_forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh):
    """LSTM [LSTM, "Backpropagation rules: Forward"], gates in PyTorch's order i, f, g, o:

        i, f, o = sigmoid(W_i* [h(t-1), x(t)] + b),   g = C~(t) = tanh(W_g [h(t-1), x(t)] + b)
        C(t) = f * C(t-1) + i * g,                     h(t) = o * tanh(C(t))

    x (T, B, I), h0 and c0 (B, H) -> outputs (T, B, H), (h_n, c_n), cache."""
    T, B, _ = x.shape
    H = W_hh.shape[1]
    m, k = _lstm_gate_affine(H, x.dtype)
    h = np.empty((T + 1, B, H), dtype=x.dtype)
    c = np.empty((T + 1, B, H), dtype=x.dtype)
    tanh_c = np.empty((T, B, H), dtype=x.dtype)
    h[0], c[0] = h0, c0
    gates = _input_projection(x, W_ih, b_ih + b_hh)   # pre-activations, turned into gate values in place
    W_hh_T = np.ascontiguousarray(W_hh.T)
    for t in range(T):
        a = gates[t]
        a += h[t] @ W_hh_T
        a *= m
        np.tanh(a, out=a)
        a *= m
        a += k
        i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
        np.multiply(f, c[t], out=c[t + 1])
        c[t + 1] += i * g
        np.tanh(c[t + 1], out=tanh_c[t])
        np.multiply(o, tanh_c[t], out=h[t + 1])
    cache = {"x": x, "h": h, "c": c, "gates": gates, "tanh_c": tanh_c}
    return h[1:], (h[T], c[T]), cache


def lstm_backward(dh_out, cache, W_ih, W_hh, d_final=None, need_input_grad=True):
    """Backward through time [LSTM, "Backpropagation rules: Backward"], without peepholes:

        dDIV/dh(t) = [from the output at t] + W_hh^T dDIV/dZ(t+1)      (all four gates of t+1)
        dDIV/dC(t) = dDIV/dh(t) o(t) tanh'(C(t)) + dDIV/dC(t+1) f(t+1)   (the constant error carousel)
        do = dDIV/dh(t) tanh(C(t)),  di = dDIV/dC(t) g,  df = dDIV/dC(t) C(t-1),  dg = dDIV/dC(t) i
        dDIV/dZ(t) = [di, df, dg, do] * gate'(Z(t))

    d_final: (dh_n, dc_n) or None."""
    x, h, c, gates, tanh_c = cache["x"], cache["h"], cache["c"], cache["gates"], cache["tanh_c"]
    T, B, H = dh_out.shape
    m, k = _lstm_gate_affine(H, dh_out.dtype)
    m2 = m * m
    dZ = np.empty_like(gates)
    if d_final is None:
        dh_next, dc_next = np.zeros_like(h[0]), np.zeros_like(c[0])
    else:
        dh_next, dc_next = d_final
    for t in range(T - 1, -1, -1):
        y = gates[t]
        i, f, g, o = y[:, :H], y[:, H:2 * H], y[:, 2 * H:3 * H], y[:, 3 * H:]
        dh = dh_out[t] + dh_next
        dc = dc_next + dh * o * (1 - tanh_c[t] * tanh_c[t])
        d = dZ[t]
        np.multiply(dc, g, out=d[:, :H])                 # di
        np.multiply(dc, c[t], out=d[:, H:2 * H])          # df
        np.multiply(dc, i, out=d[:, 2 * H:3 * H])         # dg
        np.multiply(dh, tanh_c[t], out=d[:, 3 * H:])     # do
        d *= m2 - (y - k) ** 2                            # gate'(Z) for all 4H columns in one pass
        dc_next = dc * f
        dh_next = d @ W_hh
    dW_ih, dW_hh, db, dx = _weight_grads(dZ, x, h[:-1], need_input_grad, W_ih)
    return {"weight_ih": dW_ih, "weight_hh": dW_hh, "bias_ih": db, "bias_hh": db.copy(),
            "input": dx, "h0": dh_next, "c0": dc_next}


# ============================================================================ GRU
def gru_forward(x, h0, W_ih, W_hh, b_ih, b_hh):
    """GRU, PyTorch's form (gates r, z, n; reset applied after W_hn):

        r = sigmoid(W_ir x + b_ir + W_hr h(t-1) + b_hr),  z = sigmoid(W_iz x + b_iz + W_hz h(t-1) + b_hz)
        n = tanh(W_in x + b_in + r * (W_hn h(t-1) + b_hn))
        h(t) = (1 - z) * n + z * h(t-1)

    (The notes' GRU [LSTM, "Gated Recurrent Units"] writes h(t) = (1 - z) h(t-1) + z h~:
    the same cell with z and 1 - z swapped, and r applied before the matmul.)
    x (T, B, I), h0 (B, H) -> outputs (T, B, H), h_n, cache."""
    T, B, _ = x.shape
    H = W_hh.shape[1]
    h = np.empty((T + 1, B, H), dtype=x.dtype)
    h[0] = h0
    xw = _input_projection(x, W_ih, b_ih)            # W_i* x(t) + b_i* for all t
    rz = np.empty((T, B, 2 * H), dtype=x.dtype)      # r and z, side by side
    n = np.empty((T, B, H), dtype=x.dtype)
    hn = np.empty((T, B, H), dtype=x.dtype)          # W_hn h(t-1) + b_hn, needed for dr
    W_hh_T = np.ascontiguousarray(W_hh.T)
    for t in range(T):
        hw = h[t] @ W_hh_T
        hw += b_hh
        a = rz[t]
        np.add(xw[t, :, :2 * H], hw[:, :2 * H], out=a)
        a *= 0.5                                     # sigmoid of r and z in one pass
        np.tanh(a, out=a)
        a += 1
        a *= 0.5
        r, z = a[:, :H], a[:, H:]
        hn[t] = hw[:, 2 * H:]
        np.multiply(r, hn[t], out=n[t])
        n[t] += xw[t, :, 2 * H:]
        np.tanh(n[t], out=n[t])
        np.subtract(h[t], n[t], out=h[t + 1])        # h(t) = n + z * (h(t-1) - n)
        h[t + 1] *= z
        h[t + 1] += n[t]
    return h[1:], h[T], {"x": x, "h": h, "rz": rz, "n": n, "hn": hn}


def gru_backward(dh_out, cache, W_ih, W_hh, d_final=None, need_input_grad=True):
    """Backward through time, from h(t) = (1 - z) n + z h(t-1):

        dDIV/dh(t) = [from the output at t] + dDIV/dh(t+1) z(t+1) + W_hh^T dDIV/d(W_hh h(t) + b_hh)
        dn = dh (1 - z),  dz = dh (h(t-1) - n),  dZ_n = dn (1 - n^2)      (tanh')
        dr = dZ_n (W_hn h(t-1) + b_hn),  d(W_hn h + b_hn) = dZ_n r,  dZ_r, dZ_z = dr, dz * sigmoid'

    The input side (W_ih, b_ih) sees [dZ_r, dZ_z, dZ_n]; the recurrent side (W_hh, b_hh)
    sees [dZ_r, dZ_z, dZ_n * r]: two (T, B, 3H) arrays, each weight gradient one matmul.
    d_final (B, H): the gradient arriving at h_n."""
    x, h, rz, n, hn = cache["x"], cache["h"], cache["rz"], cache["n"], cache["hn"]
    T, B, H = dh_out.shape
    dxw = np.empty((T, B, 3 * H), dtype=dh_out.dtype)
    dhw = np.empty((T, B, 3 * H), dtype=dh_out.dtype)
    dh_next = np.zeros_like(h[0]) if d_final is None else d_final
    for t in range(T - 1, -1, -1):
        r, z = rz[t, :, :H], rz[t, :, H:]
        dh = dh_out[t] + dh_next
        dZ_n = dxw[t, :, 2 * H:]
        np.multiply(dh * (1 - z), 1 - n[t] * n[t], out=dZ_n)
        d = dxw[t, :, :2 * H]
        np.multiply(dZ_n, hn[t], out=d[:, :H])               # dr
        np.multiply(dh, h[t] - n[t], out=d[:, H:])            # dz
        d *= rz[t] - rz[t] * rz[t]                             # sigmoid' of r and z in one pass
        dhw[t, :, :2 * H] = d
        np.multiply(dZ_n, r, out=dhw[t, :, 2 * H:])
        dh_next = dh * z + dhw[t] @ W_hh
    dW_ih, _, db_ih, dx = _weight_grads(dxw, x, h[:-1], need_input_grad, W_ih)
    dhw2 = dhw.reshape(T * B, 3 * H)
    dW_hh = dhw2.T @ h[:-1].reshape(T * B, H)
    return {"weight_ih": dW_ih, "weight_hh": dW_hh, "bias_ih": db_ih, "bias_hh": dhw2.sum(axis=0),
            "input": dx, "h0": dh_next}


# ============================================================================ a character model
CELLS = {"rnn": (rnn_forward, rnn_backward, 1), "lstm": (lstm_forward, lstm_backward, 4),
         "gru": (gru_forward, gru_backward, 3)}


def init_char_params(vocab_size, hidden_size, cell="lstm", seed=0, dtype=np.float32):
    """Parameters of one-hot (T, B, V) -> {rnn|lstm|gru} -> Linear(H, V), with PyTorch's names,
    shapes and default initialisation U(-1/sqrt(H), 1/sqrt(H)):

        rnn.weight_ih_l0 (G*H, V), rnn.weight_hh_l0 (G*H, H), rnn.bias_ih_l0, rnn.bias_hh_l0 (G*H,),
        decoder.weight (V, H), decoder.bias (V,)

    The engine's twin is a Module with ``self.rnn = nn.LSTM(V, H)`` (or RNN, GRU) and
    ``self.decoder = nn.Linear(H, V)``: ``model.load_state_dict(params)``."""
    G = CELLS[cell][2]
    V, H = vocab_size, hidden_size
    rng = np.random.default_rng(seed)
    k = 1 / math.sqrt(H)
    shapes = {"rnn.weight_ih_l0": (G * H, V), "rnn.weight_hh_l0": (G * H, H), "rnn.bias_ih_l0": (G * H,),
              "rnn.bias_hh_l0": (G * H,), "decoder.weight": (V, H), "decoder.bias": (V,)}
    return {name: rng.uniform(-k, k, size=shape).astype(dtype) for name, shape in shapes.items()}


def char_model_forward(params, x, targets, cell="lstm", state=None):
    """Loss of predicting ``targets`` from one-hot ``x``, and the cache for backward.

    x: (T, B, V) one-hot floats; targets: (T, B) integer ids; state: the initial
    h0 (B, H) (LSTM: (h0, c0)), zeros when None.
        logits = decoder(h(t)),  P = softmax(logits),
        loss = - mean over (t, b) of log P(target)   (the notes' Loss = sum log P(t_i) [t_i = true])
    Returns (loss as a float, cache); cache["state"] is the final state (for truncated BPTT)."""
    forward = CELLS[cell][0]
    T, B, V = x.shape
    W_ih, W_hh = params["rnn.weight_ih_l0"], params["rnn.weight_hh_l0"]
    b_ih, b_hh = params["rnn.bias_ih_l0"], params["rnn.bias_hh_l0"]
    H = W_hh.shape[1]
    if state is None:
        state = np.zeros((B, H), dtype=x.dtype)
        if cell == "lstm":
            state = (state, state)
    if cell == "lstm":
        hs, final, rnn_cache = forward(x, state[0], state[1], W_ih, W_hh, b_ih, b_hh)
    else:
        hs, final, rnn_cache = forward(x, state, W_ih, W_hh, b_ih, b_hh)

    N = T * B
    logits = hs.reshape(N, H) @ params["decoder.weight"].T
    logits += params["decoder.bias"]
    logits -= logits.max(axis=1, keepdims=True)            # log-softmax, shifted so exp cannot overflow
    log_z = np.log(np.exp(logits).sum(axis=1, keepdims=True))
    logits -= log_z                                        # now log P
    t = targets.reshape(N)
    loss = -float(logits[np.arange(N), t].mean())
    np.exp(logits, out=logits)                             # now P, all backward needs of the loss
    # (the outputs h(t) are rnn_cache["h"][1:], so backward takes them from there)
    cache = {"rnn": rnn_cache, "probs": logits, "targets": t, "state": final}
    return loss, cache


def char_model_backward(params, cache, cell="lstm"):
    """Gradients of the mean cross-entropy, by hand:

        dloss/dlogits = (P - onehot(target)) / N          (softmax + cross-entropy)
        d decoder.weight = dlogits^T h,  d decoder.bias = sum dlogits,  dloss/dh(t) = dlogits W_dec
    then the recurrent layer's backward through time. Returns {parameter name: gradient}."""
    backward = CELLS[cell][1]
    hs, t = cache["rnn"]["h"][1:], cache["targets"]
    T, B, H = hs.shape
    N = T * B
    dlogits = cache["probs"].copy()
    dlogits[np.arange(N), t] -= 1
    dlogits /= N
    W_dec = params["decoder.weight"]
    grads = {"decoder.weight": dlogits.T @ hs.reshape(N, H), "decoder.bias": dlogits.sum(axis=0)}
    dh_out = (dlogits @ W_dec).reshape(T, B, H)
    g = backward(dh_out, cache["rnn"], params["rnn.weight_ih_l0"], params["rnn.weight_hh_l0"],
                 need_input_grad=False)
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        grads[f"rnn.{name}_l0"] = g[name]
    return grads


def sgd_update(params, grads, lr):
    """Plain SGD in place: p <- p - lr * dloss/dp."""
    for name, g in grads.items():
        params[name] -= lr * g


def char_model_step(params, x, targets, cell="lstm", lr=0.1, state=None):
    """One training step (forward, backward, SGD update of ``params`` in place); returns the loss."""
    loss, cache = char_model_forward(params, x, targets, cell, state)
    sgd_update(params, char_model_backward(params, cache, cell), lr)
    return loss
