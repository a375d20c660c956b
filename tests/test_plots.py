"""visualize/plots.py: files written and readable, data drawn as given, HTML escaped and
well-formed, colours monotone, a clear error without matplotlib, and gradient norms equal
to the engine's gradients of h_t."""
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import numpy as np
import pytest

import tinygrad_rnn as tg
import tinygrad_rnn.nn as nn

pytest.importorskip("matplotlib")
from matplotlib.image import imread  # noqa: E402

from visualize import plots  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HOSTILE = 'a<b>&"c\'\n\t</span><script>alert(1)</script>\x00\x7f $x^2$ {}\\ é漢'


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 0.01          # not a blank canvas
    return image


# --- loss curves -------------------------------------------------------------------------
def test_plot_loss_draws_both_curves_and_saves_png(tmp_path):
    train = [2.0, 1.5, 1.2, 1.0, 0.9, 0.85]
    val = [1.9, 1.4, 1.3]
    fig = plots.plot_loss(train, val, validation_x=[0, 2, 4], xlabel="epoch", log_y=True, path=tmp_path / "loss.png")
    ax = fig.axes[0]
    (tl, vl) = ax.lines
    np.testing.assert_array_equal(tl.get_xdata(), np.arange(6))
    np.testing.assert_array_equal(tl.get_ydata(), train)
    np.testing.assert_array_equal(vl.get_xdata(), [0, 2, 4])
    np.testing.assert_array_equal(vl.get_ydata(), val)
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "epoch"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train", "validation"]
    assert tl.get_color() != vl.get_color() and tl.get_linestyle() != vl.get_linestyle()
    assert_png(tmp_path / "loss.png")


def test_plot_loss_errors():
    with pytest.raises(ValueError, match="plot_loss: validation_x has 2 entries but validation has 3"):
        plots.plot_loss([1.0, 0.5], [1, 2, 3], validation_x=[0, 1])
    with pytest.raises(ValueError, match="plot_loss: train is empty"):
        plots.plot_loss([])
    with pytest.raises(ValueError, match=r"expected a 1-D sequence of numbers, got shape \(2, 2\)"):
        plots.plot_loss([[1, 2], [3, 4]])


def test_plot_curves_draws_each_named_curve_in_its_own_style(tmp_path):
    curves = {"RNN": [1.0, 0.5, 0.2], "MLP": ([0, 10, 20, 30], [1.0, 0.9, 0.85, 0.8]), "NARX": [2.0, 1.0]}
    fig = plots.plot_curves(curves, ylabel="mean squared error", title="three models", path=tmp_path / "c.png")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["RNN", "MLP", "NARX"]
    np.testing.assert_array_equal(ax.lines[1].get_xdata(), [0, 10, 20, 30])
    np.testing.assert_array_equal(ax.lines[2].get_ydata(), [2.0, 1.0])
    assert len({(l.get_color(), l.get_linestyle()) for l in ax.lines}) == 3
    assert ax.get_yscale() == "log" and ax.get_ylabel() == "mean squared error (log scale)"
    assert_png(tmp_path / "c.png")
    with pytest.raises(ValueError, match="plot_curves: MLP_x has 2 entries but MLP has 3"):
        plots.plot_curves({"MLP": ([0, 1], [3.0, 2.0, 1.0])})


def test_titles_and_names_with_dollars_and_braces_are_drawn_literally(tmp_path):
    bad = r"cost $\frac{$ {and} $x^2$ \\"          # invalid mathtext: drawing it as math would raise
    fig = plots.plot_loss([1.0, 0.5], title=bad, xlabel=bad, path=tmp_path / "t.png")
    assert fig.axes[0].get_title() == bad
    assert_png(tmp_path / "t.png")
    fig = plots.plot_gradient_vs_distance({bad: [0.5, 1.0]}, title=bad, path=tmp_path / "d.png")
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [bad]
    assert_png(tmp_path / "d.png")
    plots.plot_gradient_histograms({bad: [1.0, 2.0]}, title=bad, path=tmp_path / "h.png")
    assert_png(tmp_path / "h.png")
    plots.plot_activation("a$b$", [0.1, 0.2, 0.3, 0.4], cell=bad, path=tmp_path / "a.png")
    assert_png(tmp_path / "a.png")


