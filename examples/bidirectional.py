"""Bidirectional LSTM: a labelling task where the answer at step t depends on what comes after t.

The lecture notes ("Deep Learning Recurrent Networks", slides "Extensions to the
RNN: Bidirectional RNN" and "Bidirectional LSTM"):

    A forward net processes the data from t=0 to t=T; a backward net processes it
    backward from t=T down to t=0. The computed states of both networks are used
    to compute the final output at each time. Clearly, this is not an online
    process and requires the entire input data.

The task: tag every letter of a string like ``ab(ca)b(ab(c)`` as inside or
outside a bracket pair. A letter is inside when the nearest bracket before it is
"(" and the nearest bracket after it is ")". The past alone cannot tell: after
"(" the pair may close or may not (here it closes half of the time). A
unidirectional LSTM, which has read only x_0..x_t when it tags x_t, must guess
at every letter after an open bracket; a bidirectional LSTM has also read
x_t..x_T, backwards, and knows.

    text   ab(ca)b(ab(c)       the (ab is never closed: its letters are outside
    tags   ...^^......^.       ^ = inside, . = outside

Both models are 2-layer LSTMs of the same width, trained the same way; only the
direction differs. bptt.svg draws a bidirectional LSTM unrolled on the short
string "a(b)c" at cell level: a forward row (left to right), a reverse row (right
to left), and the gradient on each edge. It draws a 1-layer model, untrained (the
gradients of a first training step), because two layers of two rows are too
many boxes to read; the picture is about the structure, the table about accuracy.

Run:    python examples/bidirectional.py            (about 30 s)
        python examples/bidirectional.py --quick    (a few seconds)
Writes: out/bidirectional/bptt.svg (+ .gv; + .png without --quick; without Graphviz
        only the .gv), loss.png, results.json
"""
import time

import _common  # first: one BLAS thread, and this checkout's tinygrad_rnn and visualize on the path
import numpy as np
import tinygrad_rnn as tg
import visualize as viz
from visualize.plots import plot_curves
from _common import (fill_defaults, make_parser, positive_float, positive_int, save_picture, setup,
                     write_json)
from tinygrad_rnn import nn
from tinygrad_rnn.nn import functional as F

ALPHABET = "abc()"
P_BRACKET = 0.25          # probability that a character is a bracket ("(" or ")", equally likely)
PICTURE_TEXT = "a(b)c"    # the string the picture is unrolled on
DEFAULTS = dict(steps=400, length=20)
QUICK = dict(steps=100, length=12)     # what --quick changes (an option given on the command line wins)


def random_strings(rng, batch, length):
    """(batch, length) character ids: letters, with brackets at random (unbalanced on purpose)."""
    letters = rng.integers(0, 3, size=(batch, length))
    brackets = rng.integers(3, 5, size=(batch, length))
    return np.where(rng.random((batch, length)) < P_BRACKET, brackets, letters)


def inside_tags(ids):
    """1 for a letter whose nearest bracket to the left is "(" and to the right is ")", else 0."""
    B, T = ids.shape
    tags = np.zeros((B, T), dtype=np.int64)
    for b in range(B):
        left = None                                    # the nearest bracket so far
        for t in range(T):
            c = ALPHABET[ids[b, t]]
            if c in "()":
                left = c
            elif left == "(":
                right = next((ALPHABET[i] for i in ids[b, t + 1:] if ALPHABET[i] in "()"), None)
                tags[b, t] = right == ")"
    return tags


def show(ids, tags):
    return "".join(ALPHABET[i] for i in ids), "".join("^" if t else "." for t in tags)


class Tagger(nn.Module):
    """one-hot chars -> LSTM (num_layers, uni- or bidirectional) -> Linear -> 2 classes per character."""

    def __init__(self, hidden_size, num_layers, bidirectional):
        super().__init__()
        self.lstm = nn.LSTM(len(ALPHABET), hidden_size, num_layers=num_layers, bidirectional=bidirectional)
        self.out = nn.Linear(hidden_size * (2 if bidirectional else 1), 2)

    def forward(self, ids):                  # ids: (B, T) -> logits (T, B, 2)
        x = F.one_hot(tg.Tensor(ids.T), len(ALPHABET))     # (T, B, 5)
        x.name = "x"                                         # (for the picture)
        h, _ = self.lstm(x)
        return self.out(h)


def loss_fn(model, ids, tags):
    logits = model(ids)
    T, B, C = logits.shape
    return F.cross_entropy(logits.reshape(T * B, C), tg.Tensor(tags.T.reshape(T * B)))


def predict(model, ids):
    with tg.no_grad():
        return model(ids).numpy().argmax(axis=-1).T          # (B, T)


