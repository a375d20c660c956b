"""Checkpoints: ``save(state, path)`` and ``load(path)``, one ``.npz`` file and never pickle.

    tg.save({"model": model.state_dict(), "optim": opt.state_dict(), "step": step,
             "rng": tg.backend.get_rng_state()}, "ckpt.npz")
    ckpt = tg.load("ckpt.npz")
    model.load_state_dict(ckpt["model"]); opt.load_state_dict(ckpt["optim"])
    tg.backend.set_rng_state(ckpt["rng"])

What a checkpoint may hold: dicts (keys ``str`` or ``int``), lists, tuples,
``None``, bools, ints (any size), floats (also nan/inf), strings, and arrays:
NumPy arrays, Tensors and backend arrays of numbers or bools. Arrays come back
as host NumPy arrays, whatever they were saved as (a Tensor comes back as the
NumPy array of its data); NumPy scalars come back as Python numbers.

The file is a NumPy ``.npz`` (a zip of ``.npy`` arrays) with two extra entries:
``__meta__``, a JSON record of the format, its version, the nested structure and
every array's dtype and shape, and ``__sha256__``, a SHA-256 digest over the
record and the bytes of every array. ``load`` checks all of it, so a truncated
or corrupted file raises ``CheckpointError`` naming the file, not garbage.

Safety:
* Nothing is ever unpickled: NumPy is always called with ``allow_pickle=False``,
  so a crafted file with an object array is refused before any of it is read.
* ``save`` writes a temporary file in the same directory, flushes it to disk
  (fsync) and renames it over ``path`` (``os.replace``, atomic). A crash or an
  error mid-save leaves the previous checkpoint intact. The temporary file is
  removed when Python can still do so, and otherwise (the process was killed)
  by the next ``save`` to the same path.
"""
import hashlib
import json
import os
import secrets

from .backend import host as np
from .tensor import Tensor

FORMAT = "tinygrad_rnn.checkpoint"
VERSION = 1
_META, _DIGEST = "__meta__", "__sha256__"


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be trusted: truncated, corrupted, hostile or not a checkpoint."""


def save(state, path):
    """Write ``state`` (nested dicts/lists of arrays and plain values) to ``path`` atomically."""
    path = os.fspath(path)
    arrays = {}
    structure = _encode(state, arrays, "state")
    meta = {"format": FORMAT, "version": VERSION, "structure": structure,
            "arrays": {name: [a.dtype.str, list(a.shape)] for name, a in arrays.items()}}
    meta_bytes = json.dumps(meta).encode("utf-8")
    entries = {_META: np.frombuffer(meta_bytes, dtype=np.uint8),
               _DIGEST: np.frombuffer(_digest(meta_bytes, arrays).encode("ascii"), dtype=np.uint8),
               **arrays}
    directory = os.path.dirname(os.path.abspath(path))
    _remove_stale_temporaries(directory, os.path.basename(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **entries)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the new name points at it
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_directory(directory)  # and the rename itself survives a power cut


def load(path):
    """Read a checkpoint written by ``save``; arrays come back as NumPy arrays.

    Raises FileNotFoundError for a missing file and CheckpointError (naming the
    file) for anything else that is wrong with it."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load: no checkpoint at {path}")
    try:
        npz = np.load(path, allow_pickle=False)
    except ValueError as e:  # NumPy took it for a pickle
        with open(path, "rb") as f:
            head = f.read(4)
        if b"PK\x03\x04".startswith(head):  # the first bytes of a zip, cut short
            raise CheckpointError(f"{path} is truncated or corrupted (only {len(head)} bytes)") from e
        raise CheckpointError(f"{path} is not a tinygrad_rnn checkpoint (not an .npz file; pickled "
                              f"files are refused): {e}") from e
    except Exception as e:  # zipfile.BadZipFile, EOFError, OSError...
        raise CheckpointError(f"{path} is truncated or corrupted (not a readable .npz file): "
                              f"{type(e).__name__}: {e}") from e
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise CheckpointError(f"{path} is not a tinygrad_rnn checkpoint: it holds a single .npy array, "
                              f"expected an .npz archive")
    with npz:
        names = set(npz.files)
        if _META not in names or _DIGEST not in names:
            raise CheckpointError(f"{path} is not a tinygrad_rnn checkpoint: no {_META}/{_DIGEST} entries "
                                  f"(entries: {', '.join(sorted(names)[:10])})")
        meta_bytes = _read(npz, _META, path).tobytes()
        stored_digest = _read(npz, _DIGEST, path).tobytes().decode("ascii", "replace")
        try:
            meta = json.loads(meta_bytes.decode("utf-8"))
            fmt, version, structure, records = meta["format"], meta["version"], meta["structure"], meta["arrays"]
        except (ValueError, KeyError, TypeError, RecursionError) as e:
            raise CheckpointError(f"{path} is corrupted: its structure record ({_META}) is unreadable "
                                  f"({type(e).__name__}: {e})") from e
        if fmt != FORMAT:
            raise CheckpointError(f"{path} is not a tinygrad_rnn checkpoint (format {fmt!r})")
        if not isinstance(version, int) or version > VERSION:
            raise CheckpointError(f"{path} has checkpoint format version {version}; this tinygrad_rnn "
                                  f"reads versions up to {VERSION}: upgrade tinygrad_rnn")
        expected = set(records) | {_META, _DIGEST}
        if names != expected:
            raise CheckpointError(f"{path} is corrupted: entries {sorted(expected - names)} are missing and "
                                  f"{sorted(names - expected)} are unexpected")
        arrays = {}
        for name in sorted(records):
            a = _read(npz, name, path)
            dtype, shape = records[name]
            if a.dtype.str != dtype or list(a.shape) != list(shape):
                raise CheckpointError(f"{path} is corrupted: entry {name!r} is {a.dtype.str} {list(a.shape)}, "
                                      f"the record says {dtype} {shape}")
            arrays[name] = a
    if _digest(meta_bytes, arrays) != stored_digest:
        raise CheckpointError(f"{path} is corrupted: its SHA-256 checksum does not match its contents")
    try:
        return _decode(structure, arrays)
    except (KeyError, TypeError, ValueError, RecursionError) as e:
        raise CheckpointError(f"{path} is corrupted: bad structure record ({type(e).__name__}: {e})") from e