# --- ||dL/dh_t|| -------------------------------------------------------------------------------
def _tiny_rnn_loss():
    """A 1-layer RNN over 6 steps with a loss on every step, and the same net as a cell loop."""
    layer = nn.RNN(3, 4, dtype="float64")
    cell = nn.RNNCell(3, 4, dtype="float64")
    cell.load_state_dict({k[:-3]: v for k, v in layer.state_dict().items()})
    x = tg.randn(6, 2, 3, dtype="float64")
    target = tg.randn(6, 2, 4, dtype="float64")
    return layer, cell, x, target


def test_hidden_gradient_norms_equal_the_engines_gradients_of_h_t(backend):
    layer, cell, x, target = _tiny_rnn_loss()
    scale = tg.Tensor(np.linspace(0.5, 2.0, 6).reshape(6, 1, 1), dtype="float64")

    # the reference: a hand-written loop whose h_t keep their gradients
    h, hs = tg.zeros(2, 4, dtype="float64"), []
    for t in range(6):
        h = cell(x[t], h)
        h.retain_grad()
        hs.append(h)
    out = tg.stack(hs)
    (((out - target) ** 2) * scale).sum().backward()
    expected = np.array([np.linalg.norm(h.grad.numpy()) for h in hs])
    assert np.all(expected > 0)

    # the helper on the layer's output (a stack of its h_t) ...
    out, _ = layer(x)
    got = plots.hidden_gradient_norms((((out - target) ** 2) * scale).sum(), out)
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    # ... and on a list of h_t
    h, hs = tg.zeros(2, 4, dtype="float64"), []
    for t in range(6):
        h = cell(x[t], h)
        hs.append(h)
    got = plots.hidden_gradient_norms((((tg.stack(hs) - target) ** 2) * scale).sum(), hs)
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_hidden_gradient_norms_batch_first_and_last_step_loss():
    layer = nn.LSTM(3, 4, batch_first=True, dtype="float64")
    x = tg.randn(2, 5, 3, dtype="float64")
    out, _ = layer(x)
    norms = plots.hidden_gradient_norms(out[:, -1].sum(), out)
    assert norms.shape == (5,)
    # only the last step feeds the loss directly: dL/dh_4 = ones
    np.testing.assert_allclose(norms[-1], np.sqrt(2 * 4), rtol=1e-12)
    assert np.all(norms[:-1] > 0) and np.all(norms[:-1] < norms[-1])


def test_hidden_gradient_norms_errors():
    x = tg.randn(3, 2, requires_grad=True)
    with pytest.raises(ValueError, match="expected the output of a recurrent layer .* made by tanh"):
        plots.hidden_gradient_norms(x.tanh().sum(), x.tanh())
    with pytest.raises(ValueError, match="`hidden` is not part of a graph"):
        plots.hidden_gradient_norms(x.sum(), tg.randn(3, 2))


def test_plot_gradient_vs_distance(tmp_path):
    norms = {"vanilla RNN": [1e-6, 1e-4, 1e-2, 1.0], "LSTM": [0.3, 0.5, 0.0, 1.0], "GRU": [0.9, 0.9, 0.95, 1.0]}
    fig = plots.plot_gradient_vs_distance(norms, path=tmp_path / "decay.png")
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    vanilla, lstm, gru = ax.lines
    np.testing.assert_array_equal(vanilla.get_xdata(), [0, 1, 2, 3])          # distance T-1-t
    np.testing.assert_array_equal(vanilla.get_ydata(), [1.0, 1e-2, 1e-4, 1e-6])
    np.testing.assert_array_equal(lstm.get_xdata(), [0, 2, 3])                # the 0 is left out
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["vanilla RNN", "LSTM (1 zero/non-finite not shown)", "GRU"]
    styles = {(line.get_color(), line.get_linestyle(), line.get_marker()) for line in ax.lines}
    assert len(styles) == 3
    assert_png(tmp_path / "decay.png")


