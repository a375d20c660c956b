"""Checkpoints: round trips, atomic saves, corruption, hostile files, wrong architectures,
and a training run killed with SIGKILL that resumes with exactly the same losses."""
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import CheckpointError
from tinygrad_rnn.nn import GRU, LSTM, RNN, Linear
from tinygrad_rnn.nn.module import StateDictError


def assert_same(a, b, where="state"):
    """Equal structure, types and values (NaN equal to NaN, -0.0 distinct from 0.0)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert a.tobytes() == b.tobytes(), where
    elif isinstance(a, float):
        assert repr(a) == repr(b), where
    else:
        assert a == b, where


# --- round trips ---------------------------------------------------------------------------------
def test_round_trip_of_nested_structures(tmp_path):
    rng = np.random.default_rng(0)
    state = {
        "model": {"rnn.weight_hh_l0": rng.standard_normal((4, 4)).astype(np.float32),
                  "bias": rng.standard_normal(4)},
        "arrays": [np.arange(6, dtype=np.int64).reshape(2, 3), np.array([True, False]), np.zeros((0, 3)),
                   np.array(2.5), np.arange(4, dtype=np.uint8), np.array([1 + 2j]), np.arange(3, dtype=np.int32)],
        "plain": [None, True, False, 0, -7, 2 ** 100, 1.5, float("nan"), float("inf"), -0.0, "", "ünïcode ✓"],
        "pair": (1, "two", (3.0,)),
        7: "an int key",
        "step": 12,
        "empty": {}, "empty_list": [],
        "tricky keys": {"list": 1, "array": 2, "dict": {"tuple": 3}},
    }
    tg.save(state, tmp_path / "ckpt.npz")
    assert_same(tg.load(tmp_path / "ckpt.npz"), state)
    tg.save([1, 2], str(tmp_path / "top_level_list"))  # any top-level structure, any file name
    assert tg.load(str(tmp_path / "top_level_list")) == [1, 2]


def test_tensors_and_backend_arrays_come_back_as_numpy(tmp_path, backend):
    t = tg.randn(3, 2, dtype="float64")
    scalars = {"f32": np.float32(0.1), "i64": np.int64(-3), "b": np.bool_(True)}
    tg.save({"t": t, "raw": t.data, "p": tg.nn.Parameter(t), **scalars}, tmp_path / "c.npz")
    back = tg.load(tmp_path / "c.npz")
    for k in ("t", "raw", "p"):
        assert type(back[k]) is np.ndarray and back[k].dtype == np.float64
        np.testing.assert_array_equal(back[k], t.numpy())
    assert back["f32"] == float(np.float32(0.1)) and type(back["f32"]) is float
    assert back["i64"] == -3 and type(back["i64"]) is int and back["b"] is True


@pytest.mark.parametrize("state,message", [
    ({"model": [1, object()]}, r"cannot store a object at state\['model'\]\[1\]"),
    ({"a": np.array([{"x": 1}], dtype=object)}, r"cannot store an array of dtype object at state\['a'\].*pickle"),
    ({(1, 2): 3}, r"dict keys must be str or int, got tuple \(1, 2\) in state"),
    ({"s": {1.5: 2}}, r"dict keys must be str or int, got float 1.5 in state\['s'\]"),
    ({"u": np.array(["text"])}, "cannot store an array of dtype <U4"),
])
def test_unsupported_values_are_refused_before_writing(tmp_path, state, message):
    with pytest.raises(TypeError, match=message):
        tg.save(state, tmp_path / "ckpt.npz")
    assert os.listdir(tmp_path) == []


# --- atomic save -----------------------------------------------------------------------------------
def save_two_versions(tmp_path, monkeypatch, break_it):
    path = tmp_path / "ckpt.npz"
    v1 = {"step": 1, "w": np.arange(1000.0)}
    tg.save(v1, path)
    before = path.read_bytes()
    break_it(monkeypatch)
    with pytest.raises(OSError, match="simulated"):
        tg.save({"step": 2, "w": np.ones(1000)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert_same(tg.load(path), v1)
    assert os.listdir(tmp_path) == ["ckpt.npz"]  # no temporary file left behind


def fail(*args, **kwargs):
    raise OSError("simulated: no space left on device")


def test_failure_at_rename_keeps_previous_checkpoint(tmp_path, monkeypatch):
    save_two_versions(tmp_path, monkeypatch, lambda mp: mp.setattr(os, "replace", fail))


def test_failure_at_fsync_keeps_previous_checkpoint(tmp_path, monkeypatch):
    save_two_versions(tmp_path, monkeypatch, lambda mp: mp.setattr(os, "fsync", fail))


def test_failure_in_the_middle_of_writing_keeps_previous_checkpoint(tmp_path, monkeypatch):
    """The array writer dies after writing part of the data (the temporary file is half full)."""
    real_write = np.lib.format.write_array
    written = []

    def write_then_die(fp, array, *args, **kwargs):
        if array.size == 1000:
            fp.write(array.tobytes()[:3000])
            written.append(1)
            fail()
        return real_write(fp, array, *args, **kwargs)

    save_two_versions(tmp_path, monkeypatch, lambda mp: mp.setattr(np.lib.format, "write_array", write_then_die))
    assert written == [1]


def test_keyboard_interrupt_mid_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    tg.save({"step": 1}, path)

    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        tg.save({"step": 2}, path)
    monkeypatch.undo()
    assert tg.load(path) == {"step": 1} and os.listdir(tmp_path) == ["ckpt.npz"]


# --- corruption --------------------------------------------------------------------------------------
@pytest.fixture
def saved(tmp_path):
    rng = np.random.default_rng(0)
    state = {"model": {"w": rng.standard_normal((8, 8)), "b": rng.standard_normal(8).astype(np.float32)},
             "step": 3, "name": "run"}
    path = tmp_path / "ckpt.npz"
    tg.save(state, path)
    return path, state


@pytest.mark.parametrize("keep", [0, 1, 30, 0.5, 0.9, -22, -1])
def test_truncated_file_raises_naming_the_file(saved, keep):
    path, _ = saved
    data = path.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else keep % len(data) if keep else 0
    path.write_bytes(data[:n])
    with pytest.raises(CheckpointError, match=f"{path}.* (truncated or corrupted|is corrupted)"):
        tg.load(path)


def test_flipped_byte_in_array_data_raises_naming_the_file(saved):
    path, _ = saved
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.file_size == 8 * 8 * 8 + 128)  # the (8, 8) float64 array
    data[info.header_offset + len(data) // 10 + 300] ^= 0x01  # inside its data, past the headers
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=f"{path} is corrupted"):
        tg.load(path)


def test_no_flipped_byte_goes_unnoticed(saved):
    """Flip bytes all over the file: each load raises CheckpointError or returns exactly the
    original (a few bytes of the zip headers, e.g. timestamps, do not affect the contents)."""
    path, state = saved
    original = path.read_bytes()
    errors = 0
    positions = range(0, len(original), 7)
    for pos in positions:
        data = bytearray(original)
        data[pos] ^= 0x10
        path.write_bytes(bytes(data))
        try:
            back = tg.load(path)
        except CheckpointError as e:
            assert str(path) in str(e)
            errors += 1
        else:
            assert_same(back, state)
    assert errors > 0.8 * len(positions)


def test_checksum_catches_what_the_zip_crc_cannot(saved, tmp_path):
    """Rewrite the archive with one changed array but the old record and digest: every zip
    CRC is valid, only the SHA-256 over the contents notices."""
    path, _ = saved
    with np.load(path) as npz:
        entries = {k: npz[k] for k in npz.files}
    name = next(k for k, v in entries.items() if v.shape == (8, 8))
    entries[name] = entries[name].copy()
    entries[name][3, 3] += 1e-12
    np.savez(path, **entries)
    with pytest.raises(CheckpointError, match=f"{path} is corrupted: its SHA-256 checksum does not match"):
        tg.load(path)


def test_not_a_checkpoint(tmp_path):
    plain = tmp_path / "plain.npz"
    np.savez(plain, x=np.ones(3))
    with pytest.raises(CheckpointError, match=rf"{plain} is not a tinygrad_rnn checkpoint: no __meta__/__sha256__ "
                                              rf"entries \(entries: x\)"):
        tg.load(plain)
    npy = tmp_path / "one.npy"
    np.save(npy, np.ones(3))
    with pytest.raises(CheckpointError, match="holds a single .npy array"):
        tg.load(npy)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match=f"{text} is not a tinygrad_rnn checkpoint"):
        tg.load(text)
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*missing.npz"):
        tg.load(tmp_path / "missing.npz")


def test_newer_format_version_is_refused(saved):
    path, _ = saved
    with np.load(path) as npz:
        entries = {k: npz[k] for k in npz.files}
    entries["__meta__"] = np.frombuffer(entries["__meta__"].tobytes().replace(b'"version": 1', b'"version": 2'),
                                        dtype=np.uint8)
    np.savez(path, **entries)
    with pytest.raises(CheckpointError, match="format version 2; this tinygrad_rnn reads versions up to 1"):
        tg.load(path)


# --- hostile files ------------------------------------------------------------------------------------
class Evil:
    """Unpickling this creates the marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_object_array_is_refused_without_running_code(saved, tmp_path):
    path, _ = saved
    marker = tmp_path / "pwned"
    with np.load(path) as npz:
        entries = {k: npz[k] for k in npz.files}
    name = next(k for k in entries if k.startswith("a"))
    entries[name] = np.array([Evil(str(marker))], dtype=object)
    np.savez(path, **entries)

    with pytest.raises(CheckpointError, match=f"{path}: refusing entry '{name}': it is a pickled object array"):
        tg.load(path)
    assert not marker.exists()
    # the file really is an exploit: loading it with pickle allowed runs the code
    with np.load(path, allow_pickle=True) as npz:
        npz[name]
    assert marker.exists()


