"""Binary addition: an RNN with 8 hidden units adds numbers of any length; an MLP cannot.

The lecture notes ("Deep Learning Recurrent Networks", slides "MLPs vs RNNs"):

    The addition problem: add two N-bit numbers to produce an N+1-bit number.
    MLP: needs a large number of training instances; weights that generalize will
         make errors; a network trained for N-bit numbers will not work for
         N+1-bit numbers.
    RNN solution: very simple, can add two numbers of any size.

The RNN reads the two numbers one bit pair at a time, least significant bit
first, and writes one bit of the sum per step; its hidden state only has to
remember the carry. It is trained on numbers of at most 8 bits and tested on
numbers of 16, 32 and 64 bits, which it has never seen. The MLP sees all 2N input
bits at once and outputs all N+1 sum bits; it is trained on 8-bit numbers, and
its input layer has no place for a 9th bit.

    a =  1 0 1 1 0 0 0 0  (13, LSB first)     input at step t: (a_t, b_t)
    b =  1 1 1 0 0 0 0 0  ( 7)                target at step t: s_t
    s =  0 0 1 0 1 0 0 0 0  (20)              (one extra step with input (0, 0) for the last carry)

Run:    python examples/binary_addition.py            (about 10 s)
        python examples/binary_addition.py --quick    (a few seconds)
Writes: out/binary_addition/loss.png (the training loss of both models),
        out/binary_addition/results.json (the table, as numbers)
"""
import time

import _common  # first: one BLAS thread, and this checkout's tinygrad_rnn and visualize on the path
import numpy as np
import tinygrad_rnn as tg
from _common import fill_defaults, make_parser, positive_int, setup, write_json
from tinygrad_rnn import nn
from tinygrad_rnn.nn import functional as F
from visualize.plots import plot_curves

TEST_LENGTHS = (8, 16, 32, 64)
DEFAULTS = dict(steps=1000, mlp_steps=4000)
QUICK = dict(steps=400, mlp_steps=1500)    # what --quick changes (an option given on the command line wins)


# --- data ---------------------------------------------------------------------------------------
def random_pairs(rng, n_bits, batch):
    """Two (batch, n_bits) arrays of random bits: the numbers a and b, least significant bit first."""
    return rng.integers(0, 2, size=(batch, n_bits)), rng.integers(0, 2, size=(batch, n_bits))


def add_bits(a, b):
    """The sum of a and b as (batch, n_bits + 1) bits, LSB first, by the school method (with a carry)."""
    batch, n = a.shape
    s = np.zeros((batch, n + 1), dtype=np.int64)
    carry = np.zeros(batch, dtype=np.int64)
    for t in range(n):
        total = a[:, t] + b[:, t] + carry
        s[:, t], carry = total % 2, total // 2
    s[:, n] = carry
    return s


def to_int(bits):
    """LSB-first bits (Python ints, any length) -> the number."""
    return sum(int(bit) << i for i, bit in enumerate(bits))


def rnn_inputs(a, b):
    """(T = n_bits + 1, batch, 2) float input for the RNN: one (a_t, b_t) pair per step, then (0, 0)."""
    x = np.stack([a, b], axis=-1).astype(np.float32)          # (batch, n, 2)
    x = np.concatenate([x, np.zeros_like(x[:, :1])], axis=1)  # the extra step for the last carry
    return tg.Tensor(x.transpose(1, 0, 2))


# --- the models -----------------------------------------------------------------------------------
class AdderRNN(nn.Module):
    """h_t = tanh(W_ih x_t + W_hh h_{t-1} + b),  logit_t = w_out . h_t + b_out;  P(s_t = 1) = sigmoid(logit_t)."""

    def __init__(self, hidden_size):
        super().__init__()
        self.rnn = nn.RNN(2, hidden_size)
        self.out = nn.Linear(hidden_size, 1)

    def forward(self, x):                      # x: (T, B, 2) -> logits (T, B)
        h, _ = self.rnn(x)
        return self.out(h).squeeze(-1)


