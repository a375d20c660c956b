"""Backpropagation through time by hand, next to autodiff: the same numbers, to the last digit.

The lecture notes ("Deep Learning Recurrent Networks", slides "Back Propagation
Through Time") derive the gradients of an RNN step by step, from the last
timestep back to the first:

    dDIV/dh_i(t)     = sum_j w_ij^(1) dDIV/dZ_j^(1)(t) + sum_j w_ij^(11) dDIV/dZ_j^(0)(t+1)
    dDIV/dZ_i(t)     = dDIV/dh_i(t) f'(Z_i(t))
    dDIV/dw_ij^(11) += dDIV/dZ_j(t) h_i(t-1)        (the same weights at every t: "note the addition")

and the LSTM's and GRU's the same way ("Backpropagation rules: Backward").
``tinygrad_rnn.by_hand`` is that derivation written out in plain NumPy: no graph,
no autodiff. This script runs a tiny RNN, LSTM and GRU both ways, through
``nn.RNN``/``nn.LSTM``/``nn.GRU`` with ``loss.backward()`` and through
``by_hand.*_forward``/``*_backward`` with the same weights and the same input, and
prints both gradients and their largest difference. In float64 they agree to about
1e-16, the rounding error of the arithmetic itself.

The loss is L = sum_t <R_t, h_t> + <R_n, h_n> (+ <Q_n, c_n> for the LSTM) with
fixed random R, Q: then dL/dh_t = R_t, so every output gets a gradient and the
backward pass is exactly the BPTT of the notes, with nothing else mixed in.

Run:    python examples/gradients_by_hand.py [--quick] [--cell rnn lstm gru] [--timesteps T]
Writes: out/gradients_by_hand/results.json (the differences, per cell and gradient)
"""
import _common  # noqa: F401  (first: one BLAS thread, and this checkout's tinygrad_rnn on the path)
import numpy as np
import tinygrad_rnn as tg
from _common import make_parser, positive_int, setup, write_json
from tinygrad_rnn import by_hand, nn

LAYERS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def autodiff(cell, W, x, h0, c0, R, R_n, Q_n):
    """The engine: a float64 nn layer with the weights W, L as above, loss.backward()."""
    T, B, I = x.shape
    H = h0.shape[-1]
    layer = LAYERS[cell](I, H, dtype="float64")
    layer.load_state_dict({f"{name}_l0": value for name, value in W.items()})
    x_t = tg.Tensor(x, requires_grad=True)
    h0_t = tg.Tensor(h0[None], requires_grad=True)          # the layer wants (num_layers, B, H)
    if cell == "lstm":
        c0_t = tg.Tensor(c0[None], requires_grad=True)
        out, (h_n, c_n) = layer(x_t, (h0_t, c0_t))
        loss = (out * tg.Tensor(R)).sum() + (h_n[0] * tg.Tensor(R_n)).sum() + (c_n[0] * tg.Tensor(Q_n)).sum()
    else:
        out, h_n = layer(x_t, h0_t)
        loss = (out * tg.Tensor(R)).sum() + (h_n[0] * tg.Tensor(R_n)).sum()
    loss.backward()
    grads = {name.removesuffix("_l0"): p.grad.numpy() for name, p in layer.named_parameters()}
    grads["input"], grads["h0"] = x_t.grad.numpy(), h0_t.grad.numpy()[0]
    if cell == "lstm":
        grads["c0"] = c0_t.grad.numpy()[0]
    return loss.item(), grads


def hand(cell, W, x, h0, c0, R, R_n, Q_n):
    """by_hand: forward, then backward with dL/dh_t = R_t arriving at the outputs and R_n (Q_n) at the final state."""
    args = (W["weight_ih"], W["weight_hh"], W["bias_ih"], W["bias_hh"])
    if cell == "lstm":
        out, (h_n, c_n), cache = by_hand.lstm_forward(x, h0, c0, *args)
        loss = np.sum(out * R) + np.sum(h_n * R_n) + np.sum(c_n * Q_n)
        grads = by_hand.lstm_backward(R, cache, W["weight_ih"], W["weight_hh"], d_final=(R_n, Q_n))
    else:
        forward, backward = {"rnn": (by_hand.rnn_forward, by_hand.rnn_backward),
                             "gru": (by_hand.gru_forward, by_hand.gru_backward)}[cell]
        out, h_n, cache = forward(x, h0, *args)
        loss = np.sum(out * R) + np.sum(h_n * R_n)
        grads = backward(R, cache, W["weight_ih"], W["weight_hh"], d_final=R_n)
    return float(loss), grads


