"""visualize/: the unrolled pictures, checked on their DOT text, their numbers and their rendering.

The DOT of an unrolled picture carries every position (``pos``, cluster ``bb``), so the
tests can check the layout itself: time runs left to right, inputs sit below losses,
each shared weight has one edge per timestep, state edges join t and t+1, detach()
cuts are the only dashed edges. Numbers are checked against the engine (retain_grad)
and against a hand-written NumPy recursion. Rendering uses the real Graphviz.
"""
import os
import pathlib
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import tinygrad_rnn as tg
from tinygrad_rnn import nn
from tinygrad_rnn.function import Function

import visualize as viz
from visualize import style as S
from visualize.examples import hello_rnn
from visualize.render import esc, esc_attr

from dotparse import bb, node_with, parse_dot, pos, time_clusters, visible_edges
from visualize.unroll import LEVELS

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = pathlib.Path(__file__).resolve().parent / "data"
needs_dot = pytest.mark.skipif(not viz.dot_available(), reason="Graphviz (dot, neato) is not installed")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------------ the lecture's example


def test_hello_op_level_time_runs_left_to_right_one_cluster_per_step(hello):
    loss, model, h_0 = hello
    dot = parse_dot(viz.draw_bptt(loss, level="op").source)
    clusters = time_clusters(dot)
    assert [t for t, _ in clusters] == [1, 2, 3, 4]
    boxes = [bb(dot["clusters"][name]["attrs"]) for _, name in clusters]
    for (l0, _, r0, _), (l1, _, r1, _) in zip(boxes, boxes[1:]):
        assert r0 < l1, "each step's cluster lies entirely left of the next one"
    for (t, name), box in zip(clusters, boxes):
        members = dot["clusters"][name]["nodes"]
        assert len(members) == 11, "9 ops + the input x_t + the target, in every step"
        for n in members:
            x, y = pos(dot["nodes"][n])
            assert box[0] < x < box[2] and box[1] < y < box[3]
        x_t = [n for n in members if f"x_{t} = " in dot["nodes"][n]["label"]]
        loss_t = [n for n in members if f"L_{t}" in dot["nodes"][n]["label"]]
        assert len(x_t) == 1 and len(loss_t) == 1
        assert pos(dot["nodes"][x_t[0]])[1] < pos(dot["nodes"][loss_t[0]])[1], "inputs below, losses above"
    # which input goes in at each step (question 1 of the reference pictures)
    inputs = sorted((pos(dot["nodes"][n])[0], re.search(r"x_\d = &#x27;(\w)&#x27;", dot["nodes"][n]["label"]).group(1))
                    for n in node_with(dot, "x_"))
    assert [c for _, c in inputs] == ["h", "e", "l", "l"]
    root = node_with(dot, "L  scalar")
    assert pos(dot["nodes"][root[0]])[1] > max(bb(dot["clusters"][n]["attrs"])[3] for _, n in clusters)


@pytest.mark.parametrize("level", ["op", "cell"])
def test_each_shared_parameter_is_one_node_with_one_edge_per_timestep(hello, level):
    loss, model, h_0 = hello
    dot = parse_dot(viz.draw_bptt(loss, level=level).source)
    cluster_of = {n: name for name, c in dot["clusters"].items() for n in c["nodes"]}
    step_of = {name: t for t, name in time_clusters(dot)}
    for name in ("rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0", "fc.weight", "fc.bias"):
        ids = node_with(dot, f"<B>{name}</B>")
        assert len(ids) == 1, f"{name} is drawn once"
        assert "shared: used at 4 steps (t = 1\u20264)" in dot["nodes"][ids[0]]["label"]
        out = [b for a, b, _ in visible_edges(dot) if a == ids[0]]
        assert sorted(step_of[cluster_of[b]] for b in out) == [1, 2, 3, 4], f"{name}: one edge into each step"


def test_state_edges_join_step_t_to_step_t_plus_1(hello):
    loss, model, h_0 = hello
    for level in ("op", "cell"):
        picture = viz.draw_bptt(loss, level=level)
        g, pos = picture.picture.graph, picture.placement.pos
        state = [e for e in g.edges if e.kind == "state"]
        pairs = sorted((-1 if g.nodes[e.src].t is None else g.nodes[e.src].t, g.nodes[e.dst].t) for e in state)
        assert pairs == [(-1, 1), (1, 2), (2, 3), (3, 4)], level          # h_0 -> step 1, then t -> t+1
        assert g.nodes[state[0].src].name == "h_0"
        if level == "cell":
            for e in state[1:]:
                assert pos[e.src][1] == pos[e.dst][1], "cells of one row are level: horizontal"
                assert pos[e.src][0] < pos[e.dst][0]


def test_bidirectional_layers_are_stacked_rows_and_reverse_state_runs_right_to_left():
    tg.manual_seed(0)
    lstm = nn.LSTM(3, 4, num_layers=2, bidirectional=True)
    out, _ = lstm(tg.randn(5, 1, 3))
    loss = out.sum()
    picture = viz.draw_bptt(loss, level="cell")
    g, pos = picture.picture.graph, picture.placement.pos
    rows = {}
    for n in g.nodes.values():
        if n.kind == "group" and n.t is not None and n.part != "input":
            rows.setdefault(n.row, []).append(n)
    assert sorted(rows) == sorted([("LSTM", "layer0"), ("LSTM", "layer0_reverse"), ("LSTM", "layer1"),
                                   ("LSTM", "layer1_reverse")])
    heights = {key: {pos[c.id][1] for c in cells} for key, cells in rows.items()}
    assert all(len(h) == 1 for h in heights.values()), "each row is one horizontal line of cells"
    order = sorted(heights, key=lambda k: heights[k].pop())
    assert order == [("LSTM", "layer0"), ("LSTM", "layer0_reverse"), ("LSTM", "layer1"), ("LSTM", "layer1_reverse")]
    for key, cells in rows.items():
        xs = {c.t: pos[c.id][0] for c in cells}
        assert [t for t, _ in sorted(xs.items(), key=lambda kv: kv[1])] == [1, 2, 3, 4, 5], "time runs left to right"
    for e in g.edges:
        if e.kind == "state" and g.nodes[e.src].t is not None:
            a, b = g.nodes[e.src], g.nodes[e.dst]
            if a.row[-1].endswith("_reverse"):
                assert b.t == a.t - 1 and pos[b.id][0] < pos[a.id][0], "reverse direction: right to left"
            else:
                assert b.t == a.t + 1 and pos[b.id][0] > pos[a.id][0]
    dot = viz.draw_bptt(loss, level="cell").source
    assert "reverse  \u2190" in dot and "forward  \u2192" in dot


def test_levels_op_cell_layer_and_bad_level(hello):
    loss, model, h_0 = hello
    sizes = {level: len(viz.draw_bptt(loss, level=level).picture.graph.nodes) for level in ("op", "cell", "layer")}
    assert sizes["op"] > sizes["cell"] > sizes["layer"]
    with pytest.raises(ValueError, match="level: expected one of 'op', 'cell', 'layer', got 'ops'"):
        viz.draw_bptt(loss, level="ops")


def test_errors_name_what_was_expected():
    with pytest.raises(TypeError, match="expected a Tensor or a list of Tensors, got int"):
        viz.draw_bptt(3)
    with pytest.raises(ValueError, match="nothing to draw: the tensor at position 0 .*has no graph"):
        viz.draw_bptt(tg.ones(2))
    with pytest.raises(ValueError, match="timesteps: expected a positive number of steps"):
        loss, _, _ = hello_rnn()
        viz.draw_bptt(loss, timesteps=0)


