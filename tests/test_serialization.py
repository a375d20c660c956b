"""Checkpoints: round trips, atomic saves, corruption, hostile files, wrong architectures,
symbolic links and permissions, and a training run killed with SIGKILL that resumes with
exactly the same losses."""
import copy
import errno
import hashlib
import json
import os
import pickle
import random
import signal
import stat
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


def cyclic_dict():
    d = {"model": {}}
    d["model"]["self"] = d
    return d


def cyclic_list():
    a = [1]
    a.append([a])
    return a


def nested(depth):
    x = []
    for _ in range(depth - 1):
        x = [x]
    return x


@pytest.mark.parametrize("state, message", [
    (cyclic_dict(), r"^save: state\['model'\]\['self'\] contains itself \(a reference cycle\)"),
    (cyclic_list(), r"^save: state\[1\]\[0\] contains itself \(a reference cycle\)"),
    (nested(5000), r"^save: the state is nested more than 100 containers deep \(at state\[0\]\[0\]"),
    (nested(101), r"^save: the state is nested more than 100 containers deep"),
])
def test_cycles_and_very_deep_nesting_are_refused_by_name(tmp_path, state, message):
    """Not a RecursionError: a cycle is named, and nesting is limited (the JSON record's coder recurses)."""
    with pytest.raises(ValueError, match=message):
        tg.save(state, tmp_path / "ckpt.npz")
    assert os.listdir(tmp_path) == []


def test_shared_values_and_100_levels_are_fine(tmp_path):
    shared = [1, 2]
    tg.save({"a": shared, "b": shared, "deep": nested(99)}, tmp_path / "ckpt.npz")  # 100 with the outer dict
    back = tg.load(tmp_path / "ckpt.npz")
    assert back["a"] == back["b"] == [1, 2] and back["deep"] == nested(99)


def test_paths_may_be_str_bytes_or_pathlike_and_nothing_else(tmp_path):
    tg.save({"step": 1}, os.fsencode(tmp_path / "bytes.npz"))   # as open() and torch.save take them
    assert tg.load(os.fsencode(tmp_path / "bytes.npz")) == {"step": 1} == tg.load(str(tmp_path / "bytes.npz"))
    for bad in (3, None, ["ckpt.npz"]):
        with pytest.raises(TypeError, match=rf"^save: expected a file path \(str, bytes or os.PathLike\), "
                                            rf"got {type(bad).__name__}$"):
            tg.save({}, bad)
        with pytest.raises(TypeError, match=rf"^load: expected a file path .* got {type(bad).__name__}$"):
            tg.load(bad)
    with pytest.raises(ValueError, match=r"^save: expected a file path, got ''$"):
        tg.save({}, "")
    assert os.listdir(tmp_path) == ["bytes.npz"]


def test_a_missing_directory_is_named_not_the_temporary_file(tmp_path):
    path = tmp_path / "missing" / "x.npz"
    with pytest.raises(FileNotFoundError) as info:
        tg.save({"step": 1}, path)
    message = str(info.value)
    assert f"directory {str(tmp_path / 'missing')!r} does not exist" in message and repr(str(path)) in message
    assert ".tmp" not in message and info.value.filename == str(path) and info.value.errno == errno.ENOENT


def test_an_unwritable_directory_is_named_and_the_previous_checkpoint_kept(tmp_path, monkeypatch):
    """As root (CI containers) chmod cannot make a directory unwritable, so the refusal of the
    temporary file is simulated; test_a_read_only_directory_for_real does the same without root."""
    path = tmp_path / "ckpt.npz"
    tg.save({"step": 1}, path)
    real_open = os.open

    def refuse_temporaries(name, *args, **kwargs):
        if str(name).endswith(".tmp"):
            raise PermissionError(errno.EACCES, "Permission denied", name)
        return real_open(name, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse_temporaries)
    with pytest.raises(PermissionError) as info:
        tg.save({"step": 2}, path)
    monkeypatch.undo()
    message = str(info.value)
    assert message == (f"[Errno 13] save: cannot write the checkpoint: Permission denied (save writes a temporary file "
                       f"in {str(tmp_path)!r} first, then renames it); the previous checkpoint is unchanged: "
                       f"{str(path)!r}")
    assert tg.load(path) == {"step": 1} and os.listdir(tmp_path) == ["ckpt.npz"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs POSIX permissions and a non-root user")
def test_a_read_only_directory_for_real(tmp_path):
    path = tmp_path / "ckpt.npz"
    tg.save({"step": 1}, path)
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match=rf"save: cannot write the checkpoint: .*: {str(path)!r}$"):
            tg.save({"step": 2}, path)
    finally:
        tmp_path.chmod(0o755)
    assert tg.load(path) == {"step": 1}


