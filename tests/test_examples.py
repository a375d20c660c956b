"""The teaching examples: each one's ``--quick`` mode runs in a subprocess, everything it writes
parses, and the point it makes holds (the RNN adds 64-bit numbers after training on 8-bit
ones, the bidirectional LSTM beats the unidirectional one, ...).

Each example runs once, in ``test_quick_run``; ``CLAIMS[name]`` then checks what it wrote.
The thresholds sit well below what the examples reach: the margins were measured over
several seeds (see each check).

The pictures are checked in their DOT source (the ``.gv`` written next to every picture,
with or without Graphviz); the rendered SVG/PNG only where Graphviz's ``dot`` is installed.
"""
import collections
import html
import html.parser
import json
import math
import os
import pathlib
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HAVE_DOT = shutil.which("dot") is not None
HIGHLIGHT = "#D55E00"          # visualize's vermillion: the highlighted gradient paths


def run_example(name, *args, timeout=180, env=None):
    env = dict(os.environ if env is None else env)
    # the checkout first, so `import visualize` finds this tree whatever is installed
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    # one BLAS thread: the examples' matrices are small, and several threads per process on a
    # shared 2-core machine make every matmul wait (10x slower measured under load)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    return subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


class TagBalance(html.parser.HTMLParser):
    """Checks that every HTML element that is opened is closed, in order (void elements need no end tag)."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self):
        super().__init__()
        self.stack, self.errors = [], []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        pass                                  # <tag/>: opened and closed

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()


def check_html(path):
    checker = TagBalance()
    checker.feed(path.read_text(encoding="utf-8"))
    checker.close()
    assert not checker.errors and not checker.stack, f"{path}: {checker.errors[:3]}, unclosed {checker.stack}"


def check_png(path):
    """A complete PNG that an image library decodes (not just the right first bytes)."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    Image = pytest.importorskip("PIL.Image")
    with Image.open(path) as image:
        image.load()                          # decodes every pixel: a truncated file raises here
        assert image.format == "PNG" and min(image.size) >= 50, (path, image.size)


def check_files_parse(out):
    """Every file the example wrote is what its extension says; returns the relative paths."""
    written = sorted(p for p in out.rglob("*") if p.is_file())
    for path in written:
        if path.suffix == ".svg":
            root = ET.parse(path).getroot()
            assert root.tag.endswith("svg"), f"{path}: root element is {root.tag}"
        elif path.suffix == ".png":
            check_png(path)
        elif path.suffix == ".html":
            check_html(path)
        elif path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".gv":
            assert "digraph" in path.read_text(encoding="utf-8")
    return {str(p.relative_to(out)) for p in written}


def results(out):
    return json.loads((out / "results.json").read_text(encoding="utf-8"))


def falls(losses, factor):
    """The loss at the end (mean of the last 10) is below the first loss divided by ``factor``."""
    end = losses[-10:]
    return sum(end) / len(end) < losses[0] / factor


# --- reading the DOT source of a picture ------------------------------------------------------------
Dot = collections.namedtuple("Dot", "nodes edges clusters")   # {id: (text, attrs)}, [(tail, head, attrs, text)],
                                                              # {cluster id: (label text, [node ids])}


def text_of(attrs):
    """The visible text of a DOT attribute list: the HTML label's tags dropped, entities decoded."""
    label = re.search(r"label=<(.*)>", attrs or "")
    return html.unescape(re.sub(r"<[^>]*>", " ", label.group(1))) if label else ""


def attr(attrs, name):
    m = re.search(rf'(?<!\w){name}=("([^"]*)"|[^ \]]+)', attrs or "")
    return None if m is None else (m.group(2) if m.group(2) is not None else m.group(1))


def read_dot(path):
    """The nodes, edges and clusters of a .gv file as written by graphviz's Python package."""
    nodes, edges, clusters, open_clusters = {}, [], {}, []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("//"):
            continue
        if m := re.match(r"^\s*subgraph (\w+) \{$", line):
            open_clusters.append(m.group(1))
            clusters[m.group(1)] = ("", [])
        elif line.strip() == "}":
            if open_clusters:
                open_clusters.pop()
        elif m := re.match(r"^\s*(\w+) -> (\w+)(?: \[(.*)\])?$", line):
            edges.append((m.group(1), m.group(2), m.group(3) or "", text_of(m.group(3))))
        elif m := re.match(r"^\s*(\w+)(?: \[(.*)\])?$", line):
            if m.group(1) == "graph" and open_clusters and "label=" in (m.group(2) or ""):
                clusters[open_clusters[-1]] = (text_of(m.group(2)), clusters[open_clusters[-1]][1])
            elif m.group(1) not in ("graph", "node", "edge"):
                nodes[m.group(1)] = (text_of(m.group(2)), m.group(2) or "")
                for c in open_clusters:
                    clusters[c][1].append(m.group(1))
    return Dot(nodes, edges, clusters)


