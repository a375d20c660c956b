"""examples/char_rnn.py: its --quick run, its outputs, sampling, exact --resume, Ctrl-C, errors.

The script runs in subprocesses (as a user runs it); a few checks import it.
"""
import html
import json
import math
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import tinygrad_rnn as tg

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "char_rnn.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HAVE_DOT = shutil.which("dot") is not None      # Graphviz draws bptt.svg/.png; its .gv source is always written
sys.path.insert(0, str(ROOT / "examples"))


def run(*args, timeout=120, check=True):
    """Run char_rnn.py with ``args``; returns the CompletedProcess (stdout and stderr as text)."""
    p = subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, cwd=ROOT)
    if check and p.returncode != 0:
        raise AssertionError(f"char_rnn.py {' '.join(map(str, args))} exited with {p.returncode}:\n{p.stderr[-3000:]}")
    return p


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One --quick run, shared by the tests that only read its outputs."""
    out = tmp_path_factory.mktemp("char_rnn_quick")
    p = run("--quick", "--out", out)
    return out, p


def load_log(out):
    with open(out / "log.json", encoding="utf-8") as f:
        return json.load(f)


# --- the quick run ------------------------------------------------------------------------------
def test_quick_run_writes_every_output(quick):
    out, _ = quick
    Image = pytest.importorskip("PIL.Image")
    drawn_by_dot = ("bptt.png",) if HAVE_DOT else ()
    for name in ("loss.png", "grad_norm.png", "grad_histograms.png") + drawn_by_dot:
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE, name
        with Image.open(out / name) as image:
            image.load()                                    # decodes every pixel: a truncated file raises
            assert image.format == "PNG" and min(image.size) > 100, (name, image.size)
    # the unrolled graph of one 8-character chunk: its DOT source always, the SVG where dot is installed;
    # compared as the words they show (DOT: the labels' HTML tags dropped)
    gv = html.unescape(re.sub(r"<[^>]*>", " ", (out / "bptt.gv").read_text(encoding="utf-8")))
    texts = [gv]
    if HAVE_DOT:
        svg = ET.parse(out / "bptt.svg").getroot()
        assert svg.tag.endswith("svg")
        texts.append(" ".join(t for t in svg.itertext()))
    for text in texts:
        text = re.sub(r"\s+", " ", text)
        for t in range(1, 9):                       # one cluster per character of the 8-character chunk
            assert re.search(rf"\bt = {t}\b", text), t        # (numbered from 1, as in the notes)
        assert not re.search(r"\bt = (0|9)\b", text)
        assert "LSTMCell" in text and "W_hh" in text
        # the loss and the input are named: "L scalar" (not "sum scalar"), "x_1" ... "x_8", one box per step
        assert re.search(r"\bL scalar\b", text) and re.search(r"\bx_1\b", text) and re.search(r"\bx_8\b", text)


def test_progress_bar_shows_loss_validation_speed_and_gradient_norm(quick):
    _, p = quick
    bar = [line for line in re.split(r"[\r\n]", p.stderr) if line.startswith("training:")]
    assert bar, p.stderr[-2000:]
    last = bar[-1]                                   # the bar when training ended: 30 of 30 steps
    assert "30/30" in last
    for field in ("loss", "val loss", "chars/s", "grad norm"):
        assert re.search(rf"\b{field}=[\d,.]+", last), (field, last)
    # the summary says how long, in a unit that does not round a quick run to "0 s"
    assert re.search(r"30 steps \(\S+ epochs\) in \d+\.\d+ s, [\d,]+ chars/s", p.stdout), p.stdout[-500:]


def test_quick_run_log_records_the_run(quick):
    out, p = quick
    log = load_log(out)
    assert log["step"] == list(range(1, 31))                  # --quick: 30 steps
    assert len(log["loss"]) == len(log["grad_norm"]) == 30
    assert log["val_step"] == [10, 20, 30]
    assert [s["step"] for s in log["samples"]] == [0, 15, 30]
    assert all(len(s["text"]) == 1 + 60 for s in log["samples"])    # the "\n" prime + 60 characters
    assert log["final"]["steps"] == 30 and math.isfinite(log["final"]["val_loss"])
    assert log["args"]["hidden"] == 32 and log["args"]["seq_len"] == 16   # the --quick settings
    assert "sample at step 0" in p.stdout + p.stderr


def test_quick_run_loss_falls(quick):
    out, _ = quick
    log = load_log(out)
    V = len(log["config"]["vocab"])
    loss = np.array(log["loss"])
    # an untrained model is close to uniform: log V nats per character
    assert abs(loss[0] - math.log(V)) < 0.15, (loss[0], math.log(V))
    assert loss[-5:].mean() < loss[0] - 0.6, loss
    assert log["val_loss"][-1] < math.log(V) - 0.4, log["val_loss"]
    assert log["final"]["val_loss"] < math.log(V) - 0.4


@pytest.mark.parametrize("options, model, optimizer, gates", [
    (["--model", "gru", "--optimizer", "adagrad", "--clip-value", "1"], "gru", "adagrad", 3),
    (["--model", "rnn", "--optimizer", "sgd"], "rnn", "sgd", 1),
])
def test_other_models_and_optimizers_train(options, model, optimizer, gates, tmp_path):
    """30 quick steps of a GRU with Adagrad and clipping by value, and of a vanilla RNN with SGD.
    Measured over seeds 0-2: the GRU's loss falls from 4.55 to 2.8-2.9, the RNN's from 4.5 to 3.3-3.4;
    the RNN's validation loss ends at 3.97-4.01 (log V = 4.54)."""
    run("--quick", "--no-plots", *options, "--out", tmp_path)
    log = load_log(tmp_path)
    args = log["args"]
    assert (args["model"], args["optimizer"], log["config"]["model"]) == (model, optimizer, model)
    assert args["lr"] == {"adagrad": 0.1, "sgd": 1.0}[optimizer]          # each optimizer's own default
    assert args["clip_value"] == (1.0 if "--clip-value" in options else None)
    ckpt = tg.load(tmp_path / "checkpoint.npz")
    assert ckpt["model"]["rnn.weight_hh_l0"].shape == (gates * 32, 32)      # r z n / one tanh: the chosen cell
    assert ckpt["optimizer"]["optimizer"] == {"adagrad": "Adagrad", "sgd": "SGD"}[optimizer]
    loss, V = np.array(log["loss"]), len(log["config"]["vocab"])
    assert loss[-5:].mean() < loss[0] - 0.6, loss
    assert log["final"]["val_loss"] < math.log(V) - 0.2


