"""examples/notebooks/: each lecture notebook runs from top to bottom in a fresh kernel, shows its
pictures inline and says what it should. The notebooks are committed without outputs.

How a notebook runs here:
* The kernel is this interpreter (``sys.executable``: the project's .venv under ``./run test``).
  A kernel spec that names it is written to a temporary folder and given to the kernel manager,
  so no ``python`` found on PATH and no kernel spec installed for the user can take its place.
  Every notebook's check also asserts that its kernel ran with this ``sys.prefix``.
* Every cell has a time limit of CELL_TIMEOUT seconds, and an error in any cell fails the test.
* The working directory is examples/notebooks/, as in Jupyter. The checkout comes first on
  PYTHONPATH, and BLAS uses one thread (as in the examples' tests). The char-RNN notebook
  trains for CHAR_RNN_SECONDS, which its first cell documents; here it is 3 seconds.
* After the last cell the test runs one more cell of its own (the file is never changed). That
  cell prints as JSON the notebook variables named in ``PROBES``. The checks read these
  variables and the outputs that a reader sees: the SVG pictures, the PNG plots and the
  printed text.
"""
import json
import math
import os
import pathlib
import re
import shutil
import sys
import xml.etree.ElementTree as ET

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "examples" / "notebooks"
CELL_TIMEOUT = 120            # seconds per cell: the slowest cell takes a few seconds on 2 busy cores
KERNEL = "tinygrad-rnn-test"
HAVE_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAVE_DOT, reason="Graphviz's dot is not installed: the notebooks draw pictures")

# What each notebook's probe cell prints (a Python expression in the notebook's namespace).
PROBES = {
    "01_reverse_mode": "dict(difference=float(difference))",
    "02_bptt": "dict(max_difference=float(max_difference), frames=len(frames), "
               "dh_norms=[float(v) for v in dh_norms])",
    "03_vanishing_exploding": "dict(norms={k: [float(x) for x in v] for k, v in norms.items()}, "
                              "runs={k: dict(loss=[float(x) for x in l], norm=[float(x) for x in n]) "
                              "for k, (l, n) in runs.items()})",
    "04_lstm_gru_gates": "dict(lstm_checks={k: float(v) for k, v in lstm_checks.items()}, "
                         "gru_checks={k: float(v) for k, v in gru_checks.items()}, "
                         "carousel=float(carousel_difference), gru_carousel=float(gru_carousel_difference), "
                         "forget={k: [float(x) for x in v] for k, v in forget_norms.items()}, "
                         "update={k: [float(x) for x in v] for k, v in update_norms.items()})",
    "05_char_rnn": "dict(seconds=TRAIN_SECONDS, steps=step, losses=[float(v) for v in losses], "
                   "val_loss=float(val_loss), vocab=len(vocab), sampled=sampled, prime=PRIME)",
}


# --- running a notebook --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def kernel_specs(tmp_path_factory):
    """A kernel spec folder with one spec, KERNEL, whose argv is this very interpreter."""
    folder = tmp_path_factory.mktemp("kernels")
    spec = folder / KERNEL
    spec.mkdir()
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "tinygrad_rnn tests", "language": "python"}), encoding="utf-8")
    return folder


