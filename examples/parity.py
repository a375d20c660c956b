"""Parity: is the number of ones even or odd? Trivial for an RNN, at any length; hard for an MLP.

The lecture notes ("Deep Learning Recurrent Networks", slides "MLP: The parity
problem" and "RNN: The parity problem"):

    MLP: the network must be complex to capture all patterns; at least one hidden
         layer of size N plus an output neuron; fixed input size.
    RNN: trivial solution; generalizes to input of any size.

The RNN's trivial solution is p_t = p_{t-1} XOR x_t: read one bit per step and
keep the parity so far in the hidden state. It is trained to output the parity
of the prefix read so far at every step, on strings of 8 bits, and is then asked
for the parity of strings of 16 to 256 bits.

The MLP reads all 8 bits at once and outputs one parity bit. There are only
2^8 = 256 strings of 8 bits: it is trained on half of them and tested on the other
half. Parity is the hardest function there is for this kind of generalisation:
flipping any one bit flips the answer, so similar inputs have opposite labels.

Run:    python examples/parity.py            (about 10 s)
        python examples/parity.py --quick    (a few seconds)
Writes: out/parity/loss.png (the training loss of both models),
        out/parity/results.json (the table, as numbers)
"""
import time

import _common  # first: one BLAS thread, and this checkout's tinygrad_rnn and visualize on the path
import numpy as np
import tinygrad_rnn as tg
from _common import fill_defaults, make_parser, positive_int, setup, write_json
from tinygrad_rnn import nn
from tinygrad_rnn.nn import functional as F
from visualize.plots import plot_curves

TEST_LENGTHS = (8, 16, 32, 64, 256)
DEFAULTS = dict(steps=1500, mlp_steps=2000)
QUICK = dict(steps=700, mlp_steps=1000)    # what --quick changes (an option given on the command line wins)


# --- data ---------------------------------------------------------------------------------------
def random_bits(rng, n_bits, batch):
    return rng.integers(0, 2, size=(batch, n_bits))


def prefix_parity(bits):
    """(batch, n) bits -> (batch, n): the parity of bits[:, :t+1] at every t."""
    return np.cumsum(bits, axis=1) % 2


def rnn_inputs(bits):
    """(T, batch, 2) one-hot: the bit 0 is (1, 0), the bit 1 is (0, 1)."""
    return tg.Tensor(np.eye(2, dtype=np.float32)[bits.T])


# --- the models -----------------------------------------------------------------------------------
class ParityRNN(nn.Module):
    """h_t = tanh(W_ih x_t + W_hh h_{t-1} + b),  logit_t = w_out . h_t + b_out  (the parity so far)."""

    def __init__(self, hidden_size):
        super().__init__()
        self.rnn = nn.RNN(2, hidden_size)
        self.out = nn.Linear(hidden_size, 1)

    def forward(self, x):                      # x: (T, B, 2) -> logits (T, B)
        h, _ = self.rnn(x)
        return self.out(h).squeeze(-1)


class ParityMLP(nn.Module):
    """All N bits at once -> one parity logit: Linear(N, hidden) -> tanh -> Linear(hidden, 1)."""

    def __init__(self, n_bits, hidden_size):
        super().__init__()
        self.n_bits = n_bits
        self.net = nn.Sequential(nn.Linear(n_bits, hidden_size), nn.Tanh(), nn.Linear(hidden_size, 1))

    def forward(self, bits):                   # bits: (B, N) -> logits (B,)
        return self.net(tg.Tensor(bits.astype(np.float32))).squeeze(-1)