# ------------------------------------------------------------------------------------------ gradients
def _hand_rnn(T=6, H=3, scale=0.5, seed=0):
    """A vanilla tanh RNN written from ops, h_t kept with retain_grad, loss w . h_T."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((H, H)))
    W_hh = nn.Parameter(tg.Tensor(scale * Q, dtype="float64"), name="W_hh")
    W_ih = nn.Parameter(tg.Tensor(rng.standard_normal((H, 2)) * 0.5, dtype="float64"), name="W_ih")
    w = tg.Tensor(rng.standard_normal(H), dtype="float64", name="w")
    h = tg.zeros(1, H, dtype="float64", requires_grad=True, name="h_0")
    hs = []
    for t in range(1, T + 1):
        with tg.scope(f"t={t}"):
            x = tg.Tensor(rng.standard_normal((1, 2)), dtype="float64", name=f"x_{t}")
            h = (tg.linear(x, W_ih) + tg.linear(h, W_hh)).tanh()
            h.name = "h"
            h.retain_grad()
        hs.append(h)
    loss = (hs[-1] * w).sum()
    loss.name = "L"
    return loss, hs, W_hh, w


def test_contractive_rnn_dL_dh_t_decreases_and_matches_the_engine_and_numpy():
    loss, hs, W_hh, w = _hand_rnn()
    loss.backward(retain_graph=True)
    engine = [float(np.linalg.norm(h.grad.numpy())) for h in hs]
    # by hand: dL/dh_T = w, dL/dh_{t-1} = W_hh^T (dL/dh_t * (1 - h_t^2))
    g = w.numpy().reshape(1, -1)
    by_hand = [None] * len(hs)
    for t in range(len(hs) - 1, -1, -1):
        by_hand[t] = float(np.linalg.norm(g))
        g = (g * (1 - hs[t].numpy() ** 2)) @ W_hh.numpy()
    np.testing.assert_allclose(engine, by_hand, rtol=1e-10)
    for h in hs:
        h.grad = None
    W_hh.grad = None
    picture = viz.draw_bptt(loss, level="cell", gradients=True)
    drawn = [picture.picture.state_norms[((), t)][0][1] for t in range(1, 7)]
    np.testing.assert_allclose(drawn, engine, rtol=1e-10)
    assert all(a < b for a, b in zip(drawn, drawn[1:])), "further from the loss, smaller"
    labels = {int(t): float(v) for t, v in re.findall(r"\u2016\u2202L/\u2202h_(\d+)\u2016 = ([0-9.e+-]+)", picture.source)}
    assert sorted(labels) == [0, 1, 2, 3, 4, 5, 6]          # the steps' labels, and h_0's box
    np.testing.assert_allclose([labels[t] for t in range(1, 7)], engine, rtol=5e-3)
    assert W_hh.grad is None, "drawing leaves .grad as it was"


def test_shared_weight_gradient_is_the_sum_of_its_per_step_terms():
    loss, hs, W_hh, w = _hand_rnn(T=4)
    picture = viz.draw_bptt(loss, level="op", gradients=True)
    pic = picture.picture
    g = pic.graph
    node = next(n for n in g.nodes.values() if n.name == "W_hh")
    terms = [next(iter(pic.edge_grads(e).values())) for e in g.edges if e.src == node.id]
    assert len(terms) == 4
    loss.backward(retain_graph=True)
    np.testing.assert_allclose(sum(terms), W_hh.grad.numpy(), rtol=1e-12)
    # each use's number is its term's share of the total, <term, G> / ||G||: the shares add up to ||G||
    G = W_hh.grad.numpy()
    shares = [float((term * G).sum() / np.linalg.norm(G)) for term in terms]
    np.testing.assert_allclose(sum(shares), np.linalg.norm(G), rtol=1e-12)
    text = " ".join(t for t, *_ in pic.boxes[node.id].lines)
    assert f"\u2016\u2202L/\u2202W_hh\u2016 = {S.fmt(np.linalg.norm(G))}, the sum of its uses' shares" in text
    printed = [float(v) for v in re.findall(r"t=\d: ([-0-9.e]+)", text)]
    assert len(printed) == 4 and abs(sum(printed) - float(S.fmt(np.linalg.norm(G)))) < 1e-9, "they add up as printed"
    unit = 10.0 ** -len(re.findall(r"t=\d: -?\d+\.(\d+)", text)[-1])
    np.testing.assert_allclose(sorted(printed), sorted(shares), atol=unit), "each within one printed digit"
    dot = parse_dot(picture.source)
    plus = [re.search(r">([^<>]*)</FONT>", a["label"]).group(1) for x, _, a in dot["edges"] if x == node.id]
    texts = re.findall(r"t=\d: ([-0-9.e]+)", text)
    assert sorted(plus) == sorted(f"W_hh {S.signed(v)}" for v in texts), "each lane shows its use's number, named"


def test_the_numbers_of_a_sum_add_up_as_printed():
    from visualize.style import fmt_sum
    assert fmt_sum(0.279, [0.0, 0.0523, 0.1800, 0.0467]) == ("0.279", ["0", "0.052", "0.180", "0.047"])
    assert fmt_sum(0.683, [0.6686, 0.0144]) == ("0.683", ["0.669", "0.014"])     # not 0.669 + 0.014 = 0.683?
    rng = np.random.default_rng(0)
    for _ in range(2000):
        parts = list(rng.normal(size=rng.integers(1, 7)) * 10.0 ** rng.uniform(-6, 3))
        total = sum(parts)
        if total <= 0:
            continue
        shown, texts = fmt_sum(total, parts)
        value = (lambda x: float(x.split("e")[0]) * 10.0 ** int(x.split("e")[1])) if "e" in shown else float
        unit = 10.0 ** (int(shown.split("e")[1]) - 2) if "e" in shown else 10.0 ** -len(shown.split(".")[-1])
        assert shown == S.fmt(total)
        assert abs(sum(value(t) if t != "0" else 0.0 for t in texts) - value(shown)) < unit / 2, (shown, texts)


def test_edge_colour_and_width_grow_with_the_gradient_norm(hello):
    loss, model, h_0 = hello
    picture = viz.draw_bptt(loss, level="op", gradients=True)
    dot = parse_dot(picture.source)
    drawn = visible_edges(dot)
    marks = picture.picture.marks
    assert len(drawn) == len(marks)
    pairs = []
    for (a, b, attrs), e, m in zip(drawn, picture.picture.graph.edges, marks):
        if m.share and e.kind != "param":            # a lane keeps its parameter's colour
            ramp = list(reversed(S.VIRIDIS))
            pairs.append((abs(m.share), float(attrs["penwidth"]), ramp.index(attrs["color"])))
    assert len(pairs) > 40
    pairs.sort()
    widths = [w for _, w, _ in pairs]
    colours = [c for _, _, c in pairs]
    assert widths == sorted(widths) and colours == sorted(colours)
    assert widths[0] < widths[-1] and colours[0] < colours[-1]
    assert all(attrs.get("dir") == "back" for (a, b, attrs), m in zip(drawn, marks)
               if m.share), "gradient arrows point backward"
    assert all(attrs.get("dir") == "none" for (a, b, attrs), m in zip(drawn, marks)
               if m.share is None), "an edge that carries no gradient has no arrowhead"
    for colour, width, lo, hi in picture.picture.scale.bins():
        assert f"{S.fmt(lo)} \u2013 {S.fmt(hi)}" in picture.source, "the legend gives the numbers"


def test_gradients_do_not_change_grad_unless_asked():
    def run(keep):
        tg.manual_seed(3)
        rnn = nn.RNN(2, 3, dtype="float64")
        x = tg.randn(4, 1, 2, dtype="float64")
        out, _ = rnn(x)
        loss = (out ** 2).sum()
        viz.draw_bptt(loss, gradients=True, keep_grads=keep)
        return rnn, loss
    rnn, loss = run(False)
    assert all(p.grad is None for p in rnn.parameters())
    loss.backward()                       # the normal backward still works after drawing
    reference = {n: p.grad.numpy() for n, p in rnn.named_parameters()}
    rnn2, _ = run(True)
    for n, p in rnn2.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), reference[n], rtol=1e-12)


def test_drawing_gradients_of_a_freed_graph_says_what_to_do(hello):
    loss, model, h_0 = hello
    loss.backward()
    with pytest.raises(tg.GraphFreedError, match="Draw before calling loss.backward\\(\\)"):
        viz.draw_bptt(loss, gradients=True)


# ------------------------------------------------------------------------------------------ highlight
def test_highlight_marks_every_path_from_the_last_loss_to_h_0(hello):
    loss, model, h_0 = hello
    picture = viz.draw_bptt(loss, level="op", highlight="h_0", highlight_from="L_4")
    pic = picture.picture
    marked = [n for n in pic.graph.nodes.values() if pic.boxes[n.id].highlight]
    ops = sorted(n.op for n in marked if n.kind == "op")
    assert sorted(n.t for n in marked if n.op == "tanh") == [1, 2, 3, 4]
    reads_W_hh = [n for n in marked if n.kind == "op" and "W_hh" in pic.boxes[n.id].lines[0][0]]
    assert len(reads_W_hh) == 4, "the gradient of L_4 passes through W_hh four times on its way to h_0"
    assert len(ops) == 17 and ops.count("linear") == 5
    assert any(n.name == "h_0" for n in marked)
    assert "ops on these paths that read rnn.weight_hh_l0: 4" in picture.source
    dot = parse_dot(picture.source)
    orange = [e for e in visible_edges(dot) if e[2].get("color") == S.HIGHLIGHT]
    assert len(orange) == 17, "one edge per op on the path, the last into h_0's consumer"


def test_highlight_is_an_underlay_that_keeps_every_colour(hello):
    loss, model, h_0 = hello
    for gradients in (False, True):
        picture = viz.draw_bptt(loss, level="op", gradients=gradients, highlight="h_0", highlight_from="L_4")
        pic, edges = picture.picture, visible_edges(parse_dot(picture.source))
        g = pic.graph
        under, drawn = edges[:17], edges[17:]
        assert [e[2]["color"] for e in under] == [S.HIGHLIGHT] * 17, "the underlays come first: drawn below"
        assert len(drawn) == len(g.edges)
        marked = [(a, b, attrs) for (a, b, attrs), m in zip(drawn, pic.marks) if m.highlight]
        assert [(a, b) for a, b, _ in marked] == [(a, b) for a, b, _ in under]
        for (_, _, attrs), (_, _, low) in zip(marked, under):
            assert float(low["penwidth"]) >= float(attrs["penwidth"]) + 4, "the underlay shows on both sides"
            assert attrs["color"] != S.HIGHLIGHT, "the edge keeps its own colour on top"
        for (a, b, attrs), e, m in zip(drawn, g.edges, pic.marks):
            if gradients and m.share and e.kind != "param":
                assert attrs["color"] == pic.scale.colour(abs(m.share)), "gradient colours are kept"
            if not gradients:
                own = pic.param_colour.get(e.src, S.EDGE[e.kind][0])
                assert attrs["color"] == own, "nothing is greyed out, the lanes keep their parameter's colour"
        assert "vermillion underlay: every gradient path from L_4 to h_0" in picture.source
        assert "grey: no gradient" not in picture.source


def test_highlight_accepts_a_tensor_a_parameter_name_or_an_alias(hello):
    loss, model, h_0 = hello
    a = viz.draw_bptt(loss, highlight=model.rnn.weight_hh_l0).picture
    b = viz.draw_bptt(loss, highlight="rnn.weight_hh_l0").picture
    c = viz.draw_bptt(loss, highlight="W_hh").picture
    marked = [sorted(n for n, box in p.boxes.items() if box.highlight) for p in (a, b, c)]
    assert marked[0] == marked[1] == marked[2] and len(marked[0]) > 20
    with pytest.raises(ValueError, match="highlight: nothing in the graph is called 'W_xyz'; names in it: .*'h_0'"):
        viz.draw_bptt(loss, highlight="W_xyz")
    with pytest.raises(ValueError, match="is not part of this graph"):
        viz.draw_bptt(loss, highlight=tg.ones(2, requires_grad=True))


# ------------------------------------------------------------------------------------------ truncated BPTT
def _two_chunks(backward_first=True):
    tg.manual_seed(0)
    rnn = nn.RNN(2, 3, dtype="float64")
    x = tg.randn(6, 1, 2, dtype="float64")
    h, losses, states = None, [], []
    for k in range(2):
        with tg.scope(f"chunk{k + 1}"):
            out, h = rnn(x[3 * k:3 * k + 3], h)
        loss = (out ** 2).sum()
        losses.append(loss)
        if k == 0 and backward_first:
            loss.backward()
        h = h.detach()
        states.append(h)
    return losses, rnn


@pytest.mark.parametrize("level", ["op", "cell"])
def test_dashed_edges_exactly_at_detach(level):
    losses, rnn = _two_chunks()
    picture = viz.draw_bptt(losses, level=level, gradients=True)
    dot = parse_dot(picture.source)
    dashed = [e for e in visible_edges(dot) if "dashed" in e[2].get("style", "")]
    assert len(dashed) == 1
    g, pos_of = picture.picture.graph, picture.placement.pos
    a, b = g.nodes[dashed[0][0]], g.nodes[dashed[0][1]]
    assert a.row == ("chunk1", "RNN", "layer0") and a.t == 3
    assert b.row == ("chunk2", "RNN", "layer0") and b.t == 4, "steps are numbered on across chunks, from 1"
    assert "detach() \u2702" in dashed[0][2]["label"]
    assert pos_of[a.id][0] < pos_of[b.id][0], "the second chunk continues the first to its right"
    assert "L chunk 1" not in picture.source or "its graph was freed" in picture.source
    # drawn alone, the second chunk starts from a detached leaf, with the one dashed edge
    alone = parse_dot(viz.draw_bptt(losses[1], level=level).source)
    dashed = [e for e in visible_edges(alone) if "dashed" in e[2].get("style", "")]
    assert len(dashed) == 1 and "detached" in alone["nodes"][dashed[0][0]]["label"]
    # without detach() there is no cut at all
    tg.manual_seed(0)
    rnn = nn.RNN(2, 3)
    out, h = rnn(tg.randn(3, 1, 2))
    out2, _ = rnn(tg.randn(3, 1, 2), h)
    plain = parse_dot(viz.draw_bptt(out2.sum(), level=level).source)
    assert not [e for e in visible_edges(plain) if "dashed" in e[2].get("style", "")]


def test_memory_per_step_and_what_detach_frees():
    losses, rnn = _two_chunks(backward_first=False)
    # each chunk's graph holds its own saved arrays; after detach, chunk 2's graph does not reach chunk 1
    m2 = viz.memory_by_step(losses[1])
    assert {t for _, t in m2 if t is not None} == {1, 2, 3}, "steps numbered from 1, as in the pictures"
    assert all(label.startswith("chunk2") for label, t in m2 if t is not None)
    # the hidden states each step saves: tanh keeps h_t (1x3 float64 = 24 bytes)
    steps = [v for (label, t), v in m2.items() if t is not None]
    assert min(steps) >= 24
    picture = viz.draw_bptt(losses[1], level="cell", memory=True)
    assert re.search(r"saved for backward: \d+ B", picture.source)
    # without detach the next chunk's graph reaches back into the first one: more memory
    tg.manual_seed(0)
    rnn = nn.RNN(2, 3, dtype="float64")
    x = tg.randn(6, 1, 2, dtype="float64")
    with tg.scope("chunk1"):
        out, h = rnn(x[0:3])
    with tg.scope("chunk2"):
        out2, _ = rnn(x[3:6], h)
    whole = viz.memory_by_step((out2 ** 2).sum())
    assert sum(whole.values()) > sum(m2.values())
    assert any(label.startswith("chunk1") for label, _ in whole)
    # backward frees them
    loss = (out2 ** 2).sum()
    loss.backward()
    assert sum(viz.memory_by_step(loss).values()) == 0


# ------------------------------------------------------------------------------------------ long sequences
def test_timesteps_shows_first_and_last_with_an_ellipsis():
    tg.manual_seed(0)
    rnn = nn.RNN(2, 3)
    out, _ = rnn(tg.randn(10, 1, 2))
    picture = viz.draw_bptt(out.sum(), level="cell", gradients=True, timesteps=2)
    dot = parse_dot(picture.source)
    assert [t for t, _ in time_clusters(dot)] == [1, 2, 9, 10]
    etc = [n for n in node_with(dot, "6 steps not drawn") if "(t = 3\u20268)" in dot["nodes"][n]["label"]]
    assert len(etc) == 1, "one box for the steps not drawn (and one for their inputs)"
    cluster = {t: name for t, name in time_clusters(dot)}
    xs = [pos(dot["nodes"][n]) for n in dot["clusters"][cluster[2]]["nodes"]]
    assert xs[0][0] < pos(dot["nodes"][etc[0]])[0] < bb(dot["clusters"][cluster[9]]["attrs"])[0]
    w = node_with(dot, "<B>weight_hh_l0</B>")[0]
    assert "used at 10 steps" in dot["nodes"][w]["label"]
    assert len([e for e in visible_edges(dot) if e[0] == w]) == 5, "4 shown steps and the ellipsis"
    assert "\u2016\u2202L/\u2202h_t\u2016 from" in dot["nodes"][etc[0]]["label"], "collapsed boxes keep their numbers"
    assert [t for t, _ in time_clusters(parse_dot(viz.draw_bptt(out.sum(), timesteps=[1, 6]).source))] == [1, 6]


def test_layer_level_keeps_the_per_step_gradient_norms():
    loss, hs, W_hh, w = _hand_rnn(T=5)
    picture = viz.draw_bptt(loss, level="layer", gradients=True)
    box = next(n for n in picture.picture.graph.nodes.values() if n.part == "layer")
    facts = picture.picture.facts[box.id]
    values = [v for _, v in facts["state_values"]]
    for h in hs:                 # drawing ran backward once: retain_grad() kept that gradient too
        h.grad = None
    loss.backward(retain_graph=True)
    np.testing.assert_allclose(values, [np.linalg.norm(h.grad.numpy()) for h in hs], rtol=1e-10)
    assert facts["state_norms"][0][0] != facts["state_norms"][-1][0], "the strip shades from first to last"
    assert f"from {S.fmt(min(values))} to {S.fmt(max(values))}" in picture.source


def test_node_limit_collapses_and_says_so():
    tg.manual_seed(0)
    lstm = nn.LSTM(2, 3, num_layers=2)
    out, _ = lstm(tg.randn(30, 1, 2))
    loss = out.sum()
    picture = viz.draw_bptt(loss, level="op", max_nodes=150)
    assert len(picture.picture.graph.nodes) <= 150
    assert "exceed max_nodes=150: drawn at level \u201ccell\u201d" in picture.source
    tight = viz.draw_bptt(loss, level="cell", max_nodes=60)
    assert len(tight.picture.graph.nodes) <= 60
    assert "only the first and last" in tight.source and "steps not drawn" in tight.source


def test_a_huge_graph_without_timesteps_never_hangs():
    x = tg.ones(3, requires_grad=True, name="x")
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    picture = viz.draw_bptt(y.sum(), max_nodes=100)
    graph = viz.draw_graph(y.sum(), max_nodes=100)
    for p in (picture, graph):                # collapsed before anything is laid out or handed to dot
        assert len(p.picture.graph.nodes) <= 101
        assert "exceed max_nodes=100" in p.source and "earlier " in p.source
    # draw_graph counts boxes: 10,001 ops (10,000 mul, 1 sum), one output each, x and 10,000 copies of 1.0001.
    # From the output: sum and its output (2 boxes), then 32 x (mul, its output, its 1.0001) fit in 99 boxes
    assert len(graph.picture.graph.nodes) == 2 + 32 * 3 + 1, "98 boxes and the ellipsis"
    assert ("the whole graph takes 30003 boxes (10001 ops, their outputs and 10001 leaves), which exceed "
            "max_nodes=100: only the 65 ops and leaves nearest the output are drawn (98 boxes)") in graph.source


@needs_dot
@pytest.mark.slow
def test_two_layer_lstm_over_50_steps_renders_at_cell_level_in_seconds(tmp_path):
    tg.manual_seed(0)
    lstm = nn.LSTM(8, 16, num_layers=2)
    out, _ = lstm(tg.randn(50, 4, 8))
    loss = (out ** 2).mean()
    picture = viz.draw_bptt(loss, level="cell", gradients=True)   # its time: benchmarks/run.py (render)
    path = viz.save(picture, tmp_path / "lstm50.svg")
    assert len(time_clusters(parse_dot(picture.source))) == 100
    ET.parse(path)


# ------------------------------------------------------------------------------------------ overlays
@pytest.mark.filterwarnings("ignore::RuntimeWarning")      # the NaNs are made on purpose
def test_anomaly_marks_the_first_nonfinite_op_as_detect_anomaly_names_it():
    def build():
        tg.manual_seed(0)
        W = nn.Parameter(tg.Tensor([[0.5, -0.3], [0.2, 0.4]], dtype="float64"), name="W")
        h = tg.zeros(1, 2, dtype="float64")
        losses = []
        for t in range(1, 4):
            with tg.scope(f"t={t}"):
                x = tg.Tensor([[1.0, -1.0]], dtype="float64", name=f"x_{t}")
                h = (tg.linear(h, W) + x).tanh()
                shift = 5.0 if t == 2 else 0.0           # log of a negative number at t=2
                losses.append((h - shift + 2.0).log().sum())
        return tg.stack(losses).sum(), W
    with tg.detect_anomaly():
        with pytest.raises(tg.AnomalyError) as info:
            build()
    assert "log" in str(info.value) and "t=2" in str(info.value)
    with tg.retain_values():
        loss, W = build()
    picture = viz.draw_anomaly(loss)
    found = picture.anomaly
    assert found["phase"] == "forward" and found["op"] == "log" and found["scope"] == ("t=2",)
    pic = picture.picture
    assert pic.boxes[found["node"]].border == S.HIGHLIGHT
    assert "first non-finite value: forward of log at t=2" in picture.source
    marked = {n.op for n in pic.graph.nodes.values() if pic.boxes[n.id].highlight}
    assert {"log", "sum", "stack"} <= marked and "tanh" not in marked, "the path from the NaN to the loss"
    # without retain_values the loss is seen to be NaN, and the picture says how to find where
    loss, W = build()
    again = viz.draw_anomaly(loss)
    assert again.anomaly["phase"] == "forward" and again.anomaly["located"] is False
    assert "build the graph inside `with tg.retain_values():`" in again.source
    # a backward anomaly: sqrt(0) is finite, its gradient is not
    def build_sqrt():
        W = nn.Parameter(tg.Tensor([[0.5, -0.3], [0.2, 0.4]], dtype="float64"), name="W")
        h, losses = tg.zeros(1, 2, dtype="float64"), []
        for t in range(1, 4):
            with tg.scope(f"t={t}"):
                h = (tg.linear(h, W) + tg.Tensor([[1.0, -1.0]], dtype="float64")).tanh()
                losses.append((h * h * (0.0 if t == 2 else 1.0)).sum().sqrt())
        return tg.stack(losses).sum()
    with tg.detect_anomaly():
        with pytest.raises(tg.AnomalyError, match="backward: sqrt at t=2 produced a NaN or inf gradient"):
            build_sqrt().backward()
    back = viz.draw_anomaly(build_sqrt())
    assert back.anomaly["phase"] == "backward" and back.anomaly["op"] == "sqrt"
    assert back.anomaly["scope"] == ("t=2",)
    assert viz.find_anomaly(build_sqrt())["op"] == "sqrt"
    assert "first non-finite value: backward of sqrt at t=2" in back.source
    clean = viz.draw_anomaly(hello_rnn()[0])
    assert clean.anomaly is None and "every value and gradient is finite" in clean.source


class BadSquare(Function):
    """y = x * x, with a wrong backward (the factor 2 is missing)"""
    formula = "dx = dy * x   (wrong: should be 2 x dy)"

    def forward(self, x):
        self.save_for_backward(x)
        return x * x

    def backward(self, dy):
        return dy * self.saved[0]


def test_gradcheck_overlay_marks_the_wrong_gradient_and_its_op():
    a = tg.Tensor([0.3, -0.7, 1.1], dtype="float64", requires_grad=True, name="a")
    b = tg.Tensor([0.5, 0.2, -0.4], dtype="float64", requires_grad=True, name="b")

    def f(a, b):
        return (BadSquare.apply(a) + b * b).sum()
    picture = viz.draw_gradcheck(f, [a, b])
    assert [m[1] for m in picture.mismatches] == ["a"]
    ops = {picture.picture.unrolled.placed.nodes[s].op for s in picture.suspects}
    assert ops == {"badsquare"}
    assert "gradient check failed for &#x27;a&#x27;" in picture.source
    ok = viz.draw_gradcheck(lambda a, b: (a * a + b * b).sum(), [a, b])
    assert ok.mismatches == [] and "agrees with finite differences" in ok.source


def test_draw_graph_shows_tensors_ops_values_and_formulas():
    with tg.retain_values():
        loss, model, h_0 = hello_rnn(text="he")
    dot = parse_dot(viz.draw_graph(loss, show_grads=True, formulas=True).source)
    assert dot["graph"].get("rankdir") == "BT"
    tanh = [n for n, a in dot["nodes"].items() if a["label"].count("tanh")]
    assert tanh and "dx = dy * (1 - y**2)" in dot["nodes"][tanh[0]]["tooltip"]
    loss_node = node_with(dot, "<B>L  scalar</B>")
    assert len(loss_node) == 1 and "grad 1.00" in dot["nodes"][loss_node[0]]["label"]
    assert len(node_with(dot, "<B>rnn.weight_hh_l0</B>")) == 1
    plain = viz.draw_graph(hello_rnn(text="he")[0]).source
    assert "build the graph inside `with tg.retain_values():`" in plain
    # an unnamed tensor shows its shape only: "y" would clash with the lecture's outputs y_t
    tensors = [a["label"] for n, a in dot["nodes"].items() if "_y" in n]
    assert len(tensors) > 10 and not any(re.search(r">y(\[\d\])?  ", t) for t in tensors)
    assert sum(">(1, 4)</FONT>" in t for t in tensors) == 3, "the outputs of linear, log_softmax and mul"


def test_strict_backend_gives_the_same_numbers(backend):
    loss, hs, W_hh, w = _hand_rnn(T=3)
    g = viz.draw_bptt(loss, level="cell", gradients=True).picture
    for h in hs:
        h.grad = None
    loss.backward(retain_graph=True)
    drawn = [g.state_norms[((), t)][0][1] for t in (1, 2, 3)]
    np.testing.assert_allclose(drawn, [np.linalg.norm(h.grad.numpy()) for h in hs], rtol=1e-10)
    assert hs[0].device == backend
    loss.backward()                      # frees the graph: draw_graph falls back to the leaves' .grad
    picture = viz.draw_graph(loss, show_grads=True)
    assert "only the leaves&#x27; .grad are shown" in picture.source
    total = np.linalg.norm(W_hh.grad.numpy())
    assert f"\u2016\u2202L/\u2202W_hh\u2016 = {S.fmt(total)}" in picture.source


# ------------------------------------------------------------------------------------------ determinism, golden
def _small_program():
    """A fixed 2-step RNN from core ops only (the golden file must not depend on other modules)."""
    W_ih = tg.Tensor([[0.5, -0.25], [0.125, 0.75]], dtype="float64", requires_grad=True, name="W_ih")
    W_hh = tg.Tensor([[0.25, 0.5], [-0.5, 0.25]], dtype="float64", requires_grad=True, name="W_hh")
    h = tg.Tensor([[0.0, 0.0]], dtype="float64", requires_grad=True, name="h_0")
    losses = []
    for t, (x0, x1) in enumerate([(1.0, 0.0), (0.0, 1.0)], start=1):
        with tg.scope(f"t={t}"):
            x = tg.Tensor([[x0, x1]], dtype="float64", name=f"x_{t}")
            h = (tg.linear(x, W_ih) + tg.linear(h, W_hh)).tanh()
            h.name = f"h_{t}"
            loss_t = (h * h).sum()
            loss_t.name = f"L_{t}"
        losses.append(loss_t)
    loss = losses[0] + losses[1]
    loss.name = "L"
    return loss


@pytest.mark.parametrize("name, draw", [
    ("golden_bptt_small.gv", lambda loss: viz.draw_bptt(loss, level="op", gradients=True)),
    ("golden_graph_small.gv", lambda loss: viz.draw_graph(loss, show_grads=True)),
])
def test_golden_dot(name, draw):
    source = draw(_small_program()).source
    golden = (DATA / name).read_text(encoding="utf-8")
    assert source == golden, f"the DOT of {name} changed; if on purpose, regenerate it and review the picture"


def test_same_program_same_dot_in_one_process(hello):
    loss, model, h_0 = hello
    first = viz.draw_bptt(loss, level="cell", gradients=True, highlight="h_0").source
    loss2, model2, _ = hello_rnn()
    assert viz.draw_bptt(loss2, level="cell", gradients=True, highlight="h_0").source == first
    assert viz.draw_graph(loss).source == viz.draw_graph(loss2).source


def test_same_program_same_dot_in_two_processes():
    script = textwrap.dedent("""
        import sys
        sys.path.insert(0, %r)
        import visualize as viz
        from visualize.examples import hello_rnn
        loss, model, h_0 = hello_rnn()
        sys.stdout.write(viz.draw_bptt(loss, level="op", gradients=True).source)
    """ % str(ROOT))
    outs = []
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        outs.append(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                                   cwd=ROOT, check=True).stdout)
    assert outs[0] == outs[1] and len(outs[0]) > 10_000
    assert not re.search(r"0x[0-9a-f]{6,}|\b\d{12,}\b", outs[0]), "no addresses or id() values in the DOT"


# ------------------------------------------------------------------------------------------ rendering
def _pictures():
    loss, model, h_0 = hello_rnn()
    tg.manual_seed(0)
    lstm = nn.LSTM(2, 3, num_layers=2, bidirectional=True)
    out, _ = lstm(tg.randn(6, 1, 2))
    losses, _ = _two_chunks()
    return {
        "graph": viz.draw_graph(loss),
        "op": viz.draw_bptt(loss),
        "cell_gradients": viz.draw_bptt(loss, level="cell", gradients=True),
        "layer": viz.draw_bptt(loss, level="layer", gradients=True),
        "highlight": viz.draw_bptt(loss, highlight="h_0"),
        "lstm_ellipsis": viz.draw_bptt(out.sum(), level="cell", gradients=True, timesteps=1),
        "tbptt_memory": viz.draw_bptt(losses, level="cell", gradients=True, memory=True),
        "frame": viz.backward_frames(loss, level="cell")[3],
        "anomaly": viz.draw_anomaly(loss),
    }


@needs_dot
def test_every_picture_type_renders_to_svg_and_png(tmp_path):
    for name, picture in _pictures().items():
        svg = viz.save(picture, tmp_path / f"{name}.svg")
        root = ET.parse(svg).getroot()
        assert root.tag.endswith("svg")
        assert (tmp_path / f"{name}.gv").read_text(encoding="utf-8") == picture.source
        png = pathlib.Path(viz.save(picture, tmp_path / f"{name}.png"))
        assert png.read_bytes()[:8] == PNG_SIGNATURE
        assert picture.pipe(format="svg").startswith(b"<?xml"), name      # the Digraph renders itself too


def test_without_graphviz_the_source_is_written_and_the_error_says_how_to_install(tmp_path, monkeypatch):
    loss, model, h_0 = hello_rnn()
    picture = viz.draw_bptt(loss)
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert not viz.dot_available()
    with pytest.raises(viz.GraphvizNotFound, match="apt-get install graphviz") as info:
        viz.save(picture, tmp_path / "bptt.svg")
    assert "written to" in str(info.value)
    assert (tmp_path / "bptt.gv").read_text(encoding="utf-8") == picture.source
    with pytest.raises(viz.GraphvizNotFound, match="apt-get install graphviz"):
        picture.pipe(format="svg")
    with pytest.raises(viz.GraphvizNotFound, match="apt-get install graphviz"):
        picture.render(str(tmp_path / "direct"), format="png")
    assert (tmp_path / "direct").read_text(encoding="utf-8") == picture.source
    bundle = picture._repr_mimebundle_()
    assert "apt-get install graphviz" in bundle["text/plain"]
    assert isinstance(picture, __import__("graphviz").Digraph)


# ------------------------------------------------------------------------------------------ escaping
HOSTILE = ['"; ] } { node [shape=star] <b>', "</TD></TR></TABLE>><script>alert(1)</script>", "a & b &amp; &#0;",
           "back\\slash\\N\\G \\", "new\nline\r\ttab", "\x00\x07\x1b control", "\u00e9\u4e2d\u6587 \U0001F600",
           "x" * 500, "]]> <!-- --> <?xml ?>", "{braces}", "'single' \"double\"",
           "\\N", "\\G", "\\L", "\\\\", "a\\Nb \\E\\T\\H"]     # \N, \G, \L: Graphviz's own escapes


def _hostile_program(name):
    W = tg.Tensor([[0.5, -0.2], [0.1, 0.3]], dtype="float64", requires_grad=True, name=name)
    h = tg.zeros(1, 2, dtype="float64", requires_grad=True, name=name + "0")
    for t in range(2):
        with tg.scope(f"t={t}", name):
            x = tg.Tensor([[1.0, 2.0]], dtype="float64", name=name)
            h = (tg.linear(h, W) + x).tanh()
            h.name = name
    loss = h.sum()
    loss.name = name
    return loss, W


ALLOWED_SVG = {"svg", "g", "title", "text", "path", "polygon", "polyline", "ellipse", "a", "defs", "desc", "image"}


def _check_svg(data, name):
    root = ET.fromstring(data)
    tags = {el.tag.split("}")[-1] for el in root.iter()}
    assert tags <= ALLOWED_SVG, tags - ALLOWED_SVG
    texts = " ".join(el.text or "" for el in root.iter() if el.tag.endswith("text")).replace("\u00a0", " ")
    visible = name.split("\n")[0][:40].strip()
    if visible and all(c.isprintable() for c in visible):
        assert visible in texts, f"{visible!r} is not drawn literally"


@needs_dot
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(min_size=1, max_size=40))
@example(HOSTILE[0])
@example(HOSTILE[1])
@example(HOSTILE[3])
@example("\\N\\G\\L \\\\")
def test_hostile_names_cannot_break_the_dot_or_inject_into_the_svg(name):
    loss, W = _hostile_program(name)
    for picture in (viz.draw_bptt(loss, level="op", gradients=True, highlight=W), viz.draw_graph(loss)):
        data = picture.pipe(format="svg")
        _check_svg(data, name)


@needs_dot
def test_every_hostile_name_renders():
    for name in HOSTILE:
        loss, W = _hostile_program(name)
        for picture in (viz.draw_bptt(loss, level="cell", gradients=True), viz.draw_graph(loss, show_grads=True)):
            _check_svg(picture.pipe(format="svg"), name)


def test_escaping_helpers():
    assert esc('<b>&"\'</b>') == "&lt;b&gt;&amp;&quot;&#x27;&lt;/b&gt;"
    assert esc("a\nb") == "a<BR/>b"
    assert esc("\x00\x1b") == "&#92;&#92;x00&#92;&#92;x1b"        # Graphviz shows \\ as one backslash
    assert esc("\\N") == "&#92;&#92;N", "a backslash is doubled: Graphviz would expand \\N to the node's name"
    assert esc("x" * 100).endswith("\u2026") and len(esc("x" * 100)) == 72
    assert esc("\ud800") == "?"
    assert esc_attr('say "hi" \\N') == 'say \\"hi\\" \\\\N'


def test_tensor_names_appear_as_given(hello):
    loss, model, h_0 = hello
    source = viz.draw_bptt(loss).source
    for name in ("rnn.weight_hh_l0", "fc.weight", "x_1 = &#x27;h&#x27;", "target &#x27;e&#x27;", "h_0", "L_4"):
        assert name in source
    named = viz.draw_graph(loss, params={"my weight": model.fc.weight}).source
    assert "my weight" in named


# ------------------------------------------------------------------------------------------ names and boxes
def test_layer_superscripts_are_superscript_digits():
    from visualize.labels import alias
    assert alias("rnn.weight_hh_l0") == "W_hh"
    assert alias("rnn.weight_hh_l1") == "W_hh\u207d\u00b9\u207e"
    assert alias("lstm.bias_ih_l12_reverse") == "b_ih\u207d\u00b9\u00b2\u207e\u2190"
    tg.manual_seed(0)
    lstm = nn.LSTM(2, 3, num_layers=2)
    out, _ = lstm(tg.randn(2, 1, 2))
    source = viz.draw_bptt(out.sum(), level="cell").source
    assert "W_hh\u207d\u00b9\u207e" in source and "\u207d1\u207e" not in source


def test_a_long_name_gets_the_box_of_its_cut_label():
    def width(name):
        W = nn.Parameter(tg.Tensor([[0.5]], dtype="float64"), name=name)
        h = tg.zeros(1, 1, dtype="float64")
        for t in range(2):
            with tg.scope(f"t={t}"):
                h = tg.linear(h, W).tanh()
        picture = viz.draw_bptt(h.sum())
        node = next(n for n in picture.picture.graph.nodes.values() if n.kind == "param")
        return picture.placement.size[node.id][0]
    # the renderer cuts every label row to 72 characters, 71 and an ellipsis: the box is that text's
    assert width("x" * 500) == width("x" * 71 + "\u2026") < 12 * 72, "a box fits its label as drawn (< 12 inches)"
    assert width("x" * 20) < width("x" * 72)


def test_op_titles_work_on_a_graph_that_was_not_drawn():
    from visualize.labels import op_title
    from visualize.trace import trace
    loss, hs, W_hh, w = _hand_rnn(T=2)
    g = trace(loss)
    into = g.parents_of()
    titles = sorted(op_title(n, into, g.nodes) for n in g.nodes.values() if n.kind == "op" and n.op == "linear")
    assert titles == ["linear(h_0, W_hh)", "linear(\u00b7, W_hh)", "linear(\u00b7, W_ih)", "linear(\u00b7, W_ih)"]


def test_cross_entropy_constants_are_drawn_as_small_named_constants():
    from tinygrad_rnn.nn import functional as F
    tg.manual_seed(0)
    rnn = nn.RNN(4, 3, dtype="float64")
    out, _ = rnn(tg.randn(3, 2, 4, dtype="float64", name="x"))
    loss = F.cross_entropy(out.reshape(6, 3), tg.Tensor(np.array([0, 1, 2, 0, 1, 2]), dtype="int64"))
    for picture in (viz.draw_bptt(loss), viz.draw_graph(loss)):
        pic = picture.picture
        g = pic.graph
        consts = {pic.boxes[n.id].lines[0][0]: n for n in g.nodes.values() if n.kind == "const"}
        assert "-1 / n = -0.167" in consts, sorted(consts)
        assert all(pic.boxes[n.id].lines[0][1] == "small" and len(pic.boxes[n.id].lines) == 1
                   for n in consts.values())
        # the true classes are data: a box named t_true, read by pick
        (ids,) = [n for n in g.nodes.values() if n.name == "t_true"]
        assert ids.kind == "input" and [text for text, _ in pic.boxes[ids.id].lines[:2]] == ["t_true", "(6,)"]
        assert [g.nodes[e.dst].op for e in g.edges if e.src == ids.id] == ["pick"]
    pic = viz.draw_graph(loss).picture
    (ids,) = [n for n in pic.graph.nodes.values() if n.name == "t_true"]
    assert pic.boxes[ids.id].lines[2][0] == "[0, 1, 2, 0, 1, 2]"            # ids as integers, not 1.00
    pic = viz.draw_bptt(loss).picture
    titles = [pic.boxes[n.id].lines[0][0] for n in pic.graph.nodes.values() if n.kind == "op"]
    assert "mul(\u00b7, -1 / n)" in titles and "pick" in titles


@pytest.mark.parametrize("draw", [
    lambda loss: viz.draw_bptt(loss, level="op", gradients=True),
    lambda loss: viz.draw_bptt(loss, level="cell", gradients=True),
    lambda loss: viz.draw_graph(loss, show_grads=True),
], ids=["bptt-op", "bptt-cell", "graph"])
def test_fused_cross_entropy_draws_as_its_four_ops(draw):
    """F.cross_entropy's mean over (N, C) is one fused node (CrossEntropy); every picture of it,
    gradients included, is the same DOT as the four primitive ops it stands for."""
    from tinygrad_rnn.nn import functional as F
    sources = []
    for fused in (True, False):
        tg.manual_seed(0)
        lstm = nn.LSTM(4, 3, num_layers=2, dtype="float64")
        out, _ = lstm(tg.randn(3, 2, 4, dtype="float64", name="x"))
        logits = out.reshape(6, 3)
        target = tg.Tensor(np.array([0, 1, 2, 0, 1, 2]), dtype="int64")
        if fused:
            loss = F.cross_entropy(logits, target)
            assert loss.grad_fn.name == "crossentropy"
        else:                                           # the same ops, made one by one
            loss = F._nll(logits.log_softmax(axis=1), target, "mean", -100, True)
            assert loss.grad_fn.name == "mul"
        sources.append(draw(loss).source)
    assert sources[0] == sources[1]


# ------------------------------------------------------------------------------------------ layout
def _segments_cross(p, q, rect):
    """Does segment p-q pass through the rectangle (x0, y0, x1, y1)?"""
    from visualize.route import hits
    x0, y0, x1, y1 = rect
    return hits(p, q, ((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0), pad=0)


def _title_rects(picture):
    from visualize.layout import text_size
    out = []
    for cid, bb in picture.placement.cluster_bb.items():
        label = picture.picture.cluster_labels.get(cid)
        if label:
            w, h = text_size(label)
            cx = (bb[0] + bb[2]) / 2
            out.append((cid, (cx - w / 2 + 9, bb[3] - h + 4, cx + w / 2 - 9, bb[3])))   # the text itself
    return out


def test_no_edge_and_no_number_crosses_a_timestep_title(hello):
    from visualize.layout import text_width
    loss, model, h_0 = hello
    tg.manual_seed(0)
    lstm = nn.LSTM(2, 3, num_layers=2, bidirectional=True, dtype="float64")
    out, _ = lstm(tg.randn(3, 1, 2, dtype="float64"))
    for picture in (viz.draw_bptt(loss, level="cell", gradients=True),
                    viz.draw_bptt((out ** 2).sum(), level="cell", gradients=True)):
        titles = _title_rects(picture)
        assert len(titles) >= 4
        for k, (e, m) in enumerate(zip(picture.picture.graph.edges, picture.picture.marks)):
            route = picture.placement.routes[k]
            for cid, rect in titles:
                assert not any(_segments_cross(p, q, rect) for p, q in zip(route, route[1:])), (e, cid)
                if m.label:
                    x, y = (float(v) for v in picture.placement.label_pos(k, m.label).split(","))
                    w = text_width(m.label, "small")
                    assert not (x + w / 2 > rect[0] and x - w / 2 < rect[2] and y + 6 > rect[1] and y - 6 < rect[3]), \
                        (m.label, cid)


def _encoder_decoder():
    """A hand-written encoder-decoder: the encoder's last state h starts the decoder (state s).
    Each decoder step reads its input first, so the decoder's ops come first in the traced order."""
    rng = np.random.default_rng(0)

    def param(shape, name):
        return nn.Parameter(tg.Tensor(rng.standard_normal(shape) * 0.5, dtype="float64"), name=name)
    U_enc, W_enc, U_dec, W_dec = param((3, 2), "U_enc"), param((3, 3), "W_enc"), param((3, 2), "U_dec"), \
        param((3, 3), "W_dec")
    h = tg.zeros(1, 3, dtype="float64")
    with tg.scope("encoder"):
        for t in range(3):
            with tg.scope(f"t={t}"):
                x = tg.Tensor(rng.standard_normal((1, 2)), dtype="float64", name=f"x_{t}")
                h = (tg.linear(x, U_enc) + tg.linear(h, W_enc)).tanh()
                h.name = "h"
    s, losses = h, []
    with tg.scope("decoder"):
        for t in range(2):
            with tg.scope(f"t={t}"):
                y = tg.Tensor(rng.standard_normal((1, 2)), dtype="float64", name=f"y_{t}")
                s = (tg.linear(y, U_dec) + tg.linear(s, W_dec)).tanh()
                s.name = "s"
                losses.append((s * s).sum())
    loss = tg.stack(losses).sum()
    loss.name = "L"
    return loss


