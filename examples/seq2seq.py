"""Encoder-decoder: a GRU reads a digit string, its last state is all a second GRU gets to write the answer.

The lecture notes ("CSCI 4360/6360 Data Science II: Recurrent Neural Networks",
slide "Encoder-Decoder Networks"; and "Sequence Model Part 1", slide "Many to
Many (not paired)", e.g. sequence translation):

    Maps input to output sequences, each mapping not necessarily of equal length.
    C is a "semantic summary" ... have to ensure C is of sufficient dimensionality
    to represent the input space.

Here the task is to reverse a string of digits ("31415" -> "51413"; ``--task sort``
sorts it instead). Neither can be done one step at a time: the first output digit
is the last input digit, so the whole input must be read before anything is
written. The encoder reads the input; its final hidden state C is the summary.
The decoder starts from C and writes one digit per step:

    encoder:  h_t = GRU(embed(x_t), h_{t-1}),  h_0 = 0                C = h_T
    decoder:  s_0 = C,  s_k = GRU(embed(y_{k-1}), s_{k-1}),  P(y_k) = softmax(W_out s_k + b_out)

Training uses teacher forcing: the decoder's input at step k is the true previous
digit y_{k-1} (a start symbol "^" at k = 0), so all steps train in parallel and
an early mistake cannot derail the rest. At test time decoding is greedy: each
step's input is the decoder's own previous answer (the argmax). The score is
exact match: the whole output string right.

The picture (bptt.svg) is the unrolled graph of one example at cell level, with
the gradient of the LAST output digit's loss on every edge, and in vermillion
every path it takes to the encoder's recurrent weights W_hh: back through every
decoder step, through the summary C (the encoder's final state, drawn as the
"stack" of h_n that feeds the decoder's first step), and through every encoder
step. For reversal the last output digit is the first input digit x_0: its
gradient has to travel the whole way.

Run:    python examples/seq2seq.py            (about 25 s; all or nearly all strings exactly right)
        python examples/seq2seq.py --quick    (a few seconds, 4 digits; the tests require 90%)
Writes: out/seq2seq/bptt.svg (+ .gv; + .png without --quick; without Graphviz only the
        .gv), loss.png, results.json
"""
import time

import _common  # first: one BLAS thread, and this checkout's tinygrad_rnn and visualize on the path
import numpy as np
import tinygrad_rnn as tg
import visualize as viz
from _common import (fill_defaults, make_parser, positive_float, positive_int, save_picture, setup,
                     write_json)
from tinygrad_rnn import nn
from tinygrad_rnn.nn import functional as F
from visualize.plots import plot_loss

DIGITS = 10
START = DIGITS            # the decoder's first input, shown as "^"
DEFAULTS = dict(length=5, steps=2000)
QUICK = dict(length=4, steps=250)      # what --quick changes (an option given on the command line wins)


def make_batch(rng, batch, length, task):
    """Random digit strings x (B, L) and their targets y (B, L)."""
    x = rng.integers(0, DIGITS, size=(batch, length))
    y = x[:, ::-1] if task == "reverse" else np.sort(x, axis=1)
    return x, np.ascontiguousarray(y)


def text(digits):
    return "".join(str(d) for d in digits)


class Seq2Seq(nn.Module):
    """Embedding + GRU encoder, Embedding + GRU decoder started from the encoder's last state, Linear readout."""

    def __init__(self, hidden_size, embed_size):
        super().__init__()
        self.enc_embed = nn.Embedding(DIGITS, embed_size)
        self.encoder = nn.GRU(embed_size, hidden_size)
        self.dec_embed = nn.Embedding(DIGITS + 1, embed_size)       # the digits and the start symbol
        self.decoder = nn.GRU(embed_size, hidden_size)
        self.out = nn.Linear(hidden_size, DIGITS)

    def encode(self, x):
        """x: (B, L) digit ids -> C: (1, B, H), the encoder's final state."""
        with tg.scope("encoder"):
            _, C = self.encoder(self.enc_embed(tg.Tensor(x.T)))      # the layer wants (T, B, E)
        return C

    def forward(self, x, y):
        """Teacher forcing: logits (L, B, DIGITS) for every target position, all at once."""
        C = self.encode(x)
        B = x.shape[0]
        previous = np.concatenate([np.full((B, 1), START), y[:, :-1]], axis=1)      # ^, y_0, ..., y_{L-2}
        with tg.scope("decoder"):
            s, _ = self.decoder(self.dec_embed(tg.Tensor(previous.T)), C)
            return self.out(s)

    def greedy(self, x):
        """Decode without the answer: each step's input is the previous step's argmax. -> (B, L) digits."""
        with tg.no_grad():
            s = self.encode(x)
            token = np.full((1, x.shape[0]), START)
            answer = []
            for _ in range(x.shape[1]):
                out, s = self.decoder(self.dec_embed(tg.Tensor(token)), s)
                token = self.out(out).numpy().argmax(axis=-1)          # (1, B)
                answer.append(token[0])
        return np.stack(answer, axis=1)


