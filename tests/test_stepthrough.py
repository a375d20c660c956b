"""visualize/stepthrough.py: backward one node per frame, and the page with a slider.

Checked on the hand-built hello RNN and on every kind of layer (RNN, LSTM, GRU, several
layers, both directions, residual, gated residual, highway, skip connections, the char-RNN
model), at op and cell level: every frame is drawn on one layout, the numbers of the last
frame are those of the finished backward pass (and of the engine), and the page works in
a real browser (Debian's Chromium, when installed) whatever the tensors are called.
"""
import html.parser
import json
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import nn
from tinygrad_rnn.nn import functional as F

import visualize as viz
from visualize import style as S
from visualize.stepthrough import script_json

from dotparse import parse_dot, visible_edges

ROOT = pathlib.Path(__file__).resolve().parents[1]
needs_dot = pytest.mark.skipif(not viz.dot_available(), reason="Graphviz (dot, neato) is not installed")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")




# ------------------------------------------------------------------------------------------ the hello RNN
def test_backward_frames_visit_one_node_per_frame(hello):
    loss, model, h_0 = hello
    frames = viz.backward_frames(loss, level="op")
    rec = viz.draw_bptt(loss, gradients=True).gradients
    assert len(frames) == len(rec.events) + 1
    assert "step 0 of" in frames[0].caption and "dL/dL = 1" in frames[0].caption
    assert not _state_norms(frames[0].source), "no timestep has its gradient yet"
    counts = []
    for f in frames:
        m = re.search(r"\u2202L/\u2202W_hh so far: (\d) of 4 terms added", f.source)
        counts.append(int(m.group(1)) if m else 4)
    assert counts == sorted(counts) and counts[0] == 0 and counts[-1] == 4
    final = viz.draw_bptt(loss, level="op", gradients=True)
    assert _state_norms(final.source) == _state_norms(frames[-1].source) and len(_state_norms(final.source)) == 4
    # the last frame is the finished picture: every number the same
    numbers = re.compile(r"[-+]?\d+\.\d+(?:e-?\d+)?")
    assert sorted(numbers.findall(final.source.split("pos=")[0])) == sorted(numbers.findall(
        frames[-1].source.split("pos=")[0])), "the legend's numbers"
    assert [a.get("label") for _, _, a in visible_edges(parse_dot(final.source))] == \
        [a.get("label") for _, _, a in visible_edges(parse_dot(frames[-1].source))], "the numbers on the edges"
    positions = [re.findall(r'pos="([^"]+!)"', f.source) for f in (frames[1], frames[-1])]
    assert positions[0] == positions[1], "one layout for all frames"
    assert len(viz.backward_frames(loss, level="cell")) < len(frames)
    with pytest.raises(ValueError, match="exceed max_frames=5"):
        viz.backward_frames(loss, max_frames=5)
    # an arrow never turns round: an edge that ever carries a gradient points backward in every frame
    carries = [m.share is not None for m in final.picture.marks]
    for f in frames:
        dirs = [attrs.get("dir") for _, _, attrs in visible_edges(parse_dot(f.source))]
        assert dirs == ["back" if c else "none" for c in carries]