@pytest.mark.parametrize("level", ["op", "cell"])
def test_an_encoder_is_drawn_below_the_decoder_it_feeds(level):
    picture = viz.draw_bptt(_encoder_decoder(), level=level, gradients=True)
    g, pos_of = picture.picture.graph, picture.placement.pos
    ys = {}
    for n in g.nodes.values():
        if n.t is not None and n.kind in ("op", "group"):
            ys.setdefault(n.row, []).append(pos_of[n.id][1])
    assert sorted(ys) == [("decoder",), ("encoder",)]
    assert max(ys[("encoder",)]) < min(ys[("decoder",)]), "data flows up: the encoder's row is the lower one"
    crossing = [e for e in g.edges if g.nodes[e.src].row == ("encoder",) and g.nodes[e.dst].row == ("decoder",)]
    assert crossing and all(pos_of[e.src][1] < pos_of[e.dst][1] for e in crossing)


def test_truncated_bptt_numbers_steps_on_across_chunks_and_names_the_row():
    losses, rnn = _two_chunks()
    picture = viz.draw_bptt(losses, level="cell", gradients=True)
    dot = parse_dot(picture.source)
    clusters = time_clusters(dot)
    assert [t for t, _ in clusters] == [1, 2, 3, 4, 5, 6]
    for t, name in clusters:
        label = dot["clusters"][name]["attrs"]["label"]
        assert (">chunk1<" if t <= 3 else ">chunk2<") in label, "each step says which chunk it belongs to"
    w = node_with(dot, "<B>weight_hh_l0</B>")
    assert len(w) == 1 and "shared: used at 6 steps (t = 1\u20266)" in dot["nodes"][w[0]]["label"]
    row = [a["label"] for n, a in dot["nodes"].items() if n.startswith("rowlabel") and "RNN" in a["label"]]
    assert len(row) == 1 and "RNN layer 0" in row[0] and "chunk1 \u2192 chunk2" in row[0]
    assert "chunk1 / RNN" not in row[0], "the row is named for both chunks"


