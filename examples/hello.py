"""The lecture's "hello" example: a vanilla RNN with 3 hidden units learns to spell h-e-l-l-o.

The lecture notes ("Sequence Model Part 1", slides "Recurrent Neural Networks"
and "Example: Character-level Language Model"; "L7. RNNs", slide "Vanilla RNNs math"):

    Vocabulary: [h, e, l, o].  Training sequence: "hello".
    h_t = tanh(W_hh h_{t-1} + W_xh x_t)
    y_t = W_hy h_t
    Key idea: the same parameters are used at each time step.

The network reads "hell", one one-hot character x_t per step, and at every step
predicts the next character: h -> e, e -> l, l -> l, l -> o. The two l's are the
point of the example: the same input "l" must be followed once by "l" and once
by "o", so the answer cannot come from x_t alone; it has to come from the
hidden state h_t, i.e. from what was read before. The loss is the notes'
cross-entropy, summed over the four steps:

    L = L_1 + L_2 + L_3 + L_4,    L_t = - log softmax(y_t)[target_t]

The model is written out with primitive ops (no nn.RNN), so the pictures show
exactly the equations above, with the parameters named W_xh, W_hh and W_hy. As
in the notes there are no biases, and h_0 = 0. (visualize/examples.py has another
"hello" RNN, the one of the visualize gallery: it uses nn.RNN's weights with
PyTorch's names W_ih, W_fc and biases, to sit beside torchviz's picture of the
PyTorch version. This one follows the notes' equations exactly.) h_0 is a leaf
that requires grad, like a parameter, only so that the pictures can show the
gradient that reaches it.

Pictures (under out/hello/):
  graph_op.svg     (a) the unrolled graph at op level: every matmul, tanh, log_softmax,
                   one cluster per timestep, each parameter drawn once with one edge per use;
                   in vermillion the path from the last loss L_4 back to h_0: through
                   y_4 = W_hy h_4, then h_4, h_3, h_2, h_1 to h_0, one W_hh @ h per step,
                   so the gradient is multiplied by W_hh^T four times on its way
  bptt_cell.svg    (b) one box per step, the gradient on every edge of the backward
                   pass, ||dL/dx_t|| on every input (which character matters most),
                   and the same path from L_4 to h_0 in vermillion
  backward.html    (c) the backward pass one box at a time, with a slider (open it in a
                   browser): the seed dL/dL = 1, the sum and stack of the four losses,
                   then output 4 (y_4 and L_4), cell 4, output 3, cell 3, ... down to cell 1
                   (backward reaches cell t once both output t and cell t+1 have sent their
                   part of dL/dh_t), while the boxes of W_hh, W_xh and W_hy count their "+="
                   terms as they arrive (the notes' "note the addition")
  backward_ops.html, backward/frame_*.svg   the same one op at a time, and the frames
                   as files for slides (not with --quick)
                   (b) and (c) show the gradients of the untrained network, the ones
                   the first training step uses; (a) shows the values after training
  loss.png         the training loss
Without Graphviz's `dot` program the pictures are written as DOT source (.gv) and
the step-through pages are skipped (it says how to install Graphviz).

Run:    python examples/hello.py            (about 10 s; --quick: a few seconds, fewer pictures)
"""
import time

import _common  # first: one BLAS thread, and this checkout's tinygrad_rnn and visualize on the path
import numpy as np
import tinygrad_rnn as tg
import visualize as viz
from _common import fill_defaults, make_parser, positive_float, positive_int, save_picture, setup, write_json
from tinygrad_rnn import nn
from tinygrad_rnn.nn.init import normal
from visualize.plots import plot_loss

VOCAB = "helo"
TEXT = "hello"
DEFAULTS = dict(steps=300)
QUICK = dict(steps=200)        # what --quick changes (an option given on the command line wins)


def one_hot(ch, name=None):
    """The column vector x (4, 1) with a 1 at the character's place in the vocabulary."""
    x = np.zeros((len(VOCAB), 1), dtype=np.float32)
    x[VOCAB.index(ch), 0] = 1.0
    return tg.Tensor(x, name=name)


class HelloRNN(nn.Module):
    """The notes' vanilla RNN, column vectors as in the equations: x_t (4, 1), h_t (H, 1), y_t (4, 1)."""

    def __init__(self, hidden_size=3):
        super().__init__()
        V, H = len(VOCAB), hidden_size
        self.hidden_size = H
        self.W_xh = nn.Parameter(normal((H, V), 0.5))
        self.W_hh = nn.Parameter(normal((H, H), 0.5))
        self.W_hy = nn.Parameter(normal((V, H), 0.5))

    def forward(self, text):
        """Run over text[:-1], predicting text[1:]. Returns (L, [y_1, ..., y_T])."""
        h = tg.zeros(self.hidden_size, 1, requires_grad=True, name="h_0")   # a leaf, so dL/dh_0 can be drawn
        losses, outputs = [], []
        for t, (ch, target) in enumerate(zip(text[:-1], text[1:]), start=1):
            with tg.scope(f"t={t}"):
                x = one_hot(ch, name=f"x_{t} = '{ch}'")
                h = (self.W_hh @ h + self.W_xh @ x).tanh()                 # h_t = tanh(W_hh h_{t-1} + W_xh x_t)
                h.name = f"h_{t}"
                y = self.W_hy @ h                                          # y_t = W_hy h_t
                y.name = f"y_{t}"
                # L_t = - sum_c log softmax(y_t)_c [c = target]: the notes' cross-entropy, written out
                L_t = -(y.log_softmax(axis=0) * one_hot(target, name=f"target '{target}'")).sum()
                L_t.name = f"L_{t}"
            losses.append(L_t)
            outputs.append(y)
        loss = tg.stack(losses).sum()
        loss.name = "L"
        return loss, outputs