# --- gradient histograms ------------------------------------------------------------------------
def test_gradient_norm_history_takes_norms_of_arrays_and_keeps_numbers(backend):
    g = [np.array([[3.0, 4.0]]), tg.Tensor([[1.0, 2.0], [2.0, 0.0]]), 0.5, -2.0]
    out = plots.gradient_norm_history({"w": g})
    np.testing.assert_allclose(out["w"], [5.0, 3.0, 0.5, 2.0])


def test_plot_gradient_histograms(tmp_path):
    rng = np.random.default_rng(0)
    history = {"rnn.weight_hh_l0": [rng.normal(size=(4, 4)) * 10.0 ** (-k / 10) for k in range(30)],
               "rnn.weight_ih_l0": list(np.geomspace(1, 1e-3, 30)),
               "fc.bias": [1.0] * 29 + [float("nan")]}
    fig = plots.plot_gradient_histograms(history, phases=3, path=tmp_path / "hist.png")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == list(history)
    legend = [t.get_text() for t in panels[0].get_legend().get_texts()]
    assert legend == ["steps 0–9", "steps 10–19", "steps 20–29"]
    assert [ax.get_xlabel() for ax in panels] == ["log10 ‖gradient‖"] * 2 + ["log10 ‖gradient‖  (1 zero/non-finite left out)"]
    assert_png(tmp_path / "hist.png")


def test_plot_gradient_histograms_errors():
    with pytest.raises(ValueError, match="history is empty"):
        plots.plot_gradient_histograms({})
    with pytest.raises(ValueError, match="phases must be at least 1, got 0"):
        plots.plot_gradient_histograms({"w": [1.0]}, phases=0)


# --- activation over text -------------------------------------------------------------------------
def _rgb(color):
    return np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)])


def test_diverging_colors_are_monotone_and_colour_blind_safe():
    values = np.linspace(-1, 1, 41)
    rgb = np.array([_rgb(plots.diverging_color(v)) for v in values])
    r_minus_b = rgb[:, 0] - rgb[:, 2]
    assert np.all(np.diff(r_minus_b) > 0)                     # blue ... orange, strictly monotone
    lightness = rgb.sum(axis=1)
    assert np.all(np.diff(lightness[:21]) > 0) and np.all(np.diff(lightness[20:]) < 0)   # darker with |v|
    assert plots.diverging_color(0.0) == "#ffffff"
    assert plots.diverging_color(-1.0) == "#0571b0" and plots.diverging_color(1.0) == "#e66101"
    assert plots.diverging_color(5.0) == plots.diverging_color(1.0)      # clipped
    assert plots.diverging_color(float("nan")) == plots.NAN_COLOR
    # no red/green pair: the two ends differ in the blue-yellow direction, which every reader sees
    blue_end, orange_end = _rgb(plots.diverging_color(-1)), _rgb(plots.diverging_color(1))
    assert blue_end[2] > blue_end[0] and orange_end[0] > orange_end[2] and orange_end[1] < 128