def test_lstm_cell_level_draws_h_and_c_as_two_parallel_edges():
    tg.manual_seed(0)
    lstm = nn.LSTM(2, 3, dtype="float64")
    out, _ = lstm(tg.randn(4, 1, 2, dtype="float64"))
    loss = (out ** 2).sum()
    picture = viz.draw_bptt(loss, level="cell", gradients=True)
    pic = picture.picture
    g = pic.graph
    k_of = {id(e): k for k, e in enumerate(g.edges)}
    pairs = {}
    for e in g.edges:
        if e.kind == "state" and g.nodes[e.src].t is not None:
            pairs.setdefault((g.nodes[e.src].t, g.nodes[e.dst].t), []).append(e)
    assert sorted(pairs) == [(1, 2), (2, 3), (3, 4)]
    for (t, _), (a, b) in ((k, sorted(v, key=lambda e: e.info["state_name"])) for k, v in pairs.items()):
        assert (a.info["state_name"], b.info["state_name"]) == ("c", "h")
        ma, mb = pic.marks[k_of[id(a)]], pic.marks[k_of[id(b)]]
        ya = {y for _, y in picture.placement.routes[k_of[id(a)]]}
        yb = {y for _, y in picture.placement.routes[k_of[id(b)]]}
        assert len(ya) == len(yb) == 1 and ya != yb, "side by side, not on top of each other"
        assert ma.share != 0 and mb.share != 0 and ma.share != mb.share
        assert ma.label == f"c {pic.numbers[k_of[id(a)]]}" and mb.label == f"h {pic.numbers[k_of[id(b)]]}"
    # each edge carries its share of the engine's gradient: <dL/dc_t from step t+1, dL/dc_t> / ||dL/dc_t||
    placed = pic.unrolled.placed
    for (t, _), edges in pairs.items():
        for e in edges:
            (member,) = e.info["members"]
            assert member.kind == "state" and placed.nodes[member.src].outputs[member.src_index]["name"] == \
                e.info["state_name"]
            part = next(iter(picture.gradients.on(member.origin).values()))
            whole = picture.gradients.grad(member.src, member.src_index)
            np.testing.assert_allclose(pic.marks[k_of[id(e)]].share, float((part * whole).sum() / np.linalg.norm(whole)))