@pytest.fixture
def run_notebook(kernel_specs, tmp_path, monkeypatch):
    """run_notebook(name) -> (executed notebook, probe dict)."""
    # the kernel inherits the environment at its start
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(var, "1")
    monkeypatch.setenv("CHAR_RNN_SECONDS", "3")
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))           # no history written to $HOME
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))  # connection files too

    def run(name):
        nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        probe = ("import json as _json, sys as _sys\n"
                 f"print('PROBE' + _json.dumps(dict(prefix=_sys.prefix, values={PROBES[name]})))")
        nb.cells.append(nbformat.v4.new_code_cell(probe))
        km = KernelManager(kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_specs)]))
        NotebookClient(nb, km=km, timeout=CELL_TIMEOUT, startup_timeout=120,
                       resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
        printed = text_of(nb.cells[-1])
        assert printed.startswith("PROBE"), printed
        result = json.loads(printed[len("PROBE"):])
        assert result["prefix"] == sys.prefix, \
            f"the kernel ran in {result['prefix']}, not in this interpreter's environment {sys.prefix}"
        nb.cells.pop()
        return nb, result["values"]

    return run


# --- reading what the notebook shows -----------------------------------------------------------------
def text_of(cell):
    """Everything a code cell printed (its streams and its text results)."""
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type in ("execute_result", "display_data") and "text/plain" in out.data:
            parts.append(out.data["text/plain"])
    return "".join(parts)


def all_text(nb):
    return "\n".join(text_of(c) for c in nb.cells if c.cell_type == "code")


def shown(nb, mime):
    """The outputs of type ``mime`` that the notebook displays, in order."""
    return [out.data[mime] for c in nb.cells if c.cell_type == "code" for out in c.outputs
            if out.output_type in ("execute_result", "display_data") and mime in out.data]


def check_svgs(nb, at_least):
    """At least ``at_least`` pictures are displayed inline as SVG that parses (Graphviz's output)."""
    svgs = shown(nb, "image/svg+xml")
    assert len(svgs) >= at_least, f"{len(svgs)} SVG pictures shown, expected at least {at_least}"
    for svg in svgs:
        root = ET.fromstring(svg.encode("utf-8") if isinstance(svg, str) else svg)
        assert root.tag.endswith("svg") and root.find(".//{http://www.w3.org/2000/svg}g") is not None
    return svgs


def check_pngs(nb, at_least):
    """At least ``at_least`` matplotlib figures are displayed inline as PNG."""
    pngs = shown(nb, "image/png")
    assert len(pngs) >= at_least, f"{len(pngs)} PNG plots shown, expected at least {at_least}"
    return pngs


# --- the notebooks as files ------------------------------------------------------------------------
def notebook_names():
    return sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))


def test_every_notebook_is_tested():
    assert notebook_names() == sorted(PROBES), "each notebook needs its check (PROBES and a test below)"


@pytest.mark.parametrize("name", notebook_names())
def test_notebook_is_stored_without_outputs(name):
    """Outputs hold pictures of hundreds of kB and change at every run: they stay out of git."""
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    for k, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name}.ipynb, cell {k}: has outputs (clear them before committing)"
            assert cell.execution_count is None, f"{name}.ipynb, cell {k}: has an execution count"
        assert not cell.get("attachments"), f"{name}.ipynb, cell {k}: has attachments"
    assert "CHAR_RNN_SECONDS" not in json.dumps(nb.metadata)


def test_char_rnn_budget_is_documented_in_the_first_cell():
    nb = nbformat.read(NOTEBOOKS / "05_char_rnn.ipynb", as_version=4)
    assert nb.cells[0].cell_type == "markdown" and "CHAR_RNN_SECONDS" in nb.cells[0].source


# --- each notebook, executed -------------------------------------------------------------------------
@needs_dot
def test_01_reverse_mode(run_notebook):
    nb, v = run_notebook("01_reverse_mode")
    check_svgs(nb, 3)                          # f = (x + y) z, the fan-out, the tanh layer
    text = all_text(nb)
    # autodiff and the hand computation print the notes' numbers
    assert re.search(r"f = -12\.0\s+df/dx = -4\.0\s+df/dy = -4\.0\s+df/dz = 3\.0", text), text
    assert re.search(r"by hand:\s+df/dx = -4\.0\s+df/dy = -4\.0\s+df/dz = 3\.0", text), text
    assert "dg/dx = 6.0" in text               # y + 1, with y = 5
    assert v["difference"] < 1e-12
    assert "gradcheck: True" in text


@needs_dot
def test_02_bptt(run_notebook):
    nb, v = run_notebook("02_bptt")
    svgs = check_svgs(nb, 3)                   # op level with the highlighted path, cell level, a frame
    # BPTT by hand equals autodiff, and the printed difference says so
    assert v["max_difference"] < 1e-12
    printed = re.search(r"largest \|autodiff - by hand\| over all gradients: (\S+)", all_text(nb))
    assert printed and float(printed.group(1)) == pytest.approx(v["max_difference"], abs=1e-15)
    # dL/dh_t by hand: one norm per step, all of them non-zero
    assert len(v["dh_norms"]) == 4 and all(n > 0 for n in v["dh_norms"])
    # the highlighted picture marks the path in vermillion
    assert any("#D55E00" in svg or "#d55e00" in svg for svg in svgs)
    # the cell-level picture shows the hand-computed ||dL/dh_t|| and marks the largest input gradient
    cell = next(svg for svg in svgs if "x_4" in svg and "largest" in svg)
    for n in v["dh_norms"]:
        assert f"{n:.3f}" in cell
    # the step-through: every frame is inside the inline iframe
    pages = [h for h in shown(nb, "text/html") if "<iframe" in h]
    assert len(pages) == 1 and "srcdoc=" in pages[0]
    assert v["frames"] >= 5 and pages[0].count("&lt;svg") >= v["frames"]


