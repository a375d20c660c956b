"""Regenerate the gallery: python visualize/gallery/make_gallery.py [--html PAGE.html]

Each picture is made by a few lines below (the README shows the same lines). The
programs are seeded, and the layout and DOT are deterministic, so running this twice
gives the same DOT; the images are then drawn by Graphviz (``neato -n2`` for the
unrolled pictures, ``dot`` for draw_graph). Every picture is written as SVG; the two
"hello" pictures also as PNG (to set beside torchviz's PNG). ``--html`` also writes the
backward step-through page of the hello RNN (about 1 MB, not part of the gallery).
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))   # the repository root

import tinygrad_rnn as tg                      # noqa: E402
from tinygrad_rnn import nn                    # noqa: E402

import visualize as viz                        # noqa: E402
from visualize.examples import hello_rnn, vanilla_chain   # noqa: E402


def save(picture, name, png=False):
    path = os.path.join(HERE, name)
    viz.save(picture, path + ".svg")
    if png:                                      # at Graphviz's default 96 dpi: text of 11 pt and up
        viz.save(picture, path + ".png")
    os.remove(path + ".gv")
    print("wrote", name)


def hello_op():
    loss, model, h_0 = hello_rnn()
    return viz.draw_bptt(loss, level="op", highlight="h_0", highlight_from="L_4",
                         title="The hello RNN, every op: the path from L_4 back to h_0")


def hello_cell_gradients():
    loss, model, h_0 = hello_rnn()
    return viz.draw_bptt(loss, level="cell", gradients=True, input_gradients=True,
                         title="The hello RNN, one box per cell, with the gradient on every edge")


def lstm_bidirectional():
    tg.manual_seed(0)
    lstm = nn.LSTM(3, 4, num_layers=2, bidirectional=True, dtype="float64")
    x = tg.randn(4, 1, 3, dtype="float64", name="x")
    out, _ = lstm(x)
    loss = (out ** 2).mean()
    loss.name = "L"
    return viz.draw_bptt(loss, level="cell", gradients=True,
                         title="2-layer bidirectional LSTM, cell level (reverse rows run right to left)")


def vanishing_vs_exploding():
    # W_hh = 0.6 Q and 1.5 Q (Q orthogonal), small inputs: dL/dh_{t-1} = W_hh^T (tanh' * dL/dh_t)
    with tg.scope("contractive: W_hh = 0.6 Q"):
        small, rnn_small, _ = vanilla_chain(T=8, scale=0.6, init="orthogonal", bias=False, input_scale=0.01, seed=1)
    with tg.scope("expansive: W_hh = 1.5 Q"):
        big, rnn_big, _ = vanilla_chain(T=8, scale=1.5, init="orthogonal", bias=False, input_scale=0.01, seed=1)
    small.name, big.name = "L (contractive)", "L (expansive)"
    return viz.draw_bptt([small, big], level="cell", gradients=True, edge_labels=False,
                         title="||dL/dh_t|| shrinks step by step with a contractive W_hh and grows with an "
                               "expansive one (one log colour scale)")


def stepthrough_frame():
    loss, model, h_0 = hello_rnn()
    frames = viz.backward_frames(loss, level="cell")
    return frames[7]


def truncated_bptt():
    tg.manual_seed(0)
    rnn = nn.RNN(2, 3, dtype="float64")
    x = tg.randn(6, 1, 2, dtype="float64")
    h, losses = None, []
    for k in range(2):                           # two chunks of 3 steps, h detached in between
        chunk = x[3 * k:3 * k + 3]
        chunk.name = f"x, chunk {k + 1}"
        with tg.scope(f"chunk{k + 1}"):
            out, h = rnn(chunk, h)
        loss = (out ** 2).sum()
        loss.name = f"L chunk {k + 1}"
        losses.append(loss)
        if k == 0:
            loss.backward()                      # chunk 1 is trained and its graph freed
        h = h.detach()
    return viz.draw_bptt(losses, level="cell", gradients=True, memory=True,
                         title="Truncated BPTT: the dashed edge is h.detach(); chunk 1's graph is already freed")


def op_graph():
    with tg.retain_values():
        loss, model, h_0 = hello_rnn(text="hel")
    return viz.draw_graph(loss, show_grads=True, formulas=True, title="draw_graph: two steps of the hello RNN")


PICTURES = [
    ("hello_op", hello_op),
    ("hello_cell_gradients", hello_cell_gradients),
    ("lstm_bidirectional", lstm_bidirectional),
    ("vanishing_vs_exploding", vanishing_vs_exploding),
    ("stepthrough_frame", stepthrough_frame),
    ("truncated_bptt", truncated_bptt),
    ("op_graph", op_graph),
]


PNG = {"hello_op", "hello_cell_gradients"}


def main(argv):
    for name, make in PICTURES:
        save(make(), name, png=name in PNG)
    if "--html" in argv:
        path = argv[argv.index("--html") + 1] if len(argv) > argv.index("--html") + 1 else "hello_backward.html"
        loss, model, h_0 = hello_rnn()
        viz.stepthrough_html(loss, path, level="cell", title="The hello RNN: backward, one cell at a time")
        print("wrote", path)


if __name__ == "__main__":
    main(sys.argv[1:])