def train(model, rng, steps, length, lr):
    opt = tg.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        ids = random_strings(rng, 32, length)
        loss = loss_fn(model, ids, inside_tags(ids))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def main():
    parser = make_parser(__doc__, out="out/bidirectional")
    parser.add_argument("--hidden", type=positive_int, default=16, help="hidden units per direction (default: 16)")
    parser.add_argument("--layers", type=positive_int, default=2, help="LSTM layers (default: 2)")
    parser.add_argument("--length", type=positive_int, help="characters per training string (default: 20; --quick: 12)")
    parser.add_argument("--steps", type=positive_int, help="training steps of each model (default: 400; --quick: 100)")
    parser.add_argument("--lr", type=positive_float, default=0.02, help="Adam's learning rate (default: 0.02)")
    args = fill_defaults(parser.parse_args(), DEFAULTS, QUICK)
    out = setup(args)
    rng = np.random.default_rng(args.seed)

    ids = random_strings(rng, 1, 24)
    text, tags = show(ids[0], inside_tags(ids)[0])
    print(f"Tag each letter: inside a bracket pair (^) or not (.)\n  {text}\n  {tags}\n")

    models, losses, results = {}, {}, {}
    for name, bidirectional in (("unidirectional", False), ("bidirectional", True)):
        t0 = time.time()
        model = Tagger(args.hidden, args.layers, bidirectional)
        losses[name] = train(model, rng, args.steps, args.length, lr=args.lr)
        models[name] = model
        print(f"{name:>14} LSTM ({args.layers} layers, {model.num_parameters()} parameters): loss "
              f"{losses[name][0]:.3f} -> {np.mean(losses[name][-20:]):.3f} in {args.steps} steps "
              f"({_common.seconds(time.time() - t0)})")

    # accuracy on new strings, on every letter and on the letters that follow an open bracket
    ids = random_strings(rng, 500, 40)
    tags = inside_tags(ids)
    letters = ids < 3
    after_open = np.zeros_like(letters)
    for b in range(ids.shape[0]):
        left = None
        for t in range(ids.shape[1]):
            c = ALPHABET[ids[b, t]]
            left = c if c in "()" else left
            after_open[b, t] = letters[b, t] and left == "("
    print("\nAccuracy on 500 new strings of 40 characters:\n")
    print(f"{'':>32} | {'unidirectional':>14} | {'bidirectional':>13}")
    print(f"{'-' * 32}-+-{'-' * 14}-+-{'-' * 13}")
    for label, mask in (("all letters", letters), ("letters after an open bracket", after_open)):
        accs = {name: float((predict(m, ids) == tags)[mask].mean()) for name, m in models.items()}
        key = "letters" if mask is letters else "after_open"
        for name in accs:
            results.setdefault(name, {})[key] = accs[name]
        print(f"{label:>32} | {accs['unidirectional']:14.1%} | {accs['bidirectional']:13.1%}")

    ids = random_strings(rng, 3, 30)
    print("\nExamples (^ inside, . outside):")
    for row in range(3):
        text, truth = show(ids[row], inside_tags(ids[row:row + 1])[0])
        print(f"  {'text':>14}  {text}\n  {'truth':>14}  {truth}")
        for name, m in models.items():
            guess = predict(m, ids[row:row + 1])[0] * (ids[row] < 3)
            print(f"  {name:>14}  {show(ids[row], guess)[1]}")
        print()

    # the picture: a 1-layer bidirectional LSTM (untrained: the gradients of a first step) unrolled
    # on a short string at cell level. Two layers would double the rows: too many boxes to read.
    short = np.array([[ALPHABET.index(c) for c in PICTURE_TEXT]])
    loss = loss_fn(Tagger(args.hidden, 1, bidirectional=True), short, inside_tags(short))
    loss.name = "L"
    dg = viz.draw_bptt(loss, level="cell", gradients=True,
                       title=f"A bidirectional LSTM (1 layer, untrained) on \u201c{PICTURE_TEXT}\u201d: "
                             f"the forward row reads left to right, the reverse row right to left")
    written = [save_picture(dg, out / "bptt.svg")]
    if not args.quick:                       # a PNG of a big graph takes a while
        written.append(save_picture(dg, out / "bptt.png"))
    plot_curves({f"{name} LSTM": losses[name] for name in models}, ylabel="cross-entropy per character",
                title="Inside or outside a bracket pair: training loss", path=out / "loss.png")
    write_json(out / "results.json", {"accuracy": results, "loss": losses})
    print(f"wrote {', '.join(map(str, written))}, {out / 'loss.png'} and {out / 'results.json'}")


if __name__ == "__main__":
    main()