def test_trains_on_a_text_file_given_with_data(tmp_path):
    """--data: any UTF-8 file. A small one written here, 13 words in random sentences: the vocabulary
    is its 15 characters, and 30 quick steps take the loss from log 15 = 2.71 to about 1.4
    (measured 1.39-1.58 over seeds 0-2; validation 1.28-1.45)."""
    rng = np.random.default_rng(0)
    words = "the cat sat on a mat and a dog ran to the red hat".split()
    text = "".join(" ".join(rng.choice(words, size=rng.integers(3, 10))) + ".\n" for _ in range(800))
    path = tmp_path / "sentences.txt"
    path.write_text(text, encoding="utf-8")
    p = run("--quick", "--no-plots", "--data", path, "--out", tmp_path / "out")
    assert f"data: {path} ({len(text):,} chars), 15 distinct characters" in p.stdout
    log = load_log(tmp_path / "out")
    assert log["args"]["data"] == str(path)
    assert log["config"]["vocab"] == "".join(sorted(set(text)))
    loss = np.array(log["loss"])
    assert abs(loss[0] - math.log(15)) < 0.15
    assert loss[-5:].mean() < loss[0] - 0.7, loss
    assert log["final"]["val_loss"] < math.log(15) - 0.8
    assert all(set(s["text"]) <= set(text) for s in log["samples"])      # it writes with the file's characters


def test_checkpoint_holds_what_sampling_and_resuming_need(quick):
    out, _ = quick
    ckpt = tg.load(out / "checkpoint.npz")
    log = load_log(out)
    assert ckpt["kind"] == "char_rnn"
    assert ckpt["config"]["vocab"] == log["config"]["vocab"]
    assert (ckpt["config"]["model"], ckpt["config"]["hidden"], ckpt["config"]["layers"]) == ("lstm", 32, 1)
    assert ckpt["progress"] == {"step": 30, "epoch": 0, "chunk": 30}
    h, c = ckpt["state"]                                       # the LSTM's (h, c) after the last chunk
    assert h.shape == c.shape == (1, 8, 32)                    # (layers, batch, hidden)
    assert ckpt["model"]["rnn.weight_hh_l0"].shape == (4 * 32, 32)
    assert ckpt["optimizer"]["optimizer"] == "Adam"
    assert ckpt["history"]["loss"] == log["loss"]