def test_automatic_elision_shows_a_few_steps_at_each_end():
    tg.manual_seed(0)
    rnn = nn.RNN(2, 3)
    out, _ = rnn(tg.randn(600, 1, 2))            # one box per step at cell level: 600 > max_nodes=400
    picture = viz.draw_bptt(out.sum(), level="cell")
    shown = [t for t, _ in time_clusters(parse_dot(picture.source))]
    assert shown == [1, 2, 3, 4, 5, 6, 595, 596, 597, 598, 599, 600], "at most 6 at each end, whatever the budget"
    assert "only the first and last 6 timesteps are drawn (max_nodes=400)" in picture.source


def test_eliding_timesteps_does_linear_work(monkeypatch):
    """Counting, not timing: the elided blocks are found once, not once per node."""
    from visualize import collapse, unroll
    calls = []
    original = collapse.time_id
    monkeypatch.setattr(collapse, "time_id", lambda t: calls.append(t) or original(t))

    def count(T):
        tg.manual_seed(0)
        rnn = nn.RNN(2, 3)
        out, _ = rnn(tg.randn(T, 1, 2))
        g, rows = unroll.place(viz.trace.trace(out.sum()))
        calls.clear()
        collapse.collapse(g, rows, "op", timesteps=2)
        return len(calls)
    small, big = count(40), count(80)
    assert big <= 2.2 * small, (small, big)