# --- symbolic links and permissions: as torch.save and np.save ----------------------------------------
posix_only = pytest.mark.skipif(os.name != "posix", reason="symbolic links and permission bits")


@posix_only
def test_save_writes_through_a_symbolic_link_and_keeps_the_mode(tmp_path, monkeypatch):
    runs, links = tmp_path / "runs", tmp_path / "links"
    runs.mkdir()
    links.mkdir()
    target = runs / "run3.npz"
    tg.save({"step": 1}, target)
    target.chmod(0o600)
    latest = links / "latest.npz"
    latest.symlink_to(os.path.join("..", "runs", "run3.npz"))
    chain = tmp_path / "current.npz"
    chain.symlink_to(latest)                                # a link to a link
    renames = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (renames.append((a, b)), real_replace(a, b)))
    tg.save({"step": 2}, latest)
    tg.save({"step": 3}, chain)
    assert latest.is_symlink() and chain.is_symlink() and os.readlink(latest) == os.path.join("..", "runs", "run3.npz")
    assert tg.load(target) == {"step": 3} and tg.load(latest) == {"step": 3}
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    for tmp, dest in renames:                               # the temporary file was made beside the target
        assert os.path.dirname(tmp) == str(runs) and dest == str(target)
    assert sorted(os.listdir(runs)) == ["run3.npz"] and sorted(os.listdir(links)) == ["latest.npz"]


@posix_only
def test_a_failed_save_through_a_link_keeps_link_and_target(tmp_path, monkeypatch):
    target = tmp_path / "run3.npz"
    tg.save({"step": 1}, target)
    before = target.read_bytes()
    link = tmp_path / "latest.npz"
    link.symlink_to("run3.npz")
    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match=rf"simulated: no space left on device; the previous checkpoint is unchanged "
                                      rf"\({str(link)!r}\)"):
        tg.save({"step": 2}, link)
    monkeypatch.undo()
    assert link.is_symlink() and target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["latest.npz", "run3.npz"]


@posix_only
def test_dangling_and_looping_links(tmp_path):
    dangling = tmp_path / "latest.npz"
    dangling.symlink_to("run4.npz")                          # as open(path, "w"): the target is created
    tg.save({"step": 4}, dangling)
    assert dangling.is_symlink() and tg.load(tmp_path / "run4.npz") == {"step": 4}
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(OSError, match=r"symbolic links form a loop") as info:
        tg.save({}, tmp_path / "a")
    assert info.value.errno == errno.ELOOP
    with pytest.raises(IsADirectoryError, match=rf"save: cannot write the checkpoint: it is a directory: "
                                                rf"{str(tmp_path)!r}"):
        tg.save({}, tmp_path)