@needs_dot
def test_03_vanishing_exploding(run_notebook):
    nb, v = run_notebook("03_vanishing_exploding")
    check_svgs(nb, 2)                          # rho = 0.5 and rho = 2, coloured by gradient
    check_pngs(nb, 2)                          # norm against distance; clipping
    norms = v["norms"]
    below, above = norms["ρ = 0.5"], norms["ρ = 2"]
    # time order t = 0 .. T-1: the loss is at the last step
    assert below[0] < 1e-6 * below[-1], "spectral radius 0.5: the gradient should vanish going back"
    assert above[0] > 10 * above[-1], "spectral radius 2: the gradient should grow going back"
    runs = v["runs"]
    plain, clipped = runs["no clipping"], runs["clip_grad_norm_(params, 1.0)"]
    assert not all(math.isfinite(x) for x in plain["loss"]), "the unclipped run should blow up"
    assert all(math.isfinite(x) for x in clipped["loss"])
    assert clipped["loss"][-1] < 0.5 * clipped["loss"][0]
    assert max(plain["norm"][:10]) > 100         # the explosion that clipping guards against


@needs_dot
def test_04_lstm_gru_gates(run_notebook):
    nb, v = run_notebook("04_lstm_gru_gates")
    check_svgs(nb, 2)                          # the LSTM's carousel, the GRU's state path
    check_pngs(nb, 2)                          # forget-gate and update-gate sweeps
    # each gate's gradient formula against autodiff, for one step
    assert set(v["lstm_checks"]) >= {"c_prev", "f", "i", "g", "o"}
    assert set(v["gru_checks"]) >= {"n", "z"}
    assert all(d < 1e-12 for d in v["lstm_checks"].values()), v["lstm_checks"]
    assert all(d < 1e-12 for d in v["gru_checks"].values()), v["gru_checks"]
    # with W_hh = 0, dL/dc_{t-1} = dL/dc_t * f_t (LSTM) and dL/dh_{t-1} = dL/dh_t * z_t (GRU), exactly
    assert v["carousel"] < 1e-12 and v["gru_carousel"] < 1e-12
    # a forget gate near 1 keeps the gradient far back; one near 0 loses it at once
    # a forget gate near 1 keeps the gradient far back; one near 0 loses it at once (biases in increasing order)
    forget = list(v["forget"].values())
    shut, open_ = forget[0], forget[-1]
    assert open_[0] > 0.1 * open_[-1] and shut[0] < 1e-6 * shut[-1]
    # the GRU keeps its state, and the gradient, when z is near 1 (PyTorch's z: the notes' 1 - z)
    update = list(v["update"].values())
    assert update[-1][0] > 0.1 * update[-1][-1] and update[0][0] < 1e-3 * update[0][-1]


@needs_dot
def test_05_char_rnn(run_notebook):
    nb, v = run_notebook("05_char_rnn")
    check_pngs(nb, 1)                          # the loss curve
    assert v["seconds"] == 3                   # the notebook read CHAR_RNN_SECONDS
    assert v["steps"] == len(v["losses"]) >= 3
    assert all(math.isfinite(x) for x in v["losses"])
    uniform = math.log(v["vocab"])             # nats/char of a model that knows nothing
    assert v["losses"][0] == pytest.approx(uniform, abs=0.3)
    # three steps are enough to learn which characters are common (about 3.1 nats/char on this corpus)
    assert v["val_loss"] < uniform - 1.0
    sampled = v["sampled"]
    assert sampled.startswith(v["prime"]) and len(sampled) > len(v["prime"]) + 100
    assert sampled in all_text(nb)             # and the reader sees it