# --- training ---------------------------------------------------------------------------------------
def train_rnn(model, rng, steps, n_bits, batch, lr):
    opt = tg.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        bits = random_bits(rng, n_bits, batch)
        target = tg.Tensor(prefix_parity(bits).T.astype(np.float32))        # (T, B)
        loss = F.binary_cross_entropy_with_logits(model(rnn_inputs(bits)), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def train_mlp(model, train_bits, steps, lr):
    """Full-batch training on the fixed training set (it is small)."""
    opt = tg.optim.Adam(model.parameters(), lr=lr)
    target = tg.Tensor((train_bits.sum(axis=1) % 2).astype(np.float32))
    losses = []
    for step in range(steps):
        loss = F.binary_cross_entropy_with_logits(model(train_bits), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def rnn_parity(model, bits):
    """The RNN's answer for the whole string: its output after the last bit."""
    with tg.no_grad():
        return (model(rnn_inputs(bits)).numpy()[-1] > 0).astype(np.int64)


def mlp_parity(model, bits):
    with tg.no_grad():
        return (model(bits).numpy() > 0).astype(np.int64)


def main():
    parser = make_parser(__doc__, out="out/parity")
    parser.add_argument("--hidden", type=positive_int, default=8, help="hidden units of the RNN (default: 8)")
    parser.add_argument("--train-bits", type=positive_int, default=8,
                        help="length of the training strings (default: 8)")
    parser.add_argument("--steps", type=positive_int, help="training steps of the RNN (default: 1500; --quick: 700)")
    parser.add_argument("--mlp-hidden", type=positive_int, default=64, help="hidden units of the MLP (default: 64)")
    parser.add_argument("--mlp-steps", type=positive_int,
                        help="training steps of the MLP (default: 2000; --quick: 1000)")
    args = fill_defaults(parser.parse_args(), DEFAULTS, QUICK)
    if not 2 <= args.train_bits <= 16:
        parser.error(f"--train-bits must be between 2 and 16 (the MLP's data set is all 2^N strings), "
                     f"got {args.train_bits}")
    out = setup(args)
    rng = np.random.default_rng(args.seed)
    N = args.train_bits

    print(f"Parity of a bit string. The RNN is trained on strings of {N} bits.")
    t0 = time.time()
    rnn = ParityRNN(args.hidden)
    rnn_losses = train_rnn(rnn, rng, args.steps, N, batch=64, lr=0.05)
    print(f"RNN: loss {rnn_losses[0]:.3f} -> {np.mean(rnn_losses[-20:]):.4f} in {args.steps} steps "
          f"({_common.seconds(time.time() - t0)})")

    # every N-bit string, in random order: half to train the MLP, half to test it
    all_strings = (np.arange(2 ** N)[:, None] >> np.arange(N)) & 1
    order = rng.permutation(2 ** N)
    train_set, test_set = all_strings[order[:2 ** (N - 1)]], all_strings[order[2 ** (N - 1):]]
    t0 = time.time()
    mlp = ParityMLP(N, args.mlp_hidden)
    mlp_losses = train_mlp(mlp, train_set, args.mlp_steps, lr=0.01)
    mlp_train = float((mlp_parity(mlp, train_set) == train_set.sum(axis=1) % 2).mean())
    mlp_test = float((mlp_parity(mlp, test_set) == test_set.sum(axis=1) % 2).mean())
    print(f"MLP: loss {mlp_losses[0]:.3f} -> {mlp_losses[-1]:.4f} in {args.mlp_steps} steps on "
          f"{len(train_set)} of the {2 ** N} strings ({_common.seconds(time.time() - t0)}); "
          f"right on {mlp_train:.0%} of them\n")

    results = {"train_bits": N,
               "rnn": {"parameters": rnn.num_parameters(), "steps": args.steps, "accuracy": {}},
               "mlp": {"parameters": mlp.num_parameters(), "steps": args.mlp_steps, "train_accuracy": mlp_train,
                       "accuracy": {N: mlp_test}},
               "rnn_loss": rnn_losses, "mlp_loss": mlp_losses}
    rnn_name, mlp_name = f"RNN, {args.hidden} hidden", f"MLP, {args.mlp_hidden} hidden"
    print("Accuracy: is the parity of the whole string right? (1000 new strings of each length;\n"
          f"the MLP: the {len(test_set)} {N}-bit strings it was not trained on. Guessing gives 50%.)\n")
    print(f"{'':>24} | {rnn_name:>14} | {mlp_name:>15}")
    print(f"{'parameters':>24} | {rnn.num_parameters():>14} | {mlp.num_parameters():>15}")
    print(f"{'-' * 24}-+-{'-' * 14}-+-{'-' * 15}")
    for n in TEST_LENGTHS:
        bits = random_bits(rng, n, 1000)
        acc = float((rnn_parity(rnn, bits) == bits.sum(axis=1) % 2).mean())
        results["rnn"]["accuracy"][n] = acc
        mlp_cell = f"{mlp_test:15.1%}" if n == N else f"{f'no {n} inputs':>15}"
        label = f"{n} bits (trained on)" if n == N else f"{n} bits ({n // N}x longer)"
        print(f"{label:>24} | {acc:14.1%} | {mlp_cell}")

    bits = random_bits(rng, 40, 1)
    answer = rnn_parity(rnn, bits)[0]
    print(f"\nAn example: {''.join(map(str, bits[0]))} has {bits.sum()} ones; "
          f"the RNN says {'odd' if answer else 'even'} ({'right' if answer == bits.sum() % 2 else 'WRONG'})")

    plot_curves({f"RNN ({rnn.num_parameters()} parameters), prefix parity of {N}-bit strings": rnn_losses,
                 f"MLP ({mlp.num_parameters()} parameters), {len(train_set)} strings of {N} bits": mlp_losses},
                ylabel="binary cross-entropy", title="Parity: training loss", path=out / "loss.png")
    write_json(out / "results.json", results)
    print(f"\nwrote {out / 'loss.png'} and {out / 'results.json'}")


if __name__ == "__main__":
    main()