# ------------------------------------------------------------------------------------------ legends, arrows
def test_legends_explain_every_kind_of_edge(hello):
    loss, model, h_0 = hello
    plain = viz.draw_bptt(loss, level="cell").source
    assert "state h_{t-1} \u2192 h_t between steps" in plain and "a parameter&#x27;s use at one step" in plain
    grads = viz.draw_bptt(loss, level="cell", gradients=True).source
    assert "edges between steps carry the state h_t; backward, the part of" in grads
    assert "lanes under each row: one colour per parameter, one edge per use" in grads
    assert "no arrowhead: no gradient flows there (data, constants)" in grads
    graph = viz.draw_graph(loss).source
    for words in ("data flow: an op&#x27;s input or output", "a parameter (or a leaf that requires grad) read by an op",
                  "the state carried from step t to step t+1"):
        assert words in graph
    assert f'COLOR="{S.EDGE["state"][0]}"' in graph.split("the state carried")[0].rsplit("<TR>", 1)[1]


def test_row_labels_say_which_way_the_gradient_arrows_point():
    tg.manual_seed(0)
    rnn = nn.RNN(2, 3, bidirectional=True)
    out, _ = rnn(tg.randn(3, 1, 2))
    dot = parse_dot(viz.draw_bptt(out.sum(), level="cell", gradients=True).source)
    rows = {a["label"].count("reverse"): a["label"] for n, a in dot["nodes"].items() if n.startswith("rowlabel")}
    assert "arrows: the gradient, flowing \u2190" in rows[0] and "arrows: the gradient, flowing \u2192" in rows[1]
    assert "arrows:" not in viz.draw_bptt(out.sum(), level="cell").source


# ------------------------------------------------------------------------------------------ overlays
def test_check_leaves_puts_the_input_back_when_fn_fails():
    from visualize.overlays import check_leaves
    x = tg.Tensor([0.5, -1.0], dtype="float64", requires_grad=True, name="x")
    base = x.data
    calls = []

    def f(x):
        calls.append(1)
        if len(calls) == 3:                      # the second evaluation with x perturbed
            raise RuntimeError("fn failed")
        return (x * x).sum()
    with pytest.raises(RuntimeError, match="fn failed"):
        check_leaves(f, [x])
    assert x.data is base and x.numpy().tolist() == [0.5, -1.0]


# ------------------------------------------------------------------------------------------ the pipeline
STAGES = ["trace", "record", "unroll", "zones", "collapse", "legend", "annotate", "layout", "render"]


def _package_imports():
    """{module: (modules of visualize it imports, names it imports that start with "_", external imports)}."""
    import ast
    out = {}
    for path in (ROOT / "visualize").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        inside, private, outside = set(), [], set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    inside.add(node.module.split(".")[0])
                    private += [a.name for a in node.names if a.name.startswith("_")]
                else:
                    inside.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                outside.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                outside.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                    node.value.id in ("L", "S") and node.attr.startswith("_"):
                private.append(f"{node.value.id}.{node.attr}")
        out[path.stem] = (inside, private, outside)
    return out


def test_visualize_is_a_one_way_pipeline():
    imports = _package_imports()
    assert [m for m, (_, _, outside) in imports.items() if "graphviz" in outside] == ["render"]
    assert {m: p for m, (_, p, _) in imports.items() if p} == {}, "no private name is used across files"
    # no import loops, and no stage imports a later stage
    order, seen = [], set()

    def visit(m, path):
        assert m not in path, f"import loop: {' -> '.join(path + [m])}"
        if m not in seen:
            seen.add(m)
            for d in sorted(imports[m][0]):
                visit(d, path + [m])
            order.append(m)
    for m in sorted(imports):
        visit(m, [])
    for i, stage in enumerate(STAGES):
        later = set(STAGES[i + 1:])
        assert not (imports[stage][0] & later), f"{stage} imports a later stage: {imports[stage][0] & later}"
    # only trace.py and record.py read the engine's objects
    engine = {m for m, (_, _, outside) in imports.items() if "tinygrad_rnn" in outside}
    assert engine <= {"trace", "record", "draw", "overlays", "plots", "examples"}, engine