class _Spans(HTMLParser):
    """Collects the character spans (class "c") and checks that tags balance."""

    VOID = {"meta", "br"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.spans, self.current, self.errors = [], [], None, []

    def handle_starttag(self, tag, attrs):
        if tag in self.VOID:
            return
        self.stack.append(tag)
        a = dict(attrs)
        if tag == "span" and "c" in a.get("class", "").split():
            self.current = {"style": a["style"], "title": a["title"], "text": ""}
        if tag == "script":
            self.errors.append("a <script> tag got through")

    def handle_startendtag(self, tag, attrs):
        pass

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unbalanced </{tag}>")
            return
        self.stack.pop()
        if tag == "span" and self.current is not None:
            self.spans.append(self.current)
            self.current = None

    def handle_data(self, data):
        if self.current is not None:
            self.current["text"] += data


def test_activation_html_escapes_hostile_text_and_colours_every_character(tmp_path):
    values = np.linspace(-1, 1, len(HOSTILE))
    page = plots.activation_html(HOSTILE, values, cell='unit 7 <"&">', path=tmp_path / "act.html")
    assert (tmp_path / "act.html").read_text(encoding="utf-8") == page

    ET.fromstring(page.split("\n", 1)[1])          # well-formed XML (after the doctype line)
    parser = _Spans()
    parser.feed(page)
    parser.close()
    assert parser.errors == [] and parser.stack == []
    assert len(parser.spans) == len(HOSTILE)
    shown = "".join(s["text"] for s in parser.spans)
    expected = HOSTILE.replace("\n", "↵").replace("\t", "⇥").replace("\x00", "¤").replace("\x7f", "¤")
    assert shown == expected
    for span, v in zip(parser.spans, values):
        assert f"background-color:{plots.diverging_color(v)}" in span["style"]
        assert float(span["title"].split()[0]) == pytest.approx(v, abs=5e-4)
    assert "<script" not in page and "&lt;" in page
    assert '<title>Activation of unit 7 &lt;&quot;&amp;&quot;&gt; over the text</title>' in page
    assert page.count("<br/>") == HOSTILE.count("\n")


def test_activation_html_from_a_tensor_and_an_integer_cell():
    page = plots.activation_html("ab", tg.Tensor([0.5, -0.25]), cell=17)
    assert "<h1>Activation of cell 17 over the text</h1>" in page
    parser = _Spans()
    parser.feed(page)
    assert [s["title"] for s in parser.spans] == ["0.500", "-0.250"]


def test_activation_errors():
    with pytest.raises(ValueError, match=r"expected one value per character \(3\), got 2 values"):
        plots.activation_html("abc", [0.1, 0.2])
    with pytest.raises(TypeError, match="expected text as a str, got list"):
        plots.plot_activation(["a"], [0.1])


def test_plot_activation_png(tmp_path):
    text = "To be, or not\nto be:\tthat & <is> \"it\""
    values = np.tanh(np.linspace(-3, 3, len(text)))
    fig = plots.plot_activation(text, values, cell="LSTM layer 0, unit 3", width=16, path=tmp_path / "act.png")
    ax = fig.axes[0]
    assert ax.get_title() == "Activation of LSTM layer 0, unit 3 over the text"
    grid = ax.images[0].get_array()
    assert grid.shape == (3, 16, 3)           # "To be, or not↵" (14), "to be:⇥that & <i" (16), "s> \"it\"" (7)
    # the colour of each character's cell is its diverging colour
    np.testing.assert_allclose(grid[0, 0] * 255, _rgb(plots.diverging_color(values[0])), atol=0.5)
    np.testing.assert_allclose(grid[1, 0] * 255, _rgb(plots.diverging_color(values[14])), atol=0.5)
    drawn = [t.get_text() for t in ax.texts]
    assert drawn[:4] == ["T", "o", "b", "e"]    # spaces are left blank
    assert "↵" in drawn and "⇥" in drawn and "<" in drawn
    assert_png(tmp_path / "act.png")


# --- matplotlib is optional ------------------------------------------------------------------------
def test_missing_matplotlib_gives_an_install_hint(monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)      # "import matplotlib" now raises ImportError
    with pytest.raises(ImportError, match=r"needs matplotlib.*pip install 'tinygrad_rnn\[plots\]'"):
        plots.plot_loss([1.0, 0.5])
    with pytest.raises(ImportError, match=r"pip install 'tinygrad_rnn\[plots\]'"):
        plots.plot_activation("ab", [0.1, 0.2])
    assert "<span" in plots.activation_html("ab", [0.1, 0.2])   # HTML needs no matplotlib


def test_importing_visualize_plots_does_not_import_matplotlib():
    code = "import sys, visualize.plots; assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