def test_pickled_record_or_pickle_file_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    hostile = tmp_path / "record.npz"
    np.savez(hostile, __meta__=np.array([Evil(str(marker))], dtype=object), __sha256__=np.zeros(3, np.uint8))
    with pytest.raises(CheckpointError, match="refusing entry '__meta__': it is a pickled object array"):
        tg.load(hostile)
    plain_pickle = tmp_path / "model.pt"
    plain_pickle.write_bytes(pickle.dumps({"w": Evil(str(marker))}))
    with pytest.raises(CheckpointError, match="not a tinygrad_rnn checkpoint .*pickled files are refused"):
        tg.load(plain_pickle)
    assert not marker.exists()


# --- wrong architecture ---------------------------------------------------------------------------------
@pytest.mark.parametrize("make_other,message", [
    (lambda: LSTM(3, 5), r"weight_ih_l0: expected shape \(20, 3\), got \(16, 3\); weight_hh_l0: expected shape "
                         r"\(20, 5\), got \(16, 4\)"),
    (lambda: GRU(3, 4), r"weight_ih_l0: expected shape \(12, 3\), got \(16, 3\)"),
    (lambda: LSTM(3, 4, num_layers=2), r"missing keys: weight_ih_l1, weight_hh_l1, bias_ih_l1, bias_hh_l1"),
    (lambda: LSTM(3, 4, bias=False), r"unexpected keys: bias_ih_l0, bias_hh_l0"),
    (lambda: RNN(3, 4), r"weight_ih_l0: expected shape \(4, 3\), got \(16, 3\)"),
])
def test_wrong_architecture_names_keys_and_shapes(tmp_path, make_other, message):
    tg.save({"model": LSTM(3, 4).state_dict()}, tmp_path / "lstm.npz")
    other = make_other()
    before = other.state_dict()
    with pytest.raises(StateDictError, match=message):
        other.load_state_dict(tg.load(tmp_path / "lstm.npz")["model"])
    for k, v in other.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