def show_predictions(model, title):
    """Print, for each step, the input, the target and the softmax of y_t. Returns the predicted string."""
    with tg.no_grad():
        loss, outputs = model(TEXT)
    print(f"{title} (loss L = {loss.item():.3f}):")
    print(f"  {'t':>2}  input  target  predicted  " + " ".join(f"P({c})" for c in VOCAB))
    predicted = ""
    for t, (ch, target, y) in enumerate(zip(TEXT[:-1], TEXT[1:], outputs), start=1):
        p = y.softmax(axis=0).numpy()[:, 0]
        guess = VOCAB[int(p.argmax())]
        predicted += guess
        mark = "" if guess == target else "   (wrong)"
        print(f"  {t:>2}  {ch!r:^5}  {target!r:^6}  {guess!r:^9}  " + " ".join(f"{v:4.2f}" for v in p) + mark)
    print(f"  reading \"{TEXT[:-1]}\" it predicts \"{predicted}\" (the right answer is \"{TEXT[1:]}\")\n")
    return predicted


def write_step_through(model, out, op_level):
    """(c) The backward pass one node at a time: a page with a slider, and each frame as an SVG.
    The page holds the frames drawn by Graphviz: without it, say so and skip the pages."""
    loss, _ = model(TEXT)
    try:
        viz.stepthrough_html(loss, out / "backward.html", level="cell",
                             title="\u201chello\u201d: backpropagation through time, one box at a time")
        if op_level:   # every primitive op: about 45 frames, a few seconds to draw
            loss, _ = model(TEXT)
            viz.stepthrough_html(loss, out / "backward_ops.html", level="op",
                                 title="\u201chello\u201d: backpropagation, one op at a time")
    except viz.GraphvizNotFound:
        _common.graphviz_missing("  no backward.html: its frames are drawn by Graphviz")
        return False
    if op_level:
        loss, _ = model(TEXT)
        folder = out / "backward"
        folder.mkdir(exist_ok=True)
        for k, frame in enumerate(viz.backward_frames(loss, level="cell")):
            save_picture(frame, folder / f"frame_{k:02d}.svg")
    return True


def main():
    parser = make_parser(__doc__, out="out/hello")
    parser.add_argument("--hidden", type=positive_int, default=3, help="hidden units (default: 3, as in the notes)")
    parser.add_argument("--steps", type=positive_int, help="training steps (default: 300; --quick: 200)")
    parser.add_argument("--lr", type=positive_float, default=0.1, help="Adam's learning rate (default: 0.1)")
    args = fill_defaults(parser.parse_args(), DEFAULTS, QUICK)
    out = setup(args)

    print(f"Vocabulary [{', '.join(VOCAB)}], training sequence \"{TEXT}\"; "
          f"h_t = tanh(W_hh h_(t-1) + W_xh x_t), y_t = W_hy h_t, {args.hidden} hidden units\n")
    model = HelloRNN(args.hidden)
    before = show_predictions(model, "Before training")

    # (b) and (c) at the start of training, when the gradients are large and all of them matter.
    # Vermillion: every path along which the last loss L_4 reaches h_0 (backward from L_4 only).
    loss, _ = model(TEXT)
    bptt_cell = save_picture(viz.draw_bptt(loss, level="cell", gradients=True, input_gradients=True,
                                           highlight="h_0", highlight_from="L_4",
                                           title="\u201chello\u201d, BPTT before training; "
                                                 "vermillion: the way from L_4 back to h_0"),
                             out / "bptt_cell.svg")
    pages = write_step_through(model, out, op_level=not args.quick)

    opt = tg.optim.Adam(model.parameters(), lr=args.lr)
    losses, t0 = [], time.time()
    for step in range(args.steps):
        loss, _ = model(TEXT)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    print(f"Training: {args.steps} steps of Adam (lr {args.lr}), loss {losses[0]:.3f} -> {losses[-1]:.4f} "
          f"in {_common.seconds(time.time() - t0)}\n")
    after = show_predictions(model, "After training")

    # (a) the op graph after training, with the value of every tensor, and the way from L_4 to h_0:
    # count the W_hh matmuls on it
    with tg.retain_values():
        loss, _ = model(TEXT)
    graph_op = save_picture(viz.draw_bptt(loss, level="op", show_values=True, highlight="h_0", highlight_from="L_4",
                                          title="\u201chello\u201d unrolled, every op (values after training); "
                                                "vermillion: the way from L_4 back to h_0"),
                            out / "graph_op.svg")
    plot_loss(losses, log_y=True, title="\u201chello\u201d: training loss", path=out / "loss.png")
    write_json(out / "results.json", {"before": before, "after": after, "loss": losses})
    print(f"wrote {graph_op}, {bptt_cell}, {out / 'loss.png'} and {out / 'results.json'}")
    if pages:
        extra = "" if args.quick else f"; also backward_ops.html, and the frames as SVG files in {out / 'backward'}"
        print(f"open {out / 'backward.html'} in a browser: backpropagation one step at a time{extra}")


if __name__ == "__main__":
    main()