def loss_fn(model, x, y):
    logits = model(x, y)                                             # (L, B, D)
    L, B, D = logits.shape
    return F.cross_entropy(logits.reshape(L * B, D), tg.Tensor(y.T.reshape(L * B)))


def evaluate(model, rng, length, task, n=1000):
    x, y = make_batch(rng, n, length, task)
    guess = model.greedy(x)
    return float((guess == y).all(axis=1).mean()), float((guess == y).mean())


def draw_one_example(model, x, y, path, png=True):
    """The BPTT picture of one example at cell level: the loss of the LAST output digit, and in
    vermillion every path its gradient takes to the encoder's recurrent weights."""
    logits = model(x, y)                                             # (L, 1, D)
    last = logits.shape[0] - 1
    loss = F.cross_entropy(logits[last], tg.Tensor(y[:, last]))
    loss.name = f"L_{last}"
    dg = viz.draw_bptt(loss, level="cell", gradients=True, highlight="encoder.weight_hh_l0",
                       title=f"seq2seq on {text(x[0])} -> {text(y[0])}: the gradient of L_{last} "
                             f"back into the encoder")
    written = [save_picture(dg, path.with_suffix(".svg"))]
    if png:                                                          # a PNG of a big graph takes a while
        written.append(save_picture(dg, path.with_suffix(".png")))
    return written


def main():
    parser = make_parser(__doc__, out="out/seq2seq")
    parser.add_argument("--task", choices=["reverse", "sort"], default="reverse",
                        help="what the decoder must write (default: reverse)")
    parser.add_argument("--length", type=positive_int, help="digits per string (default: 5; --quick: 4)")
    parser.add_argument("--hidden", type=positive_int, default=64, help="hidden units of both GRUs (default: 64)")
    parser.add_argument("--steps", type=positive_int, help="training steps (default: 2000; --quick: 250)")
    parser.add_argument("--lr", type=positive_float, default=0.01,
                        help="Adam's initial learning rate, decayed linearly to a tenth of it (default: 0.01)")
    args = fill_defaults(parser.parse_args(), DEFAULTS, QUICK)
    out = setup(args)
    rng = np.random.default_rng(args.seed)

    model = Seq2Seq(args.hidden, embed_size=16)
    opt = tg.optim.Adam(model.parameters(), lr=args.lr)
    print(f"Task: {args.task} a string of {args.length} digits, e.g. "
          f"{', '.join(f'{text(a)} -> {text(b)}' for a, b in zip(*make_batch(rng, 3, args.length, args.task)))}")
    print(f"Encoder-decoder with GRUs of {args.hidden} units ({model.num_parameters()} parameters), "
          f"{args.steps} steps of teacher forcing\n")
    losses, t0 = [], time.time()
    for step in range(1, args.steps + 1):
        opt.lr = args.lr * (1 - 0.9 * step / args.steps)       # decays to lr/10: a steadier finish
        x, y = make_batch(rng, 64, args.length, args.task)
        loss = loss_fn(model, x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % max(1, args.steps // 5) == 0 or step == 1:
            exact, digits = evaluate(model, rng, args.length, args.task, n=200)
            print(f"step {step:5d}  loss {loss.item():.3f}  greedy decoding: {exact:6.1%} strings exactly right, "
                  f"{digits:6.1%} digits  ({_common.seconds(time.time() - t0)})")

    exact, digits = evaluate(model, rng, args.length, args.task, n=1000)
    print(f"\nExact-match accuracy on 1000 new strings (greedy decoding): {exact:.1%}  (digits right: {digits:.1%})")
    x, y = make_batch(rng, 5, args.length, args.task)
    for a, b, g in zip(x, y, model.greedy(x)):
        print(f"  {text(a)} -> {text(g)}   {'right' if (g == b).all() else 'wrong, expected ' + text(b)}")

    x, y = make_batch(rng, 1, args.length, args.task)
    written = draw_one_example(model, x, y, out / "bptt", png=not args.quick)
    plot_loss(losses, log_y=True, title=f"seq2seq ({args.task}, {args.length} digits): training loss",
              path=out / "loss.png")
    write_json(out / "results.json", {"task": args.task, "length": args.length, "steps": args.steps,
                                      "exact_match": exact, "digit_accuracy": digits, "loss": losses})
    print(f"\nwrote {', '.join(map(str, written))}, {out / 'loss.png'} and {out / 'results.json'}")


if __name__ == "__main__":
    main()