def side_by_side(left_title, left, right_title, right):
    """Two matrices next to each other, row by row."""
    fmt = lambda row: " ".join(f"{v:10.6f}" for v in row)
    width = len(fmt(left[0]))
    print(f"    {left_title:<{width}}    {right_title}")
    for a, b in zip(left, right):
        print(f"    {fmt(a)}    {fmt(b)}")


# the notes' names for PyTorch's
MATH_NAMES = {"weight_ih": "W_ih", "weight_hh": "W_hh", "bias_ih": "b_ih", "bias_hh": "b_hh",
              "input": "x", "h0": "h_0", "c0": "c_0"}


def compare(cell, rng, T, B, I, H):
    G = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    k = 1 / np.sqrt(H)
    W = {"weight_ih": rng.uniform(-k, k, (G * H, I)), "weight_hh": rng.uniform(-k, k, (G * H, H)),
         "bias_ih": rng.uniform(-k, k, G * H), "bias_hh": rng.uniform(-k, k, G * H)}
    x = rng.standard_normal((T, B, I))
    h0, c0 = rng.standard_normal((B, H)) * 0.5, rng.standard_normal((B, H)) * 0.5
    R, R_n, Q_n = rng.standard_normal((T, B, H)), rng.standard_normal((B, H)), rng.standard_normal((B, H))

    loss_a, grads_a = autodiff(cell, W, x, h0, c0, R, R_n, Q_n)
    loss_h, grads_h = hand(cell, W, x, h0, c0, R, R_n, Q_n)
    gates = {"rnn": "", "lstm": ", gates i f g o stacked", "gru": ", gates r z n stacked"}[cell]
    print(f"=== {cell.upper()}: {T} steps, batch {B}, {I} inputs, {H} hidden units, float64 ===")
    print(f"  loss: autodiff {loss_a:.15f}   by hand {loss_h:.15f}")
    print(f"  dL/dW_hh (weight_hh_l0, {G * H} x {H}{gates}):")
    side_by_side("autodiff (loss.backward())", grads_a["weight_hh"], "by hand (by_hand.*_backward)",
                 grads_h["weight_hh"])
    print(f"\n  {'gradient':<9} {'shape':<10} {'max |gradient|':>15} {'max |autodiff - by hand|':>25}")
    diffs = {}
    for name in grads_a:
        a, h = grads_a[name], grads_h[name]
        diffs[name] = float(np.max(np.abs(a - h)))
        print(f"  {'dL/d' + MATH_NAMES[name]:<9} {str(a.shape):<10} {np.max(np.abs(a)):>15.6f} {diffs[name]:>25.1e}")
    worst = max(diffs.values())
    print(f"  {cell.upper()} max difference: {worst:.1e}\n")
    return {"loss_autodiff": loss_a, "loss_by_hand": loss_h, "max_difference": worst, "differences": diffs}


def main():
    parser = make_parser(__doc__, out="out/gradients_by_hand")
    parser.add_argument("--cell", nargs="+", choices=sorted(LAYERS), default=["rnn", "lstm", "gru"],
                        help="which cells to compare (default: rnn lstm gru)")
    parser.add_argument("--timesteps", type=positive_int, default=5, help="timesteps T (default: 5)")
    parser.add_argument("--hidden", type=positive_int, default=3, help="hidden units H (default: 3)")
    args = parser.parse_args()
    out = setup(args)
    rng = np.random.default_rng(args.seed)
    # --quick changes nothing: the comparison already takes a fraction of a second
    results = {cell: compare(cell, rng, args.timesteps, 2, 4, args.hidden) for cell in args.cell}
    worst = max(r["max_difference"] for r in results.values())
    print(f"Largest difference between autodiff and the hand-derived gradients, over all cells: {worst:.1e}")
    print("(float64 carries about 16 significant digits: these are rounding errors, not mistakes)")
    write_json(out / "results.json", results)
    print(f"wrote {out / 'results.json'}")


if __name__ == "__main__":
    main()