def highlighted(attrs):
    return HIGHLIGHT.lower() in (attr(attrs, "color") or "").lower()


def gradient(text):
    """The number an edge's label shows (its gradient norm; "+= 0.12" for a weight's term), or None."""
    m = re.search(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?", text)
    return None if m is None else float(m.group())


def node_named(dot, first_word):
    """The id of the node whose label starts with ``first_word`` (e.g. "W_hh", "encoder.weight_hh_l0")."""
    found = [n for n, (text, _) in dot.nodes.items() if text.split()[:1] == [first_word]]
    assert len(found) == 1, (first_word, found)
    return found[0]


def timestep(dot, node):
    """t of the timestep cluster ("t = 3") that holds ``node``."""
    for label, members in dot.clusters.values():
        m = re.match(r"\s*t = (\d+)\b", label)
        if m and node in members:
            return int(m.group(1))
    raise AssertionError(f"{node} is in no timestep cluster")


def reaches(dot, start, goal):
    """Is there a chain of highlighted edges that carry a non-zero gradient from ``start`` to ``goal``
    (following the forward direction, tail -> head; the gradient flows back along it)? The
    highlight and the gradient's label may be drawn as one DOT edge or as two between the same nodes."""
    marked = {(tail, head) for tail, head, attrs, _ in dot.edges if highlighted(attrs)}
    carrying = {(tail, head) for tail, head, _, text in dot.edges if (gradient(text) or 0) != 0}
    step = {}
    for tail, head in marked & carrying:
        step.setdefault(tail, []).append(head)
    seen, todo = {start}, [start]
    while todo:
        for nxt in step.get(todo.pop(), []):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return goal in seen


# --- the claims, one function per example ------------------------------------------------------------
def claim_hello(out, stdout):
    after = stdout[stdout.index("After training"):]
    assert 'it predicts "ello"' in after
    r = results(out)
    assert r["after"] == "ello"
    assert falls(r["loss"], 100)
    if HAVE_DOT:
        # the step-through: one frame per box that backward visits, readout 4, cell 4, readout 3, cell 3, ...
        page = (out / "backward.html").read_text(encoding="utf-8")
        assert page.count('class="frame"') >= 10
        captions = json.loads(re.search(r"captions = (\[.*?\]);", page, re.S).group(1).replace("<\\/", "</"))
        boxes = [("cell" if "cell" in c else "output", int(m.group(1)))
                 for c in captions if (m := re.search(r"\bat t=(\d+)", c))]
        assert boxes == [(kind, t) for t in (4, 3, 2, 1) for kind in ("output", "cell")], captions
    for name, level in (("graph_op.gv", "op"), ("bptt_cell.gv", "cell")):
        dot = read_dot(out / name)
        # the pictures name the parameters as the notes do
        texts = " ".join(text for text, _ in dot.nodes.values())
        assert all(w in texts for w in ("W_xh", "W_hh", "W_hy")), name
        # the way from L_4 back to h_0 goes through W_hh four times: four highlighted ops (op level:
        # the matmuls W_hh @ h; cell level: the cells) read W_hh, and h_0 and L_4 are on it
        marked = {n for n, (_, attrs) in dot.nodes.items() if highlighted(attrs)}
        W_hh = node_named(dot, "W_hh")
        assert len({head for tail, head, _, _ in dot.edges if tail == W_hh and head in marked}) == 4, name
        assert node_named(dot, "h_0") in marked, name
        if level == "op":
            loss = {t: next(n for n, (text, _) in dot.nodes.items() if f"L_{t}" in text.split()) for t in (1, 2, 3, 4)}
            assert loss[4] in marked and not {loss[1], loss[2], loss[3]} & marked


def claim_vanishing_gradients(out, stdout):
    r = results(out)
    assert r["T"] == 30                                  # --quick; the ratios below are over T - 1 = 29 steps
    norms = {k: r["norms"][k] for k in r["norms"]}       # ||dL/dh_t|| for t = 0..T-1; the loss is at T-1
    below, above = norms["vanilla, \u03c1 = 0.5"], norms["vanilla, \u03c1 = 2"]
    kept = lambda n: n[0] / n[-1]                        # what is left of the gradient after T - 1 steps back
    # rho < 1: every step back shrinks the gradient; rho > 1: every step back grows it
    assert all(a < b for a, b in zip(below, below[1:]))
    assert all(a > b for a, b in zip(above, above[1:]))
    assert kept(below) < 1e-6                            # measured 1.8e-10 to 3.3e-10 over seeds 0-5
    assert kept(above) > 10                              # measured 330
    # the LSTM (forget gate open) keeps far more of the gradient than the vanilla RNN
    lstm = norms["LSTM, forget bias 2"]
    assert kept(lstm) > 1e4 * kept(below)
    # the GRU (update gate mostly "keep"): the gradient still vanishes, but far slower than the vanilla
    # RNN's (measured: GRU keeps 0.042-0.045, 1.3e8 to 2.4e8 times the vanilla's, seeds 0-5)
    gru = norms["GRU, update bias 2"]
    assert all(a < b for a, b in zip(gru, gru[1:]))
    assert 1e-3 < kept(gru) < 0.5
    assert kept(gru) > 1e5 * kept(below)
    # the residual step with a small W_hh neither vanishes nor explodes (measured factor 1.8-2.1)
    progression = r["progression"]
    residual = progression["residual, \u03c1 = 0.05"]
    assert 0.1 < kept(residual) < 10
    # the gated residual step holds the gradient far better than the vanilla RNN; its forget gate
    # (f = 0.88) still shrinks it a little each step (measured: keeps 0.054-0.063, seeds 0-5)
    gated = progression["gated residual, \u03c1 = 0.05, forget bias 2"]
    assert all(a < b for a, b in zip(gated, gated[1:]))
    assert 1e-3 < kept(gated) < 0.5
    assert kept(gated) > 1e5 * kept(progression["vanilla, \u03c1 = 0.5"])
    # clipping: the unclipped run blows up, the clipped one trains
    plain, clipped = r["clipping"]["no clipping"]["loss"], r["clipping"]["clip_grad_norm_(params, 1.0)"]["loss"]
    assert any(v is None or v > 1e6 for v in plain)
    assert all(v is not None and math.isfinite(v) for v in clipped)
    assert sum(clipped[-10:]) / 10 < 0.7 * clipped[0]
    assert "grad norm (before clipping), no clipping" in stdout
    # the pictures' loss is L = <v, out[-1]>, its readout vector named
    dot = read_dot(out / "bptt_lstm.gv")
    node_named(dot, "v")


def claim_binary_addition(out, stdout):
    r = results(out)
    assert r["train_bits"] == 8
    acc = r["rnn"]["accuracy"]
    # trained on at most 8 bits; measured 100% at 16, 32 and 64 bits for seeds 0-7 (lowest 99.9%)
    for n in ("16", "32", "64"):
        assert acc[n]["exact"] >= 0.95, (n, acc[n])
    assert list(r["mlp"]["accuracy"]) == ["8"]         # the MLP cannot even take longer numbers
    assert falls(r["rnn_loss"], 20)
    assert re.search(r"N = 64 \(8x longer\) \|\s+\d+\.\d%", stdout)


def claim_parity(out, stdout):
    r = results(out)
    acc = r["rnn"]["accuracy"]
    # trained on 8 bits; over seeds 0-9 the lowest seen was 98.9% at 16 bits and 91.3% at 64 bits
    assert acc["16"] >= 0.95
    assert acc["64"] >= 0.85
    # the MLP fits its training half of the 8-bit strings but is near chance on the other half
    assert r["mlp"]["train_accuracy"] >= 0.95
    assert r["mlp"]["accuracy"]["8"] <= 0.75
    assert falls(r["rnn_loss"], 20)


def claim_time_series(out, stdout):
    r = results(out)
    for name in ("many_to_one", "state_space", "narx"):
        assert falls(r[name]["loss"], 2), name
    # one step ahead beats "tomorrow = today"; the 60-step closed-loop NARX forecast and the
    # state-space model (from the force alone) beat predicting the mean, 0 (y is centred: the
    # mean predictor's error is about y's standard deviation, 1)
    assert 0.9 < r["baselines"]["zero"] < 1.1               # measured 0.97-1.04, seeds 0-2
    assert r["many_to_one"]["rmse"] < r["baselines"]["persistence"]
    assert r["narx"]["rmse"] < 0.5 * r["baselines"]["zero"]       # measured 0.19-0.26
    assert r["state_space"]["rmse"] < 0.6 * r["baselines"]["zero"]   # measured 0.12-0.16


def claim_bidirectional(out, stdout):
    acc = results(out)["accuracy"]
    uni, bi = acc["unidirectional"], acc["bidirectional"]
    # after "(" the past cannot tell whether the pair closes: the best guess is right half of the time
    assert uni["after_open"] <= 0.7
    assert bi["after_open"] >= 0.85              # measured 94-100% over seeds 0-5
    assert bi["letters"] >= uni["letters"] + 0.1
    # the picture: a 1-layer bidirectional LSTM on "a(b)c": a forward and a reverse row of 5 steps
    dot = read_dot(out / "bptt.gv")
    cells = [n for n, (text, _) in dot.nodes.items() if text.split()[:1] == ["LSTMCell"]]
    assert sorted(timestep(dot, c) for c in cells) == sorted(2 * list(range(1, 6)))   # t = 1..T, as the notes
    texts = " ".join(text for text, _ in dot.nodes.values())
    assert "reverse" in texts and "layer 1" not in texts


def claim_gradients_by_hand(out, stdout):
    diffs = dict(re.findall(r"(RNN|LSTM|GRU) max difference: (\S+)", stdout))
    assert set(diffs) == {"RNN", "LSTM", "GRU"}
    assert all(float(v) < 1e-10 for v in diffs.values()), diffs
    r = results(out)
    assert all(r[c]["max_difference"] < 1e-10 for c in ("rnn", "lstm", "gru"))


def claim_seq2seq(out, stdout):
    r = results(out)
    assert r["task"] == "reverse"
    assert r["exact_match"] >= 0.9              # quick mode (4 digits) reached 99.8-100% over seeds 0-4
    assert falls(r["loss"], 5)
    n = r["length"]
    # the examples are separated: "3078 -> 8703, 0945 -> 5490, ..."
    assert re.search(rf"e\.g\. \d{{{n}}} -> \d{{{n}}}, \d{{{n}}} -> \d{{{n}}}, ", stdout)
    # the picture: one cell per timestep for the encoder (the cells that read its W_hh) and the decoder
    dot = read_dot(out / "bptt.gv")

    def cells(weight):
        W = node_named(dot, weight)
        return {timestep(dot, head): head for tail, head, _, _ in dot.edges if tail == W}
    encoder, decoder = cells("encoder.weight_hh_l0"), cells("decoder.weight_hh_l0")
    assert sorted(encoder) == sorted(decoder) == list(range(1, n + 1))     # steps drawn t = 1..n
    # the gradient of the last output digit's loss L_{n-1} goes back through the whole decoder and,
    # through the summary C (the encoder's last state), into the encoder: a highlighted chain of
    # edges that carry gradient from the encoder's last step to the decoder's first, and on to the loss
    loss = next(node for node, (text, _) in dot.nodes.items() if f"L_{n - 1}" in text.split())
    assert reaches(dot, encoder[n], decoder[1])
    assert reaches(dot, decoder[1], loss)
    assert reaches(dot, encoder[1], encoder[n])         # and back along the encoder to its first step
    if HAVE_DOT:    # the rendered picture: one cluster per timestep for the encoder and for the decoder
        ns = {"svg": "http://www.w3.org/2000/svg"}
        clusters = [g for g in ET.parse(out / "bptt.svg").getroot().iter("{http://www.w3.org/2000/svg}g")
                    if g.get("class") == "cluster"]
        labels = ["".join(t.text or "" for t in g.iterfind(".//svg:text", ns)) for g in clusters]
        for t in range(1, n + 1):
            assert sum(1 for s in labels if f"t = {t}" in s) == 2, (t, labels)


CLAIMS = {"hello": claim_hello, "vanishing_gradients": claim_vanishing_gradients,
          "binary_addition": claim_binary_addition, "parity": claim_parity, "time_series": claim_time_series,
          "bidirectional": claim_bidirectional, "gradients_by_hand": claim_gradients_by_hand,
          "seq2seq": claim_seq2seq}
EXPECTED = {       # written with or without Graphviz
    "hello": {"graph_op.gv", "bptt_cell.gv", "loss.png", "results.json"},
    "vanishing_gradients": {"gradient_vs_distance.png", "vanilla_to_lstm.png", "bptt_vanilla_rho0.5.gv",
                            "bptt_vanilla_rho2.gv", "bptt_lstm.gv", "clipping.png", "results.json"},
    "binary_addition": {"loss.png", "results.json"},
    "parity": {"loss.png", "results.json"},
    "time_series": {"forecast.png", "loss.png", "results.json"},
    "bidirectional": {"bptt.gv", "loss.png", "results.json"},
    "gradients_by_hand": {"results.json"},
    "seq2seq": {"bptt.gv", "loss.png", "results.json"},
}
DRAWN = {          # drawn by Graphviz's dot: only where it is installed
    "hello": {"graph_op.svg", "bptt_cell.svg", "backward.html"},
    "vanishing_gradients": {"bptt_vanilla_rho0.5.svg", "bptt_vanilla_rho2.svg", "bptt_lstm.svg"},
    "bidirectional": {"bptt.svg"},
    "seq2seq": {"bptt.svg"},
}
SLOW = {"bidirectional", "seq2seq", "time_series"}     # about 5 s each on an idle 2-core machine


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in CLAIMS])
def test_quick_run(name, tmp_path):
    out = tmp_path / name
    proc = run_example(name, "--quick", "--out", str(out))
    assert proc.returncode == 0, f"{name} --quick failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    written = check_files_parse(out)
    expected = EXPECTED[name] | (DRAWN.get(name, set()) if HAVE_DOT else set())
    assert expected <= written, f"missing: {expected - written}"
    CLAIMS[name](out, proc.stdout)