@posix_only
@pytest.mark.parametrize("mode", [0o600, 0o640, 0o664, 0o644])
def test_an_existing_file_keeps_its_mode_and_a_new_one_gets_the_umask(tmp_path, mode):
    old_umask = os.umask(0o022)
    try:
        path = tmp_path / "ckpt.npz"
        tg.save({"step": 1}, path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o644   # 0666 less the umask, as open() would make it
        path.chmod(mode)
        tg.save({"step": 2}, path)                          # 0664 keeps the group bit the umask would drop
        assert stat.S_IMODE(path.stat().st_mode) == mode and tg.load(path) == {"step": 2}
    finally:
        os.umask(old_umask)


@posix_only
def test_a_read_only_checkpoint_is_not_replaced(tmp_path, monkeypatch):
    """torch.save and np.save open the file for writing, which a read-only file refuses; so does save
    (simulated with os.access, since root may write anything)."""
    path = tmp_path / "ckpt.npz"
    tg.save({"step": 1}, path)
    monkeypatch.setattr(os, "access", lambda p, m: not (str(p) == str(path) and m == os.W_OK))
    with pytest.raises(PermissionError, match=rf"save: cannot write the checkpoint: the file is read-only; the "
                                              rf"previous checkpoint is unchanged: {str(path)!r}"):
        tg.save({"step": 2}, path)
    assert tg.load(path) == {"step": 1}


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


# --- crafted structure records (the digest matches: SHA-256 without a key proves integrity, not origin) ---
def read_entries(path):
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


def write_crafted(path, meta_bytes, arrays):
    """An .npz with the record ``meta_bytes`` and a correct digest over it, as the format documents:
    SHA-256 over the record, then every array's name and bytes in name order."""
    h = hashlib.sha256(meta_bytes)
    for name in sorted(arrays):
        h.update(name.encode("utf-8"))
        h.update(np.ascontiguousarray(arrays[name]).reshape(-1).view(np.uint8))
    np.savez(path, __meta__=np.frombuffer(meta_bytes, dtype=np.uint8),
             __sha256__=np.frombuffer(h.hexdigest().encode("ascii"), dtype=np.uint8), **arrays)


@pytest.fixture
def crafted(saved):
    """(path, meta, arrays, write(meta)) of the saved checkpoint, ready to be rewritten."""
    path, _ = saved
    entries = read_entries(path)
    meta = json.loads(entries.pop("__meta__").tobytes())
    entries.pop("__sha256__")
    return path, meta, entries, lambda m, arrays=entries: write_crafted(path, json.dumps(m).encode(), arrays)


def test_the_crafted_file_writer_makes_loadable_files(crafted, saved):
    path, meta, arrays, write = crafted
    write(meta)
    assert_same(tg.load(path), saved[1])


def set_in(keys, value):
    def change(meta):
        node = meta
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return change


MALFORMED = [  # (change to the record, what the error says)
    (set_in(["arrays", "a0"], 5), r"describes array 'a0' as 5, expected \[dtype, shape\]"),
    (set_in(["version"], True), r"has version True, expected a positive integer"),
    (set_in(["version"], -3), r"has version -3, expected a positive integer"),
    (set_in(["version"], 0), r"has version 0, expected a positive integer"),
    (set_in(["version"], 1.0), r"has version 1.0, expected a positive integer"),
    (set_in(["version"], "1"), r"has version '1', expected a positive integer"),
    (set_in(["arrays"], []), r"lists its arrays as a list, expected an object"),
    (set_in(["arrays", "a0"], ["<f8", [8, -8]]), r"describes array 'a0' as \['<f8', \[8, -8\]\]"),
    (set_in(["arrays", "a0"], ["<f8", [True, 8]]), r"describes array 'a0' as"),
    (set_in(["arrays", "a0"], ["<f8", 64]), r"describes array 'a0' as"),
    (set_in(["arrays", "a0"], [8, [8, 8]]), r"describes array 'a0' as"),
    (set_in(["arrays", "a0"], ["<f8", [8, 8], "x"]), r"describes array 'a0' as"),
    (set_in(["arrays", "a0"], ["<f4", [8, 8]]), r"entry 'a0' is <f8 \[8, 8\], the record says <f4 \[8, 8\]"),
    (set_in(["arrays", "__meta__"], ["|u1", [3]]), r"describes its own entry '__meta__' as an array"),
    (set_in(["structure"], {"array": 5}), r"refers to array 5, which it does not describe"),
    (set_in(["structure"], {"array": "a7"}), r"refers to array 'a7', which it does not describe"),
    (set_in(["structure"], {"dict": 5}), r"holds \{'dict': 5\}, expected"),
    (set_in(["structure"], {"dict": [[1, 2, 3]]}), r"holds the dict item \[1, 2, 3\], expected \[str or int key"),
    (set_in(["structure"], {"dict": [[[1], 2]]}), r"holds the dict item \[\[1\], 2\]"),
    (set_in(["structure"], {"dict": [[True, 2]]}), r"holds the dict item \[True, 2\]"),
    (set_in(["structure"], {"dict": [[1.5, 2]]}), r"holds the dict item \[1.5, 2\]"),
    (set_in(["structure"], {"dict": [["k", 1], ["k", 2]]}), r"holds the dict key 'k' twice"),
    (set_in(["structure"], {"list": [], "tuple": []}), r"expected a value or a one-key object"),
    (set_in(["structure"], {"set": [1]}), r"holds \{'set': \[1\]\}, expected"),
    (set_in(["structure"], []), r"holds \[\], expected a value or a one-key object"),
    (set_in(["structure"], {"list": [{"array": "a0"}, {"array": "a0"}, {"array": "a1"}]}),
     r"refers to array 'a0' twice"),
    (set_in(["structure"], {"list": [{"array": "a0"}]}), r"describes arrays it never uses: \['a1'\]"),
    (set_in(["extra"], 1), r"has keys \['arrays', 'extra', 'format', 'structure', 'version'\]"),
    (lambda m: m.pop("structure"), r"has keys \['arrays', 'format', 'version'\]"),
    (lambda m: m.clear(), "is not a tinygrad_rnn checkpoint \\(format None\\)"),
]


@pytest.mark.parametrize("change, message", MALFORMED, ids=[f"malformed{i}" for i in range(len(MALFORMED))])
def test_a_malformed_record_with_a_matching_digest_raises_checkpoint_error(crafted, change, message):
    path, meta, arrays, write = crafted
    change(meta)
    write(meta)
    with pytest.raises(CheckpointError, match=message) as info:
        tg.load(path)
    assert str(info.value).startswith(str(path))


@pytest.mark.parametrize("record", [b"[1, 2]", b"5", b'"text"', b"null", b"\xff\xfe", b"{", b"",
                                    b"[" * 100000 + b"]" * 100000])
def test_a_record_that_is_not_a_json_object_raises_checkpoint_error(crafted, record):
    path, _, arrays, _ = crafted
    write_crafted(path, record, arrays)
    with pytest.raises(CheckpointError, match=rf"^{path} is corrupted: its structure record \(__meta__\)"):
        tg.load(path)


@pytest.mark.parametrize("depth, loads", [(100, True), (101, False), (5000, False)])
def test_a_deep_record_is_refused_without_recursion_errors(crafted, depth, loads):
    path, _, _, _ = crafted
    record = (b'{"format": "tinygrad_rnn.checkpoint", "version": 1, "arrays": {}, "structure": '
              + b'{"list": [' * depth + b"7" + b"]}" * depth + b"}")
    write_crafted(path, record, {})
    if loads:
        expected = 7
        for _ in range(depth):
            expected = [expected]
        assert tg.load(path) == expected
        return
    with pytest.raises(CheckpointError, match=rf"^{path} is corrupted: its structure record"):
        tg.load(path)


JSON_VALUES = [None, True, False, 0, 1, -3, 2 ** 70, 1.5, float("nan"), "", "a0", "a1", "a9", "dict", "list",
               "tuple", "array", "__meta__", [], {}, [["k", 1]], [[1, 2, 3]], {"array": "a0"}, {"array": 0},
               {"dict": 5}, {"list": {}}, {"tuple": [1]}, {"dict": [["k", {"array": "a1"}]]}, ["<f8", [8, 8]]]


def random_json(rng, depth=0):
    r = rng.random()
    if depth < 3 and r < 0.2:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    if depth < 3 and r < 0.4:
        keys = ["dict", "list", "tuple", "array", "format", "x"]
        return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randrange(3))}
    return copy.deepcopy(rng.choice(JSON_VALUES))