class AdderMLP(nn.Module):
    """All 2N input bits at once -> all N+1 sum bits: Linear(2N, hidden) -> tanh -> Linear(hidden, N+1)."""

    def __init__(self, n_bits, hidden_size):
        super().__init__()
        self.n_bits = n_bits
        self.net = nn.Sequential(nn.Linear(2 * n_bits, hidden_size), nn.Tanh(), nn.Linear(hidden_size, n_bits + 1))

    def forward(self, a, b):                   # a, b: (B, N) bits -> logits (B, N + 1)
        if a.shape[1] != self.n_bits:
            raise ValueError(f"this MLP was built for {self.n_bits}-bit numbers (input size {2 * self.n_bits}); "
                             f"it has no weights for {a.shape[1]}-bit numbers")
        return self.net(tg.Tensor(np.concatenate([a, b], axis=1).astype(np.float32)))


# --- training ---------------------------------------------------------------------------------------
def train_rnn(model, rng, steps, max_bits, batch, lr):
    """Each step: a batch of numbers with a random length 1..max_bits (all short)."""
    opt = tg.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        n = int(rng.integers(1, max_bits + 1))
        a, b = random_pairs(rng, n, batch)
        target = tg.Tensor(add_bits(a, b).T.astype(np.float32))            # (T, B)
        loss = F.binary_cross_entropy_with_logits(model(rnn_inputs(a, b)), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def train_mlp(model, train_a, train_b, rng, steps, batch, lr):
    """The MLP learns from a fixed training set of N-bit pairs (it has to see examples of every pattern)."""
    opt = tg.optim.Adam(model.parameters(), lr=lr)
    target_all = add_bits(train_a, train_b).astype(np.float32)
    losses = []
    for step in range(steps):
        idx = rng.integers(0, len(train_a), size=batch)
        loss = F.binary_cross_entropy_with_logits(model(train_a[idx], train_b[idx]), tg.Tensor(target_all[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


# --- evaluation ---------------------------------------------------------------------------------------
def accuracy(predicted_bits, true_bits):
    """(exact match: every bit of the sum right, fraction of bits right), both over the batch."""
    right = predicted_bits == true_bits
    return float(right.all(axis=1).mean()), float(right.mean())


def rnn_predict(model, a, b):
    with tg.no_grad():
        return (model(rnn_inputs(a, b)).numpy().T > 0).astype(np.int64)       # (B, n + 1)


def mlp_predict(model, a, b):
    with tg.no_grad():
        return (model(a, b).numpy() > 0).astype(np.int64)


def main():
    parser = make_parser(__doc__, out="out/binary_addition")
    parser.add_argument("--hidden", type=positive_int, default=8, help="hidden units of the RNN (default: 8)")
    parser.add_argument("--train-bits", type=positive_int, default=8,
                        help="longest numbers seen in training (default: 8)")
    parser.add_argument("--steps", type=positive_int, help="training steps of the RNN (default: 1000; --quick: 400)")
    parser.add_argument("--mlp-hidden", type=positive_int, default=64, help="hidden units of the MLP (default: 64)")
    parser.add_argument("--mlp-steps", type=positive_int,
                        help="training steps of the MLP (default: 4000; --quick: 1500)")
    parser.add_argument("--mlp-train-pairs", type=positive_int, default=4000,
                        help="size of the MLP's training set of N-bit pairs (default: 4000)")
    args = fill_defaults(parser.parse_args(), DEFAULTS, QUICK)
    if not 1 <= args.train_bits <= 64:
        parser.error(f"--train-bits must be between 1 and 64, got {args.train_bits}")
    out = setup(args)
    rng = np.random.default_rng(args.seed)
    N = args.train_bits

    print(f"Binary addition, least significant bit first. Training on numbers of 1..{N} bits.")
    t0 = time.time()
    rnn = AdderRNN(args.hidden)
    rnn_losses = train_rnn(rnn, rng, args.steps, N, batch=64, lr=0.02)
    print(f"RNN: loss {rnn_losses[0]:.3f} -> {np.mean(rnn_losses[-20:]):.4f} in {args.steps} steps "
          f"({_common.seconds(time.time() - t0)})")

    t0 = time.time()
    mlp = AdderMLP(N, args.mlp_hidden)
    # a training set of N-bit pairs; the MLP is tested on pairs outside it
    train_a, train_b = random_pairs(rng, N, args.mlp_train_pairs)
    mlp_losses = train_mlp(mlp, train_a, train_b, rng, args.mlp_steps, batch=64, lr=0.01)
    print(f"MLP: loss {mlp_losses[0]:.3f} -> {np.mean(mlp_losses[-20:]):.4f} in {args.mlp_steps} steps "
          f"on {args.mlp_train_pairs} pairs ({_common.seconds(time.time() - t0)})\n")

    # --- the table: exact-match accuracy on 1000 new pairs of each length ---------------------------
    results = {"train_bits": N, "rnn": {"parameters": rnn.num_parameters(), "steps": args.steps, "accuracy": {}},
               "mlp": {"parameters": mlp.num_parameters(), "steps": args.mlp_steps, "accuracy": {}},
               "rnn_loss": rnn_losses, "mlp_loss": mlp_losses}
    seen = set(map(tuple, np.concatenate([train_a, train_b], axis=1).tolist()))
    rnn_name, mlp_name = f"RNN, {args.hidden} hidden", f"MLP, {args.mlp_hidden} hidden"
    print("Exact-match accuracy (all N+1 bits of the sum right) on 1000 new pairs of N-bit numbers:\n")
    print(f"{'':>22} | {rnn_name:>14} | {mlp_name:>15}")
    print(f"{'parameters':>22} | {rnn.num_parameters():>14} | {mlp.num_parameters():>15}")
    print(f"{'training steps':>22} | {args.steps:>14} | {args.mlp_steps:>15}")
    print(f"{'-' * 22}-+-{'-' * 14}-+-{'-' * 15}")
    for n in TEST_LENGTHS:
        a, b = random_pairs(rng, n, 1000)
        true = add_bits(a, b)
        rnn_exact, rnn_bits = accuracy(rnn_predict(rnn, a, b), true)
        results["rnn"]["accuracy"][n] = {"exact": rnn_exact, "bits": rnn_bits}
        if n == N:
            new = [i for i, row in enumerate(np.concatenate([a, b], axis=1).tolist()) if tuple(row) not in seen]
            mlp_exact, mlp_bits = accuracy(mlp_predict(mlp, a[new], b[new]), true[new])
            results["mlp"]["accuracy"][n] = {"exact": mlp_exact, "bits": mlp_bits}
            mlp_cell = f"{mlp_exact:15.1%}"
        else:
            mlp_cell = f"{f'no {2 * n} inputs':>15}"
        label = f"N = {n} (trained on)" if n == N else f"N = {n} ({n // N}x longer)"
        print(f"{label:>22} | {rnn_exact:14.1%} | {mlp_cell}")
    print(f"\n(The MLP is tested on pairs it was not trained on. Its input layer has {2 * N} inputs,\n"
          f" so it cannot even read longer numbers.)")

    # one long example, written out
    a, b = random_pairs(rng, 64, 1)
    x, y, s = to_int(a[0]), to_int(b[0]), to_int(rnn_predict(rnn, a, b)[0])
    print(f"\nA 64-bit example:\n    {x:>26,}\n  + {y:>26,}\n  = {s:>26,}   (the RNN's answer: "
          f"{'right' if s == x + y else 'WRONG, the sum is ' + format(x + y, ',')})")

    plot_curves({f"RNN ({rnn.num_parameters()} parameters, numbers of 1..{N} bits)": rnn_losses,
                 f"MLP ({mlp.num_parameters()} parameters, {N}-bit numbers)": mlp_losses},
                ylabel="binary cross-entropy per bit", title="Binary addition: training loss",
                path=out / "loss.png")
    write_json(out / "results.json", results)
    print(f"\nwrote {out / 'loss.png'} and {out / 'results.json'}")


if __name__ == "__main__":
    main()