# --- resume = uninterrupted run -------------------------------------------------------------------------------
def build(seed):
    tg.manual_seed(seed)
    rnn, head = RNN(3, 8), Linear(8, 1)
    model = tg.nn.Sequential()
    model.rnn, model.head = rnn, head
    opt = tg.optim.Adam(model.named_parameters(), lr=0.01)
    return model, opt


def train_step(model, opt):
    x = tg.randn(5, 4, 3).dropout(0.2)   # draws from the RNG twice per step
    y = tg.randn(4, 1)
    out, _ = model.rnn(x)
    loss = ((model.head(out[-1]) - y) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    tg.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
    opt.step()
    return loss.item()


def test_resume_gives_exactly_the_uninterrupted_losses(backend, tmp_path):
    model, opt = build(0)
    reference = [train_step(model, opt) for _ in range(8)]

    model, opt = build(0)
    losses = [train_step(model, opt) for _ in range(4)]
    tg.save({"model": model.state_dict(), "optim": opt.state_dict(), "step": 4,
             "rng": tg.backend.get_rng_state(), "losses": losses}, tmp_path / "ckpt.npz")
    del model, opt

    model, opt = build(123)  # a "new process": other weights, other random state
    ckpt = tg.load(tmp_path / "ckpt.npz")
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optim"])
    tg.backend.set_rng_state(ckpt["rng"])
    losses = ckpt["losses"] + [train_step(model, opt) for _ in range(ckpt["step"], 8)]
    assert losses == reference  # bit for bit
    assert len(set(reference)) == 8


TRAIN_SCRIPT = textwrap.dedent('''
    """Train a tiny RNN for TOTAL steps, checkpointing every EVERY steps; resume if a checkpoint exists."""
    import os, sys, time
    import numpy as np
    import tinygrad_rnn as tg
    import tinygrad_rnn.nn as nn

    path, total, every, hang = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

    def pause(label):
        print(label, flush=True)
        time.sleep(30)  # the test kills us here

    if hang == "write":   # stop with the temporary file half written
        real_write = np.lib.format.write_array
        def write_array(fp, array, *a, **k):
            if array.size == 8 * 3:
                fp.write(array.tobytes()[:40]); fp.flush(); pause("hanging in write")
            return real_write(fp, array, *a, **k)
        np.lib.format.write_array = write_array
    elif hang == "replace":  # stop with the temporary file complete but not yet renamed
        real_replace = os.replace
        os.replace = lambda src, dst: (pause("hanging in replace"), real_replace(src, dst))

    tg.manual_seed(0)
    model = nn.Sequential()
    model.rnn, model.head = nn.RNN(3, 8), nn.Linear(8, 1)
    opt = tg.optim.Adam(model.named_parameters(), lr=0.01)
    step, losses = 0, []
    if os.path.exists(path):
        ckpt = tg.load(path)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optim"])
        tg.backend.set_rng_state(ckpt["rng"])
        step, losses = ckpt["step"], ckpt["losses"]
        print("resumed", step, flush=True)
    while step < total:
        x = tg.randn(5, 4, 3).dropout(0.2)
        y = tg.randn(4, 1)
        out, _ = model.rnn(x)
        loss = ((model.head(out[-1]) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        losses.append(loss.item())
        print("step", step, repr(losses[-1]), flush=True)
        if step % every == 0 or step == total:
            tg.save({"model": model.state_dict(), "optim": opt.state_dict(), "step": step,
                     "rng": tg.backend.get_rng_state(), "losses": losses}, path)
            print("saved", step, flush=True)
    print("done", flush=True)
''')
TOTAL, EVERY = 40, 3


def run_worker(script, ckpt, hang="", kill_after=None, seed=0):
    """Run the training script; with kill_after=(n_lines, pattern) SIGKILL it after n output lines
    (or on the first line starting with pattern), then a random 0-5 ms later. Returns its output lines."""
    proc = subprocess.Popen([sys.executable, str(script), str(ckpt), str(TOTAL), str(EVERY), hang or "-"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        if kill_after is not None:
            n_lines, pattern = kill_after
            while True:
                line = proc.stdout.readline()
                if not line:
                    break
                lines.append(line.strip())
                if len(lines) >= n_lines or (pattern and line.startswith(pattern)):
                    import time
                    time.sleep(random.Random(seed).uniform(0, 0.005))
                    proc.kill()  # SIGKILL: no cleanup, no finally blocks, no atexit
                    break
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines += out.splitlines()
    if kill_after is None:
        assert proc.returncode == 0, err
    else:
        assert proc.returncode in (-signal.SIGKILL, 0), err
    return lines


def parse(lines):
    """(printed step -> loss, last step whose save completed)."""
    steps, saved = {}, 0
    for line in lines:
        parts = line.split()
        if parts[0] == "step":
            steps[int(parts[1])] = float(parts[2])
        elif parts[0] == "saved":
            saved = int(parts[1])
    return steps, saved


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_sigkill_at_random_moments_loses_only_work_since_last_save(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)
    reference_ckpt = tmp_path / "reference.npz"
    run_worker(script, reference_ckpt)
    reference = tg.load(reference_ckpt)["losses"]
    assert len(reference) == TOTAL

    ckpt = tmp_path / "ckpt.npz"
    rng = random.Random(1)
    kills = [(rng.randint(2, 12), None, ""), (100, "hanging in write", "write"),
             (rng.randint(2, 12), None, ""), (100, "hanging in replace", "replace"), (rng.randint(2, 12), None, "")]
    for i, (n_lines, pattern, hang) in enumerate(kills):
        before = ckpt.read_bytes() if ckpt.exists() else None
        lines = run_worker(script, ckpt, hang=hang, kill_after=(n_lines, pattern), seed=i)
        steps, last_saved = parse(lines)
        for step, loss in steps.items():  # every printed loss is the uninterrupted run's, bit for bit
            assert loss == reference[step - 1], (i, step)
        if hang:  # killed mid-save: the previous checkpoint is untouched, byte for byte
            assert lines[-1].startswith("hanging")
            assert (ckpt.read_bytes() if ckpt.exists() else None) == before
        if not ckpt.exists():
            assert last_saved == 0
            continue
        state = tg.load(ckpt)  # never corrupted
        resumed = [int(line.split()[1]) for line in lines if line.startswith("resumed")]
        start = resumed[0] if resumed else 0
        # nothing saved is lost: the checkpoint is the last completed save (or one more, if the
        # kill came between the rename and the "saved" line)
        assert state["step"] in (max(last_saved, start), max(last_saved, start) + EVERY)
        assert state["step"] <= max(steps, default=start)
        assert state["losses"] == reference[:state["step"]]

    lines = run_worker(script, ckpt)  # finally, run to the end
    assert lines[-1] == "done"
    assert tg.load(ckpt)["losses"] == reference
    # the temporary files of killed saves were cleaned up by later saves
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz", "reference.npz", "train.py"]


def test_save_removes_temporaries_of_dead_processes_only(tmp_path):
    path = tmp_path / "ckpt.npz"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".ckpt.npz.{dead_pid}.0badc0de.tmp"
    live = tmp_path / f".ckpt.npz.{os.getppid()}.0badc0de.tmp"  # a process that is alive
    other = tmp_path / f".other.npz.{dead_pid}.0badc0de.tmp"   # another checkpoint's
    for f in (stale, live, other):
        f.write_bytes(b"half a checkpoint")
    tg.save({"step": 1}, path)
    assert sorted(os.listdir(tmp_path)) == sorted(["ckpt.npz", live.name, other.name])