# --- sampling -----------------------------------------------------------------------------------
def test_sampling_is_reproducible_with_a_seed(quick):
    out, _ = quick
    ckpt = out / "checkpoint.npz"
    common = ["sample", "--checkpoint", ckpt, "--prime", "def ", "--length", "120", "--temperature", "1.0"]
    a = run(*common, "--seed", "1").stdout
    b = run(*common, "--seed", "1").stdout
    c = run(*common, "--seed", "2").stdout
    assert a == b
    assert a != c
    for s in (a, c):
        assert s.startswith("def ") and len(s) == len("def ") + 120 + 1    # + print's newline


def test_sample_refuses_characters_outside_the_vocabulary(quick):
    out, _ = quick
    p = run("sample", "--checkpoint", out / "checkpoint.npz", "--prime", "\u00e9t\u00e9", check=False)
    assert p.returncode == 2
    assert "not in the model's vocabulary" in p.stderr and "\u00e9" in p.stderr


def test_sample_greedy_matches_the_model(quick):
    """Temperature 0 takes the argmax: check the first characters against a forward pass done here."""
    import char_rnn
    out, _ = quick
    model, vocab = char_rnn.model_from_checkpoint(tg.load(out / "checkpoint.npz"))
    text = run("sample", "--checkpoint", out / "checkpoint.npz", "--prime", "def ", "--length", "5",
               "--temperature", "0").stdout[:-1]
    model.eval()
    ids = list(vocab.encode("def "))
    for _ in range(5):
        logits, _ = model(tg.Tensor(np.array(ids)[:, None]))       # the whole text again, from zero state
        ids.append(int(np.argmax(logits.numpy()[-1, 0])))
    assert text == vocab.decode(ids)


# --- resuming -----------------------------------------------------------------------------------
def test_resume_continues_exactly(tmp_path):
    """10 steps, stop, resume to 20 = 20 steps straight: the same losses, bit for bit. Two layers with
    dropout, so the random generator's state matters too."""
    settings = ["--quick", "--no-plots", "--layers", "2", "--dropout", "0.3", "--checkpoint-every", "7"]
    run(*settings, "--steps", "20", "--out", tmp_path / "straight")
    run(*settings, "--steps", "10", "--out", tmp_path / "stopped")
    p = run("--quick", "--no-plots", "--steps", "20", "--resume", "--out", tmp_path / "stopped")
    assert "resuming" in p.stdout and "at step 10" in p.stdout
    straight, resumed = load_log(tmp_path / "straight"), load_log(tmp_path / "stopped")
    assert len(straight["loss"]) == len(resumed["loss"]) == 20
    assert resumed["loss"] == straight["loss"]
    assert resumed["grad_norm"] == straight["grad_norm"]
    assert resumed["args"]["dropout"] == 0.3 and resumed["args"]["layers"] == 2   # taken from the checkpoint
    a = tg.load(tmp_path / "straight" / "checkpoint.npz")["model"]
    b = tg.load(tmp_path / "stopped" / "checkpoint.npz")["model"]
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_resume_refuses_a_checkpoint_of_another_text(tmp_path):
    run("--quick", "--no-plots", "--steps", "2", "--out", tmp_path)
    ckpt = tmp_path / "checkpoint.npz"
    state = tg.load(ckpt)
    state["config"]["corpus_sha256"] = "0" * 64              # as if trained on another text
    tg.save(state, ckpt)
    p = run("--quick", "--no-plots", "--steps", "4", "--resume", "--out", tmp_path, check=False)
    assert p.returncode == 2
    assert f"{ckpt} was trained on a different text than Python" in p.stderr