def test_stepthrough_says_what_is_not_known_yet_and_lists_what_leaves_a_box(hello):
    loss, model, h_0 = hello
    frames = viz.backward_frames(loss, level="cell")
    middle = frames[len(frames) // 2]
    assert "h_1: not reached yet" in middle.source and "no gradient reaches" not in middle.source
    # W_hh's box: the terms arrived so far (each with the share it has in the finished sum), and their sum
    final = viz.draw_bptt(loss, level="cell", gradients=True)
    W = next(n for n in final.picture.graph.nodes.values() if n.name == "rnn.weight_hh_l0")
    terms = dict(re.findall(r"(t=\d): ([-0-9.]+)", " ".join(t for t, _ in final.picture.boxes[W.id].lines)))
    box = parse_dot(middle.source)["nodes"][W.id]["label"]
    so_far = int(re.search(r"\u2202L/\u2202W_hh so far: (\d) of 4 terms added", box).group(1))
    arrived = dict(re.findall(r"(t=\d): ([-0-9.]+)", box))
    assert 0 < so_far < 4 and len(arrived) == so_far and all(terms[t] == v for t, v in arrived.items())
    total = float(re.search(r"sum so far: ([-0-9.]+)", box).group(1))
    assert abs(total - sum(float(v) for v in arrived.values())) <= 1.5e-3 * so_far
    assert "the sum of its uses' shares" not in box
    h0 = parse_dot(middle.source)["nodes"]
    assert "not reached yet" in next(a["label"] for n, a in h0.items() if n.endswith("_h_0"))
    assert "the sum of its uses&#x27; shares" in frames[-1].source and "not reached yet" not in frames[-1].source
    readout = [f.caption for f in frames if "output + loss box at t=4" in f.caption]
    assert readout == ["step 3 of 10: backward through the output + loss box at t=4 (5 ops); "
                       "gradient sent to h_4, fc.weight, fc.bias"], "only what leaves the box, not its own ops"


@needs_dot
def test_stepthrough_html_is_one_self_contained_page(hello, tmp_path):
    loss, model, h_0 = hello
    page = viz.stepthrough_html(loss, tmp_path / "b.html", level="cell")
    assert (tmp_path / "b.html").read_text(encoding="utf-8") == page
    n = page.count('<div class="frame"')
    assert n == len(viz.backward_frames(loss, level="cell"))
    assert '<input type="range" id="slider" min="0" max="%d"' % (n - 1) in page
    assert "<script src" not in page and "<link" not in page
    assert page.count("<svg") == n




# ------------------------------------------------------------------------------------------ every kind of layer
def _char_rnn(T=3, V=5, H=3):
    """examples/char_rnn.py's model (one-hot -> LSTM -> linear) and its loss on T characters.
    Built inside retain_values(), which runs every layer eagerly (one node per op and step)."""
    sys.path.insert(0, str(ROOT / "examples"))
    from char_rnn import CharRNN
    model = CharRNN(V, "lstm", hidden=H, layers=1)
    ids = np.array([[0], [3], [1], [4]])[:T + 1]
    with tg.retain_values():
        logits, _ = model(tg.Tensor(ids[:-1]))
    loss = F.cross_entropy(logits.reshape(-1, V), tg.Tensor(ids[1:].reshape(-1)))
    loss.name = "L"
    return loss, model


def _layer(make, T=2, I=2):
    def build():
        layer = make()
        x = tg.randn(T, 1, I, name="x")
        out = layer(x)
        out = out[0] if isinstance(out, tuple) else out
        loss = (out * out).sum()
        loss.name = "L"
        return loss, layer
    return build


class HighwayOnRNN(nn.Module):
    """An RNN whose outputs go through a Highway layer (nn.Highway applies to a whole sequence)."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.RNN(2, 2)
        self.highway = nn.Highway(2)

    def forward(self, x):
        return self.highway(self.rnn(x)[0])


LAYERS = {
    "RNN": _layer(lambda: nn.RNN(2, 2)),
    "LSTM": _layer(lambda: nn.LSTM(2, 2)),
    "GRU": _layer(lambda: nn.GRU(2, 2)),
    "GRU reset_before": _layer(lambda: nn.GRU(2, 2, reset_after=False)),
    "LSTM peephole": _layer(lambda: nn.LSTM(2, 2, peephole=True)),
    "RNN 2 layers": _layer(lambda: nn.RNN(2, 2, num_layers=2)),
    "LSTM bidirectional": _layer(lambda: nn.LSTM(2, 2, bidirectional=True)),
    "GRU 2 layers bidirectional": _layer(lambda: nn.GRU(2, 2, num_layers=2, bidirectional=True)),
    "LSTM 2 layers bidirectional": _layer(lambda: nn.LSTM(2, 2, num_layers=2, bidirectional=True)),
    "ResidualRNN": _layer(lambda: nn.ResidualRNN(2, 2)),
    "GatedResidualRNN 2 layers": _layer(lambda: nn.GatedResidualRNN(2, 2, num_layers=2, forget_bias=1.0)),
    "Highway": _layer(HighwayOnRNN),
    "SkipConnectedRNN": _layer(lambda: nn.SkipConnectedRNN("lstm", 2, 2)),
    "char-RNN": _char_rnn,
}


def _state_norms(source):
    """The ||dL/dh_t|| (and c_t) lines of the timestep titles, in the order of the DOT."""
    titles = " ".join(c["attrs"].get("label", "") for c in parse_dot(source)["clusters"].values())
    return re.findall(r"\u2016\u2202L/\u2202[hc]_\d+\u2016 = [-0-9.e]+", titles)


@pytest.mark.parametrize("level", ["op", "cell"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_backward_frames_on_every_kind_of_layer(name, level):
    loss, model = LAYERS[name]()
    params = dict(model.named_parameters())
    frames = viz.backward_frames(loss, level=level, params=params, max_frames=400)
    n = len(frames) - 1
    assert n >= 2
    for k, frame in enumerate(frames):
        assert frame.caption.startswith(f"step {k} of {n}: "), frame.caption
    # one layout for every frame: nothing moves while the class watches
    positions = [re.findall(r'pos="([^"]+!)"', f.source) for f in frames]
    assert positions[0] and all(p == positions[0] for p in positions)
    # frame k > 0 outlines the node that backward visits (the ops between layers, which run for all
    # steps at once, are drawn as one input box per step: all of them)
    for k, frame in enumerate(frames):
        outlined = [i for i, a in parse_dot(frame.source)["nodes"].items() if a.get("color") == S.HIGHLIGHT]
        if "between layers" in frame.caption:
            assert len(outlined) >= 2 and all(i.startswith("in") for i in outlined), (k, outlined)
        else:
            assert len(outlined) == (1 if k else 0), (k, outlined)
    # the gradient fills in: nothing reached at first, everything at the end, as after one backward
    final = viz.draw_bptt(loss, level=level, gradients=True, params=params).source
    assert _state_norms(frames[-1].source) == _state_norms(final) and _state_norms(final)
    assert not _state_norms(frames[0].source)
    assert "not reached yet" in frames[0].source and "not reached yet" not in frames[-1].source
    # each parameter's box ends with the norm of the gradient the engine computes
    loss.backward()
    dot = parse_dot(frames[-1].source)
    for pname, p in params.items():
        (box,) = [a["label"] for a in dot["nodes"].values() if f"<B>{pname}</B>" in a.get("label", "")]
        assert f"\u2016 = {S.fmt(np.linalg.norm(p.grad.numpy()))}" in box, (pname, box)


@needs_dot
@pytest.mark.parametrize("name", list(LAYERS))
def test_stepthrough_page_on_every_kind_of_layer(name, tmp_path):
    loss, model = LAYERS[name]()
    page = viz.stepthrough_html(loss, tmp_path / "page.html", level="cell")
    frames = viz.backward_frames(loss, level="cell")
    assert page.count('<div class="frame"') == page.count("<svg") == len(frames)
    assert page.count("<script") == 1
    captions = json.loads(re.search(r"const captions = (.*);\n", page).group(1))
    assert captions == [f.caption for f in frames]


# ------------------------------------------------------------------------------------------ hostile names
HOSTILE = ["<!--<script>", "</script><b>bold</b>", "&amp; & &lt;", "\"'`${x}\\u003c", "\u2028\u2029 \ud800"]


def test_script_json_holds_no_markup_and_reads_back():
    text = script_json(HOSTILE)
    assert not set("<>&") & set(text)
    assert json.loads(text) == HOSTILE


def _hostile_page(tmp_path):
    """A bidirectional LSTM whose input, loss, parameters and title have hostile names."""
    tg.manual_seed(0)
    lstm = nn.LSTM(2, 2, bidirectional=True)
    x = tg.randn(2, 1, 2, name=HOSTILE[0])
    out, _ = lstm(x)
    loss = (out * out).sum()
    loss.name = HOSTILE[1]
    params = {HOSTILE[0] + "W_hh": lstm.weight_hh_l0, HOSTILE[2]: lstm.weight_ih_l0,
              HOSTILE[1]: lstm.weight_hh_l0_reverse}
    path = tmp_path / "hostile.html"
    page = viz.stepthrough_html(loss, path, level="cell", params=params, title=HOSTILE[0] + HOSTILE[1])
    return path, page


class _Dom(html.parser.HTMLParser):
    """What a test reads from a page: the script elements, every element's attributes by id, the
    text of every element by id, and all the text drawn in the SVG pictures."""

    def __init__(self):
        super().__init__()
        self.scripts, self.attrs, self.text, self.svg_text = 0, {}, {}, []
        self._open = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.scripts += tag == "script"
        if "id" in attrs:
            self.attrs[attrs["id"]] = attrs
        self._open.append((tag, attrs.get("id")))

    def handle_endtag(self, tag):
        while self._open:
            if self._open.pop()[0] == tag:
                break

    def handle_data(self, data):
        for tag, ident in reversed(self._open):
            if ident is not None:
                self.text[ident] = self.text.get(ident, "") + data
                break
        if self._open and self._open[-1][0] == "text":
            self.svg_text.append(data)


def _browse(url, tmp_path):
    """The page's DOM after its script ran, as Chromium serializes it (headless, offline)."""
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--virtual-time-budget=3000", "--dump-dom", url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = _Dom()
    dom.feed(proc.stdout)
    return dom


@needs_dot
def test_page_shows_the_hostile_names_as_text_without_script_markup(tmp_path):
    path, page = _hostile_page(tmp_path)
    assert page.count("<script") == 1 and "<!--" not in page.split("<script>")[1]
    # the SVG text of the frames (Graphviz writes it escaped) holds each name as it was given
    dom = _Dom()
    dom.feed(page)
    drawn = "".join(dom.svg_text).replace("\u00a0", " ")
    for name in HOSTILE[:3]:
        assert name in drawn, name


@needs_dot
@needs_browser
def test_page_works_in_a_browser_with_hostile_names(tmp_path):
    path, page = _hostile_page(tmp_path)
    captions = json.loads(re.search(r"const captions = (.*);\n", page).group(1))
    n = len(captions)
    assert any(HOSTILE[0] in c for c in captions), "a caption names the hostile parameter"
    for k in (0, n // 2, n - 1):
        dom = _browse(path.as_uri() + f"#{k}", tmp_path)
        assert dom.scripts == 1, "no name became a script element"
        assert dom.text.get("caption") == captions[k], "the script ran to the end and set the caption"
        assert dom.text.get("count") == f"frame {k} / {n - 1}"
        shown = [i for i in range(n) if "display: block" in (dom.attrs[f"frame{i}"].get("style") or "")]
        assert shown == [k], "exactly the frame the script selected is shown"
        assert dom.attrs["slider"]["max"] == str(n - 1)
        drawn = "".join(dom.svg_text).replace("\u00a0", " ")
        for name in HOSTILE[:3]:
            assert name in drawn, f"{name!r} is drawn as text"