def places(node, where=()):
    yield where
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, child in children:
        yield from places(child, where + (k,))


def test_fuzzed_records_never_escape_checkpoint_error(crafted):
    """Replace, delete or add one to three random parts of a valid record (the digest recomputed):
    every load raises CheckpointError or returns the kinds of value a checkpoint holds."""
    path, meta0, arrays, write = crafted
    rng = random.Random(15)
    outcomes = {"loaded": 0, "refused": 0}
    for trial in range(400):
        meta = copy.deepcopy(meta0)
        for _ in range(rng.randint(1, 3)):
            where = rng.choice(list(places(meta))[1:] or [("x",)])
            parent = meta
            for k in where[:-1]:
                parent = parent[k]
            action = rng.random()
            if action < 0.6 or not isinstance(parent, (dict, list)):
                parent[where[-1]] = random_json(rng)
            elif action < 0.8:
                del parent[where[-1]]
            elif isinstance(parent, dict):
                parent[rng.choice(["extra", "a7", "dict", "array"])] = random_json(rng)
            else:
                parent.append(random_json(rng))
        write(meta)
        try:
            back = tg.load(path)
        except CheckpointError as e:
            assert str(e).startswith(str(path)), e
            outcomes["refused"] += 1
        else:
            stack = [back]
            while stack:                              # only what save itself could have written
                x = stack.pop()
                assert x is None or isinstance(x, (bool, int, float, str, np.ndarray, dict, list, tuple)), trial
                if isinstance(x, dict):
                    assert all(isinstance(k, (str, int)) and not isinstance(k, bool) for k in x)
                    stack.extend(x.values())
                elif isinstance(x, (list, tuple)):
                    stack.extend(x)
            outcomes["loaded"] += 1
    assert outcomes["refused"] > 300 and outcomes["loaded"] > 0, outcomes   # both kinds were exercised


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