def test_layout_is_split_into_phases_of_at_most_60_lines():
    import ast
    tree = ast.parse((ROOT / "visualize" / "layout.py").read_text(encoding="utf-8"))
    lengths = {n.name: n.end_lineno - n.lineno + 1 for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert max(lengths.values()) <= 60, {k: v for k, v in lengths.items() if v > 60}


# ------------------------------------------------------------------------------------------ reading the numbers
def _hello_inputs(requires_grad):
    """The hello RNN's inputs x_t, as data or as leaves that require grad (to ask the engine)."""
    loss, model, h_0 = hello_rnn()
    xs = []
    tg.manual_seed(0)
    model2 = type(model)(3, "float64")
    model2.load_state_dict(model.state_dict())
    rnn, fc = model2.rnn, model2.fc
    h, losses = tg.zeros(1, 3, dtype="float64", name="h_0"), []
    for t, (a, b) in enumerate(zip("hell", "ello"), start=1):
        with tg.scope(f"t={t}"):
            v = np.zeros((1, 4))
            v[0, "helo".index(a)] = 1.0
            x = tg.Tensor(v, dtype="float64", requires_grad=requires_grad, name=f"x_{t} = '{a}'")
            y = np.zeros((1, 4))
            y[0, "helo".index(b)] = 1.0
            h = (tg.linear(x, rnn.weight_ih_l0, rnn.bias_ih_l0) + tg.linear(h, rnn.weight_hh_l0, rnn.bias_hh_l0)).tanh()
            logits = tg.linear(h, fc.weight, fc.bias)
            losses.append(-(logits.log_softmax(axis=-1) * tg.Tensor(y, dtype="float64")).sum())
        xs.append(x)
    loss = tg.stack(losses).sum()
    return loss, xs, model2          # the model stays alive: the picture reads its weights


def _input_numbers(source, name="x"):
    return [float(v) for v in re.findall(r"\u2016\u2202L/\u2202" + name + r"_\d+\u2016 = ([0-9.e-]+)", source)]


@pytest.mark.parametrize("level", ["op", "cell"])
def test_input_gradients_are_the_engines_dL_dx_t(level):
    loss, _, model = _hello_inputs(False)
    picture = viz.draw_bptt(loss, level=level, gradients=True, input_gradients=True)
    drawn = _input_numbers(picture.source)
    loss2, xs, model2 = _hello_inputs(True)
    loss2.backward()
    engine = [float(np.linalg.norm(x.grad.numpy())) for x in xs]
    assert drawn == [float(S.fmt(n)) for n in engine]
    top = int(np.argmax(engine)) + 1
    assert re.search(rf"\u2016\u2202L/\u2202x_{top}\u2016 = [0-9.]+  \u25c0 largest", picture.source)
    assert picture.source.count("\u25c0 largest") == 1
    assert "Data gets no gradient in training" in picture.source
    assert not _input_numbers(viz.draw_bptt(loss, level=level, gradients=True).source), "only when asked"


def test_input_gradients_when_the_model_is_gone():
    """``draw_bptt(hello_rnn()[0], ...)`` drops the model: W_ih's numbers come from what each linear
    saved for backward, so the input gradients are still drawn (and equal those with the model alive)."""
    from visualize.examples import hello_rnn
    alone = viz.draw_bptt(hello_rnn()[0], level="cell", gradients=True, input_gradients=True).source
    loss, model, _ = hello_rnn()
    kept = viz.draw_bptt(loss, level="cell", gradients=True, input_gradients=True).source
    assert len(_input_numbers(alone)) == 4 and _input_numbers(alone) == _input_numbers(kept)
    assert alone.count("\u25c0 largest") == 1


@pytest.mark.parametrize("level", ["op", "cell"])
def test_input_gradients_of_a_layer_and_of_an_embedding_are_the_engines(level):
    tg.manual_seed(0)
    emb, rnn = nn.Embedding(5, 3, dtype="float64"), nn.RNN(3, 4, dtype="float64")
    ids = tg.Tensor(np.array([[1], [4], [2]]), dtype="int64", name="ids")
    e = emb(ids)
    out, _ = rnn(e)
    loss = (out * out).sum()
    picture = viz.draw_bptt(loss, level=level, gradients=True, input_gradients=True)
    e.retain_grad()
    loss.backward()
    engine = [S.fmt(np.linalg.norm(e.grad.numpy()[t])) for t in range(3)]
    (box,) = [b for n, b in picture.picture.boxes.items() if picture.picture.graph.nodes[n].name == "ids"]
    text = " ".join(t for t, _ in box.lines)
    assert "\u2016\u2202L/\u2202E[x_t]\u2016 at each step:" in text, "the gradient of each looked-up row"
    assert re.findall(r"t=(\d): ([0-9.e-]+)", text) == [(str(t + 1), v) for t, v in enumerate(engine)]
    # a float input read by the layer's one input projection: dL/dx, one norm per step
    tg.manual_seed(0)
    rnn = nn.RNN(2, 3, num_layers=2, dtype="float64")
    x = tg.randn(4, 1, 2, dtype="float64", name="x")
    out, _ = rnn(x)
    loss = (out * out).sum()
    picture = viz.draw_bptt(loss, level=level, gradients=True, input_gradients=True)
    x2 = tg.Tensor(x.numpy(), dtype="float64", requires_grad=True)
    out2, _ = rnn(x2)
    (out2 * out2).sum().backward()
    engine = [S.fmt(np.linalg.norm(x2.grad.numpy()[t])) for t in range(4)]
    if level == "cell":       # one input box per step under the first layer
        drawn = re.findall(r"\u2016\u2202L/\u2202x_(\d)\u2016 = ([0-9.e-]+)", picture.source)
    else:                     # the one input, its gradient step by step
        drawn = re.findall(r"  t=(\d): ([0-9.e-]+)", " ".join(
            t for n, b in picture.picture.boxes.items() if picture.picture.graph.nodes[n].name == "x"
            for t, _ in b.lines))
    assert drawn == [(str(t + 1), v) for t, v in enumerate(engine)]


def test_the_gradient_at_h_t_is_the_sum_of_the_numbers_on_its_edges_as_printed(hello):
    loss, model, h_0 = hello
    picture = viz.draw_bptt(loss, level="cell", gradients=True)
    pic, dot = picture.picture, parse_dot(picture.source)
    headers = {t: float(v) for t, v in re.findall(
        r"\u2016\u2202L/\u2202h_(\d)\u2016 = ([0-9.]+)", " ".join(c["attrs"]["label"] for c in dot["clusters"].values()))}
    assert sorted(headers) == ["1", "2", "3", "4"]
    for t in headers:
        node_id = next(nid for nid, n in pic.unrolled.placed.nodes.items() if n.op == "tanh" and n.t == int(t))
        out = [k for k, source in enumerate(pic.edge_source) if source == (node_id, 0)]
        assert len(out) == (2 if t != "4" else 1), "to the step's output, and to the next step"
        assert abs(sum(float(pic.numbers[k]) for k in out) - headers[t]) < 1e-9, "they add up as printed"
        for k in out:
            assert pic.marks[k].label == pic.numbers[k], "the number drawn on the edge"
    # the legend's examples use the picture's own numbers
    example = re.search(r"e\.g\. \u2016\u2202L/\u2202h_(\d)\u2016 = ([0-9.]+) = ([-0-9.]+) \(to [^)]*\)\) "
                        r"[+-] ([0-9.]+)", picture.source)
    assert example and float(example.group(2)) == headers[example.group(1)]
    labels = [a.get("label", "") for _, _, a in dot["edges"]]
    assert any(f">{example.group(3)}<" in lab for lab in labels) and any(f">{example.group(4)}<" in lab
                                                                       for lab in labels)
    W = re.search(r"e\.g\. \u2016\u2202L/\u2202W_hh\u2016 = ([-+0-9. ]+) = ([0-9.]+)", picture.source)
    assert W, "the recurrent weight's sum, with its own numbers"
    assert f"\u2016\u2202L/\u2202W_hh\u2016 = {W.group(2)}, the sum of its uses" in picture.source
    assert "0.58" not in picture.source


def test_each_parameter_has_its_own_colour_on_its_box_and_its_lanes(hello):
    loss, model, h_0 = hello
    for level in ("op", "cell"):
        dot = parse_dot(viz.draw_bptt(loss, level=level).source)
        colours = {}
        for name, attrs in dot["nodes"].items():
            if name.startswith("p") and "fillcolor" in attrs and attrs["fillcolor"] == S.NODE["param"][0]:
                colours[name] = attrs["color"]
        assert len(colours) == 6 and len(set(colours.values())) == 6, colours
        for a, b, attrs in visible_edges(dot):
            if a in colours:
                assert attrs["color"] == colours[a], "a lane has its parameter's colour"


def test_a_detach_cut_has_no_arrowhead_where_arrows_point_backward():
    losses, rnn = _two_chunks()
    forward = parse_dot(viz.draw_bptt(losses, level="cell").source)
    backward = parse_dot(viz.draw_bptt(losses, level="cell", gradients=True).source)
    (cut_f,) = [a for _, _, a in visible_edges(forward) if "dashed" in a.get("style", "")]
    (cut_b,) = [a for _, _, a in visible_edges(backward) if "dashed" in a.get("style", "")]
    assert cut_f.get("dir") is None and cut_f["pos"].startswith("e,"), "forward pictures: it points forward"
    assert cut_b["dir"] == "none" and not cut_b["pos"].startswith(("e,", "s,")), "backward pictures: no arrow"
    legend = viz.draw_bptt(losses, level="cell", gradients=True).source.split("detach(): no gradient crosses")[0]
    assert "\u25b6" not in legend.rsplit("<TR>", 1)[1], "and its legend line has none either"


@needs_dot
def test_hover_is_said_only_where_it_works_and_every_box_and_edge_has_a_title(hello, tmp_path):
    loss, model, h_0 = hello
    picture = viz.draw_bptt(loss, level="cell", gradients=True)
    assert "hover over a box or an edge" in picture.source and "hover" not in picture.source_for("png")
    svg = picture.pipe(format="svg").decode("utf-8")
    assert "hover over a box or an edge" in svg
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    groups = [g for g in root.iter(ns + "g") if g.get("class") in ("node", "edge", "cluster")]
    dot = parse_dot(picture.source)
    assert len(groups) == len(dot["nodes"]) + len(dot["edges"]) + len(dot["clusters"])
    for g in groups:
        title = g.find(ns + "title").text
        assert title not in dot["nodes"] and "->" not in title and " " in title, title   # words, not an id
    assert any("local derivative" in g.find(ns + "title").text for g in groups)
    png = viz.save(picture, tmp_path / "p.png")
    assert pathlib.Path(png).read_bytes()[:8] == PNG_SIGNATURE
    assert "hover over a box" in (tmp_path / "p.gv").read_text(encoding="utf-8"), "the .gv source keeps it"


def test_text_is_at_least_10_points_and_pictures_are_not_shrunk(hello):
    loss, model, h_0 = hello
    tg.manual_seed(0)
    lstm = nn.LSTM(2, 2, num_layers=2, bidirectional=True)
    out, _ = lstm(tg.randn(3, 1, 2))
    for picture in (viz.draw_bptt(loss, level="op", highlight="h_0"), viz.draw_bptt(loss, level="cell", gradients=True),
                    viz.draw_bptt((out * out).sum(), level="cell", gradients=True), viz.draw_graph(loss)):
        sizes = [float(v) for v in re.findall(r'(?:POINT-SIZE|fontsize)="?([0-9.]+)', picture.source)]
        assert sizes and min(sizes) >= 10
        assert "dpi" not in picture.source
    assert '["dpi"]' not in (ROOT / "visualize" / "gallery" / "make_gallery.py").read_text(encoding="utf-8")


def test_stacked_layers_at_cell_level_are_bands_with_one_input_box_per_step():
    tg.manual_seed(0)
    lstm = nn.LSTM(2, 3, num_layers=2, bidirectional=True, dtype="float64")
    out, _ = lstm(tg.randn(3, 1, 2, dtype="float64", name="x"))
    loss = (out * out).sum()
    picture = viz.draw_bptt(loss, level="cell", gradients=True)
    pic, pos_of, g = picture.picture, picture.placement.pos, picture.picture.graph
    inputs = [n for n in g.nodes.values() if n.part == "input"]
    below = sorted((n.t, n.name) for n in inputs if n.info["data"])
    between = sorted(n.t for n in inputs if not n.info["data"])
    assert below == [(1, "x"), (2, "x"), (3, "x")] and between == [1, 2, 3], "x_t under the layers, and one " \
                                                                               "input box per step between them"
    rows = {}
    for n in g.nodes.values():
        if n.kind == "group" and n.part != "input" and n.t is not None:
            rows.setdefault(n.row[-1], []).append(pos_of[n.id][1])
    y = {key: sum(v) / len(v) for key, v in rows.items()}
    y_between = pos_of[next(n.id for n in inputs if not n.info["data"])][1]
    y_x = pos_of[next(n.id for n in inputs if n.info["data"])][1]
    assert y_x < y["layer0"] < y["layer0_reverse"] < y_between < y["layer1"] < y["layer1_reverse"], "bands, bottom up"
    for box in inputs:
        if box.info["data"]:
            continue
        into = [g.nodes[e.src] for e in g.edges if e.dst == box.id]
        out_of = [g.nodes[e.dst] for e in g.edges if e.src == box.id]
        assert sorted(n.row[-1] for n in into) == ["layer0", "layer0_reverse"] and {n.t for n in into} == {box.t}
        assert sorted(n.row[-1] for n in out_of) == ["layer1", "layer1_reverse"] and {n.t for n in out_of} == {box.t}
    # each weight stands beside its own band: between its cells' height and the next band's
    order = ["layer0", "layer0_reverse", "layer1", "layer1_reverse"]
    tops = {key: y[order[i + 1]] if i + 1 < len(order) else float("inf") for i, key in enumerate(order)}
    tops["layer0_reverse"] = y_between
    for key in order:
        suffix = "l" + key[len("layer")] + ("_reverse" if key.endswith("_reverse") else "")
        params = [n for n in g.nodes.values() if n.kind == "param" and n.name.endswith(suffix)]
        assert len(params) == 4
        for n in params:
            assert y[key] - 60 <= pos_of[n.id][1] < tops[key], (n.name, pos_of[n.id][1], y[key], tops[key])
    # the number in an input box is the engine's gradient of the layer's input at that step
    concat = next(n for n in pic.unrolled.placed.nodes.values() if n.op == "concat" and n.part == "top" and
                  any(e.dst == n.id and pic.unrolled.placed.nodes[e.src].row == ("LSTM", "layer0")
                      for e in pic.unrolled.placed.edges if pic.unrolled.placed.nodes[e.src].op == "stack"))
    grad = picture.gradients.grad(concat.id)
    for box in inputs:
        if not box.info["data"]:
            assert f"= {S.fmt(np.linalg.norm(grad[box.t - 1]))}" in " ".join(t for t, _ in pic.boxes[box.id].lines)


# ------------------------------------------------------------------------------------------ every function, real layers
REAL = {
    "hello RNN (hand-built)": None,
    "RNN 2 layers": lambda: nn.RNN(2, 3, num_layers=2, dtype="float64"),
    "LSTM bidirectional": lambda: nn.LSTM(2, 2, bidirectional=True, dtype="float64"),
    "GRU 2 layers bidirectional": lambda: nn.GRU(2, 2, num_layers=2, bidirectional=True, dtype="float64"),
    "ResidualRNN 2 layers": lambda: nn.ResidualRNN(2, 3, num_layers=2, dtype="float64"),
    "GatedResidualRNN": lambda: nn.GatedResidualRNN(2, 3, forget_bias=1.0, dtype="float64"),
}


def _real(name):
    """(loss, model, fn, x): the loss of a tiny real network, and fn(x) that builds it again."""
    if REAL[name] is None:
        loss, model, h_0 = hello_rnn()
        return loss, model, None, None
    tg.manual_seed(0)
    layer = REAL[name]()

    def fn(x):
        out = layer(x)[0]
        loss = (out * out).sum()
        loss.name = "L"
        return loss
    x = tg.randn(3, 1, 2, dtype="float64", name="x")
    return fn(x), layer, fn, x


def _titles(source):
    """The timestep titles' gradient lines, by (row of the picture, t)."""
    dot = parse_dot(source)
    return sorted(re.findall(r"\u2016\u2202L/\u2202[hc]_\d+\u2016 = [0-9.e-]+", c["attrs"].get("label", ""))
                  for c in dot["clusters"].values())


@pytest.mark.parametrize("name", list(REAL))
def test_every_drawing_function_on_real_layers(name):
    loss, model, fn, x = _real(name)
    params = dict(model.named_parameters())
    # the numbers each picture shows agree with the engine and with each other, at every level
    pictures = {level: viz.draw_bptt(loss, level=level, gradients=True, params=params) for level in LEVELS}
    graph = viz.draw_graph(loss, show_grads=True, params=params)
    loss.backward(retain_graph=True)
    for pname, p in params.items():
        want = f"\u2016 = {S.fmt(np.linalg.norm(p.grad.numpy()))}"
        for picture in list(pictures.values()) + [graph]:
            boxes = [a["label"] for a in parse_dot(picture.source)["nodes"].values()
                     if f"<B>{pname}</B>" in a.get("label", "")]
            assert len(boxes) == 1 and want in boxes[0], (pname, boxes)
    assert _titles(pictures["op"].source) == _titles(pictures["cell"].source) and _titles(pictures["op"].source)
    layer_box = [f for n, f in pictures["layer"].picture.facts.items() if f.get("state_values")]
    assert layer_box and all(v is not None for f in layer_box for _, v in f["state_values"])
    # every option draws, and says what it shows
    more = viz.draw_bptt(loss, level="cell", gradients=True, highlight="W_hh", timesteps=1, memory=True,
                         show_values=True, formulas=True, input_gradients=True)
    assert "vermillion underlay: every gradient path" in more.source and "steps not drawn" in more.source
    saved = sum(viz.memory_by_step(loss).values())
    assert f"arrays saved for backward: {S.fmt_bytes(saved)} in all" in more.source and saved > 0
    assert "\u25c0 largest" in viz.draw_bptt(loss, level="cell", input_gradients=True).source
    frames = viz.backward_frames(loss, level="cell")
    assert _titles(frames[-1].source) == _titles(pictures["cell"].source)
    # the overlays: nothing is wrong here, and they say so
    assert viz.draw_anomaly(loss).anomaly is None and viz.find_anomaly(loss) is None
    memory = viz.memory_by_step(loss)
    assert min(t for _, t in memory if t is not None) == 1, "steps counted from 1, as drawn"
    if fn is not None:
        x.requires_grad = True
        check = viz.draw_gradcheck(fn, [x])
        assert check.mismatches == [] and "agrees with finite differences" in check.source


@pytest.mark.parametrize("name", ["RNN 2 layers", "ResidualRNN 2 layers", "GatedResidualRNN"])
def test_the_gradient_plots_on_real_layers(name, tmp_path):
    pytest.importorskip("matplotlib")
    from visualize import plots
    loss, model, fn, x = _real(name)
    picture = viz.draw_bptt(loss, level="cell", gradients=True)
    top = picture.picture.unrolled.rows[-1].key
    shown = [n for (key, t), items in sorted(picture.picture.state_norms.items(), key=lambda kv: kv[0][1])
             if key == top for _, n in items[:1]]
    out = model(x)[0]
    loss2 = (out * out).sum()
    norms = plots.hidden_gradient_norms(loss2, out)
    np.testing.assert_allclose(norms, shown, rtol=1e-10)
    fig = plots.plot_gradient_vs_distance({name: norms}, path=tmp_path / "g.png")
    assert (tmp_path / "g.png").read_bytes()[:8] == PNG_SIGNATURE and fig.axes


def test_every_number_the_readme_quotes_is_on_the_gallery_pictures():
    sys.path.insert(0, str(ROOT / "visualize" / "gallery"))
    import make_gallery
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Pictures"):text.index("More, each from")]      # the two hello pictures
    sources = make_gallery.hello_op().source + make_gallery.hello_cell_gradients().source
    drawn = set(re.findall(r"(?<![\w.])-?\d+\.\d+(?![\d])", sources))
    numbers = re.findall(r"(?<![\w.])[-\u2212]?\d+\.\d+", section)
    assert len(numbers) >= 9
    for number in numbers:
        assert number.replace("\u2212", "-") in drawn or number.lstrip("-\u2212") in drawn, number
    assert "used at 4 steps" in sources and "ops on these paths that read rnn.weight_hh_l0: 4" in sources


@pytest.mark.filterwarnings("ignore::RuntimeWarning")      # the NaN is made on purpose
def test_steps_counted_from_0_are_drawn_from_1_and_anomalies_keep_the_engines_scope():
    W = nn.Parameter(tg.Tensor([[0.5, -0.3], [0.2, 0.4]], dtype="float64"), name="W")
    h, losses = tg.zeros(1, 2, dtype="float64"), []
    with tg.retain_values():
        for t in range(3):                               # a loop that counts from 0, as the layers do
            with tg.scope(f"t={t}"):
                h = (tg.linear(h, W) + tg.Tensor([[1.0, -1.0]], dtype="float64")).tanh()
                losses.append((h - (5.0 if t == 1 else 0.0) + 2.0).log().sum())
        loss = tg.stack(losses).sum()
    picture = viz.draw_anomaly(loss)
    assert [t for t, _ in time_clusters(parse_dot(picture.source))] == [1, 2, 3], "t = 1..T, after h_0"
    assert picture.anomaly["scope"] == ("t=1",), "the scope as tg.detect_anomaly() names it"
    assert "first non-finite value: forward of log at t=2" in picture.source, "the step as the picture draws it"


def test_lstm_cell_level_legend_says_where_the_rest_of_dL_dc_goes():
    """At cell level c_t's uses inside its own cell are not drawn, so the c edge's share is less than
    the title's ||dL/dc_t||: the legend says so (at op level every use is drawn and the shares add up)."""
    tg.manual_seed(0)
    out, _ = nn.LSTM(2, 3, dtype="float64")(tg.randn(3, 1, 2, dtype="float64"))
    loss = (out * out).sum()
    words = "the c edge carries the part from step t+1, the rest reaches c_t inside the cell box"
    assert words in viz.draw_bptt(loss, level="cell", gradients=True).source
    assert words not in viz.draw_bptt(loss, level="op", gradients=True).source
    assert words not in viz.draw_bptt(_small_program(), level="cell", gradients=True).source   # no c: a plain RNN