def without_dot():
    """The environment with every PATH directory that holds a `dot` program left out."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join(d for d in env.get("PATH", "").split(os.pathsep)
                                  if d and not shutil.which("dot", path=d))
    assert shutil.which("dot", path=env["PATH"]) is None
    return env


def test_without_graphviz_the_examples_write_dot_source_and_say_how_to_install_it(tmp_path):
    out = tmp_path / "hello"
    proc = run_example("hello", "--quick", "--out", str(out), env=without_dot())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert proc.stdout.count("sudo apt-get install graphviz") == 1          # the hint, once
    for name in ("graph_op", "bptt_cell"):
        assert not (out / f"{name}.svg").exists()
        assert f"no {name}.svg: wrote its DOT source {out / name}.gv" in proc.stdout
        assert "W_hh" in (out / f"{name}.gv").read_text(encoding="utf-8")
    assert "no backward.html" in proc.stdout and not (out / "backward.html").exists()
    assert results(out)["after"] == "ello"                   # and everything else still ran
    check_png(out / "loss.png")


@pytest.mark.parametrize("name, args, expected", [
    ("seq2seq", ["--steps", "3", "--length", "3"], {"steps": 3, "length": 3}),
    ("vanishing_gradients", ["--timesteps", "12", "--train-steps", "4"], {"T": 12}),
])
def test_options_given_with_quick_are_not_overridden(name, args, expected, tmp_path):
    proc = run_example(name, "--quick", *args, "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = results(tmp_path)
    assert {k: r[k] for k in expected} == expected
    if name == "seq2seq":
        assert len(r["loss"]) == 3
    else:
        assert all(len(v) == 12 for v in r["norms"].values())
        assert all(len(run["loss"]) == 4 for run in r["clipping"].values())


@pytest.mark.parametrize("name, args, message", [
    ("hello", ["--steps", "0"], "--steps: expected a positive integer, got '0'"),
    ("seq2seq", ["--length", "-2"], "--length: expected a positive integer, got '-2'"),
    ("vanishing_gradients", ["--timesteps", "1.5"], "--timesteps: expected a positive integer, got '1.5'"),
    ("time_series", ["--length", "100"], "--length must be at least 400"),
    ("bidirectional", ["--lr", "0"], "--lr: expected a positive number, got '0'"),
])
def test_bad_counts_are_refused_clearly(name, args, message, tmp_path):
    proc = run_example(name, *args, "--out", str(tmp_path), timeout=60)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("name", list(CLAIMS))
def test_help(name):
    proc = run_example(name, "--help", timeout=60)
    assert proc.returncode == 0, proc.stderr
    for option in ("--device {cpu,cuda}", "--seed", "--quick", "--out"):
        assert option in proc.stdout, option
    assert "lecture notes" in proc.stdout           # the docstring, which cites the notes, is the help text


def test_cuda_without_cupy_is_a_clear_error(tmp_path):
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed here")
    except ImportError:
        pass
    proc = run_example("gradients_by_hand", "--device", "cuda", "--out", str(tmp_path), timeout=60)
    assert proc.returncode == 2
    assert "error: --device cuda: the 'cupy' backend needs CuPy: pip install" in proc.stderr   # and how to get it
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_seed_fixes_the_run(tmp_path):
    """--seed fixes every random draw: one seed twice trains to the same losses, another seed differently."""
    losses = []
    for k, seed in enumerate(("3", "3", "4")):
        out = tmp_path / f"run{k}"
        proc = run_example("hello", "--quick", "--seed", seed, "--out", str(out))
        assert proc.returncode == 0, proc.stderr
        losses.append(results(out)["loss"])
    assert losses[0] == losses[1]
    assert losses[0][0] != losses[2][0]