def test_ctrl_c_saves_a_checkpoint_that_resumes(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--quick", "--no-plots", "--steps", "100000",
                             "--checkpoint-every", "5", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not (out / "checkpoint.npz").exists():     # the training loop is running
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "no checkpoint after 60 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    assert "interrupted at step" in stdout and "--resume" in stdout
    ckpt = tg.load(out / "checkpoint.npz")
    step = ckpt["progress"]["step"]
    assert step >= 5 and len(ckpt["history"]["loss"]) == step
    assert load_log(out)["final"] == {"interrupted": True}
    p = run("--quick", "--no-plots", "--steps", str(step + 2), "--resume", "--out", out)
    assert f"at step {step}" in p.stdout
    assert len(load_log(out)["loss"]) == step + 2


# --- how long ----------------------------------------------------------------------------------
def test_epochs_and_time_budget(tmp_path):
    # 2,850 training characters in 8 streams of 356: (356 - 1) / 16 -> 23 chunks per epoch
    run("--quick", "--no-plots", "--max-chars", "3000", "--epochs", "2", "--out", tmp_path / "epochs")
    log = load_log(tmp_path / "epochs")
    assert log["final"]["steps"] == 2 * 23 and log["final"]["epochs"] == 2.0
    p = run("--quick", "--no-plots", "--steps", "1000000", "--minutes", "0.03", "--out", tmp_path / "budget")
    log = load_log(tmp_path / "budget")
    assert 0 < log["final"]["steps"] < 1000000
    assert "training for 1000000 steps or 0.03 minutes" in p.stdout
    assert log["final"]["seconds_this_run"] >= 1.8 - 0.01      # it trained until the budget was spent


# --- the command line ---------------------------------------------------------------------------
def test_help():
    p = run("--help")
    for option in ("--model", "--layers", "--hidden", "--seq-len", "--batch", "--lr", "--optimizer", "--clip",
                   "--clip-value", "--dropout", "--steps", "--epochs", "--minutes", "--temperature", "--seed",
                   "--device", "--quick", "--data", "--out", "--resume"):
        assert option in p.stdout, option
    assert "lecture notes" in p.stdout and "Truncated backpropagation through time" in p.stdout   # the docstring
    assert "char_rnn.py sample --help" in p.stdout
    p = run("sample", "--help")
    for option in ("--checkpoint", "--prime", "--length", "--temperature", "--seed"):
        assert option in p.stdout, option


@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], "--steps: expected a positive integer, got '0'"),
    (["--lr", "-1"], "--lr: expected a positive number, got '-1'"),
    (["--dropout", "1.5"], "--dropout: expected a number in [0, 1), got '1.5'"),
    (["--model", "transformer"], "invalid choice: 'transformer'"),
    (["--clip", "-2"], "--clip must be >= 0"),
    (["--temperature", "-1"], "--temperature must be >= 0"),
])
def test_bad_arguments_are_refused_clearly(args, message, capsys):
    import char_rnn
    with pytest.raises(SystemExit) as e:
        char_rnn.parse_args(args)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_data_file_is_named(tmp_path, capsys):
    import char_rnn
    missing = tmp_path / "no_such_corpus.txt"
    with pytest.raises(SystemExit) as e:
        char_rnn.main(["--data", str(missing), "--out", str(tmp_path / "out")])
    assert e.value.code == 2
    assert f"no such file: {missing}" in capsys.readouterr().err


def test_text_too_short_for_the_batch(tmp_path, capsys):
    import char_rnn
    text = tmp_path / "tiny.txt"
    text.write_text("abc" * 100, encoding="utf-8")
    with pytest.raises(SystemExit):
        char_rnn.main(["--data", str(text), "--batch", "64", "--steps", "1", "--out", str(tmp_path / "out")])
    assert "too short for --batch 64" in capsys.readouterr().err


def test_missing_checkpoint_is_named(tmp_path):
    p = run("sample", "--checkpoint", tmp_path / "nothing.npz", check=False)
    assert p.returncode == 2
    assert f"no checkpoint at {tmp_path / 'nothing.npz'}" in p.stderr


def test_cuda_without_cupy_says_what_is_missing(tmp_path, capsys):
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed here")
    except ImportError:
        pass
    import char_rnn
    with pytest.raises(SystemExit) as e:
        char_rnn.main(["--device", "cuda", "--quick", "--out", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "error: --device cuda: the 'cupy' backend needs CuPy" in err
    assert "pip install" in err                              # how to get it


# --- pieces -------------------------------------------------------------------------------------
def test_embedded_corpus_is_the_standard_library():
    import sysconfig
    import _common
    files = _common.stdlib_files()
    assert files == sorted(files) and len(files) > 50
    assert all(f.parent == pathlib.Path(sysconfig.get_paths()["stdlib"]) and f.suffix == ".py" for f in files)
    text = _common.stdlib_corpus(max_chars=20_000)
    assert len(text) == 20_000 and text.isascii()
    assert text.startswith(files[0].read_text())