# --- the structure record ------------------------------------------------------------
# Plain values are JSON values; every container or array is a one-key JSON object:
#   {"dict": [[key, value], ...]}  {"list": [...]}  {"tuple": [...]}  {"array": "a3"}
def _encode(x, arrays, where):
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, (int, float)):
        return x if type(x) in (int, float) else (int(x) if isinstance(x, int) else float(x))
    if isinstance(x, np.generic) and x.dtype.kind in "biuf":
        return x.item()  # a NumPy scalar becomes the Python number
    if isinstance(x, dict):
        items = []
        for k, v in x.items():
            if isinstance(k, bool) or not isinstance(k, (str, int)):
                raise TypeError(f"save: dict keys must be str or int, got {type(k).__name__} {k!r} in {where}")
            items.append([int(k) if not isinstance(k, str) else k, _encode(v, arrays, f"{where}[{k!r}]")])
        return {"dict": items}
    if isinstance(x, (list, tuple)):
        tag = "list" if isinstance(x, list) else "tuple"
        return {tag: [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(x)]}
    a = _host_array(x, where)
    name = f"a{len(arrays)}"
    arrays[name] = a
    return {"array": name}


def _host_array(x, where):
    """A host NumPy copy of a NumPy array, Tensor or backend array; refuse anything else."""
    if isinstance(x, Tensor):
        a = x.numpy()
    elif isinstance(x, np.ndarray):
        a = x
    elif hasattr(x, "__array_namespace__"):
        a = x.get() if hasattr(x, "get") else np.asarray(x)  # CuPy arrays copy to the host with get()
    else:
        raise TypeError(f"save: cannot store a {type(x).__name__} at {where}: expected dicts, lists, tuples, "
                        f"None, bools, numbers, strings, NumPy arrays or Tensors")
    if a.dtype.kind not in "biufc":
        raise TypeError(f"save: cannot store an array of dtype {a.dtype} at {where}: expected numbers or bools "
                        f"(object arrays would need pickle)")
    return a if a.flags.c_contiguous else a.copy(order="C")  # (ascontiguousarray would make 0-d 1-d)


def _decode(node, arrays):
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if not isinstance(node, dict) or len(node) != 1:
        raise ValueError(f"unexpected node {str(node)[:80]}")
    (tag, body), = node.items()
    if tag == "dict":
        return {k: _decode(v, arrays) for k, v in body}
    if tag == "list":
        return [_decode(v, arrays) for v in body]
    if tag == "tuple":
        return tuple(_decode(v, arrays) for v in body)
    if tag == "array":
        return arrays[body]
    raise ValueError(f"unknown tag {tag!r}")


# --- file helpers -----------------------------------------------------------------------
def _digest(meta_bytes, arrays):
    """SHA-256 over the structure record and every array's name and bytes."""
    h = hashlib.sha256(meta_bytes)
    for name in sorted(arrays):
        h.update(name.encode("utf-8"))
        h.update(np.ascontiguousarray(arrays[name]).reshape(-1).view(np.uint8))
    return h.hexdigest()


def _read(npz, name, path):
    try:
        return npz[name]
    except ValueError as e:
        if "pickle" in str(e):
            raise CheckpointError(f"{path}: refusing entry {name!r}: it is a pickled object array, which could "
                                  f"run code when loaded (checkpoints are read with allow_pickle=False)") from e
        raise CheckpointError(f"{path} is corrupted: entry {name!r} is unreadable ({e})") from e
    except Exception as e:  # a bad CRC, a truncated member...
        raise CheckpointError(f"{path} is corrupted: entry {name!r} is unreadable "
                              f"({type(e).__name__}: {e})") from e


def _remove_stale_temporaries(directory, name):
    """Delete the temporary files of earlier saves to ``name`` whose process died mid-save
    (killed, power cut), so repeated crashes do not fill the disk. POSIX only."""
    if os.name != "posix":
        return
    prefix = f".{name}."
    try:
        candidates = [f for f in os.listdir(directory) if f.startswith(prefix) and f.endswith(".tmp")]
    except OSError:
        return
    for f in candidates:
        pid = f[len(prefix):-len(".tmp")].split(".")[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
            continue              # alive (or its pid was reused): leave its file alone
        except ProcessLookupError:
            pass
        except OSError:           # e.g. alive but owned by another user
            continue
        try:
            os.unlink(os.path.join(directory, f))
        except OSError:
            pass


def _fsync_directory(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows, where directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = ["save", "load", "CheckpointError", "FORMAT", "VERSION"]
