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
* ``load`` checks the whole structure record before it uses any of it: a file
  whose record is malformed (even one with a matching digest: the SHA-256 is not
  keyed, so it proves integrity, not origin) raises ``CheckpointError``.
* ``save`` writes a temporary file in the same directory, flushes it to disk
  (fsync) and renames it over ``path`` (``os.replace``, atomic). A crash or an
  error mid-save leaves the previous checkpoint intact. The temporary file is
  removed when Python can still do so, and otherwise (the process was killed)
  by the next ``save`` to the same path.
* As ``torch.save`` and ``np.save``, ``save`` writes through a symbolic link (the
  link stays, its target gets the new contents; the temporary file is made beside
  the target), keeps an existing file's permission bits (a 0600 checkpoint stays
  0600) and refuses to replace a file the user may not write. Unlike them it
  replaces the file rather than rewriting it in place, so a hard link to the old
  file keeps the old contents, and the new file belongs to the user who saves.
* Errors name the path asked for, never the hidden temporary file; a cycle or
  nesting deeper than ``MAX_DEPTH`` containers is refused with a ValueError.
"""
import errno
import hashlib
import json
import os
import reprlib
import secrets
import stat

from .backend import host as np
from .tensor import Tensor

FORMAT = "tinygrad_rnn.checkpoint"
VERSION = 1
_META, _DIGEST = "__meta__", "__sha256__"
MAX_DEPTH = 100   # containers nested in containers: deeper would overflow the JSON coder's recursion


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be trusted: truncated, corrupted, hostile or not a checkpoint."""


def save(state, path):
    """Write ``state`` (nested dicts/lists of arrays and plain values) to ``path`` atomically.

    ``path``: a str, bytes or os.PathLike (a symbolic link is written through)."""
    path = _as_path("save", path)
    arrays = {}
    structure = _encode(state, arrays, "state", ())
    meta = {"format": FORMAT, "version": VERSION, "structure": structure,
            "arrays": {name: [a.dtype.str, list(a.shape)] for name, a in arrays.items()}}
    meta_bytes = json.dumps(meta).encode("utf-8")
    entries = {_META: np.frombuffer(meta_bytes, dtype=np.uint8),
               _DIGEST: np.frombuffer(_digest(meta_bytes, arrays).encode("ascii"), dtype=np.uint8),
               **arrays}
    target = _link_target(path)           # the file to replace: path, or what the link at path points to
    directory, name = os.path.split(os.path.abspath(target))
    if os.path.isdir(target):
        raise IsADirectoryError(errno.EISDIR, "save: cannot write the checkpoint: it is a directory", path)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)  # an existing file keeps its permissions
    except OSError:
        mode = None                                   # a new file: 0666 less the umask, as open() makes it
    if mode is not None and not os.access(target, os.W_OK):  # renaming could replace it: refuse as open() would
        raise PermissionError(errno.EACCES, "save: cannot write the checkpoint: the file is read-only; the "
                                            "previous checkpoint is unchanged", path)
    _remove_stale_temporaries(directory, name)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        # made with the old file's mode at most (the umask applies), so a 0600 file's new contents are
        # never readable by others, not even for a moment
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else mode)
    except OSError as e:
        raise _save_error(e, path, target, directory) from e
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **entries)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the new name points at it
        if mode is not None:
            try:
                os.chmod(tmp, mode)   # exactly the old mode (e.g. bits the umask took away)
            except OSError:
                pass                  # a file system without permission bits
        os.replace(tmp, target)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise _save_error(e, path, target, directory) from e
        raise
    _fsync_directory(directory)  # and the rename itself survives a power cut


def load(path):
    """Read a checkpoint written by ``save``; arrays come back as NumPy arrays.

    Raises FileNotFoundError for a missing file and CheckpointError (naming the
    file) for anything else that is wrong with it."""
    path = _as_path("load", path)
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
        except (ValueError, RecursionError) as e:  # (UnicodeDecodeError is a ValueError)
            raise CheckpointError(f"{path} is corrupted: its structure record ({_META}) is unreadable "
                                  f"({type(e).__name__}: {e})") from e
        structure, records = _check_record(meta, path)
        expected = set(records) | {_META, _DIGEST}
        if names != expected:
            raise CheckpointError(f"{path} is corrupted: entries {sorted(expected - names)} are missing and "
                                  f"{sorted(names - expected)} are unexpected")
        arrays = {}
        for name in sorted(records):
            a = _read(npz, name, path)
            dtype, shape = records[name]
            if a.dtype.str != dtype or list(a.shape) != shape:
                raise CheckpointError(f"{path} is corrupted: entry {name!r} is {a.dtype.str} {list(a.shape)}, "
                                      f"the record says {dtype} {shape}")
            arrays[name] = a
    if _digest(meta_bytes, arrays) != stored_digest:
        raise CheckpointError(f"{path} is corrupted: its SHA-256 checksum does not match its contents")
    return _decode(structure, arrays)


# --- the structure record ------------------------------------------------------------
# Plain values are JSON values; every container or array is a one-key JSON object:
#   {"dict": [[key, value], ...]}  {"list": [...]}  {"tuple": [...]}  {"array": "a3"}
def _encode(x, arrays, where, inside):
    """The JSON node of ``x``; its arrays go into ``arrays``. ``inside``: the ids of the containers
    that hold ``x`` (to refuse a container that contains itself, and nesting beyond MAX_DEPTH)."""
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, (int, float)):
        return x if type(x) in (int, float) else (int(x) if isinstance(x, int) else float(x))
    if isinstance(x, np.generic) and x.dtype.kind in "biuf":
        return x.item()  # a NumPy scalar becomes the Python number
    if isinstance(x, (dict, list, tuple)):
        if id(x) in inside:
            raise ValueError(f"save: {where} contains itself (a reference cycle); a checkpoint holds a tree of "
                             f"values, not a graph")
        if len(inside) == MAX_DEPTH:
            raise ValueError(f"save: the state is nested more than {MAX_DEPTH} containers deep (at {where[:200]}"
                             f"{'...' if len(where) > 200 else ''}); checkpoints hold at most {MAX_DEPTH} levels")
        inside = inside + (id(x),)
    if isinstance(x, dict):
        items = []
        for k, v in x.items():
            if isinstance(k, bool) or not isinstance(k, (str, int)):
                raise TypeError(f"save: dict keys must be str or int, got {type(k).__name__} {k!r} in {where}")
            items.append([int(k) if not isinstance(k, str) else k, _encode(v, arrays, f"{where}[{k!r}]", inside)])
        return {"dict": items}
    if isinstance(x, (list, tuple)):
        tag = "list" if isinstance(x, list) else "tuple"
        return {tag: [_encode(v, arrays, f"{where}[{i}]", inside) for i, v in enumerate(x)]}
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
    """The value of a node that ``_check_record`` has accepted."""
    if not isinstance(node, dict):
        return node
    (tag, body), = node.items()
    if tag == "dict":
        return {k: _decode(v, arrays) for k, v in body}
    if tag == "list":
        return [_decode(v, arrays) for v in body]
    if tag == "tuple":
        return tuple(_decode(v, arrays) for v in body)
    return arrays[body]


def _check_record(meta, path):
    """(structure, {array name: [dtype, shape]}) of a parsed ``__meta__`` record, after checking
    all of it: anything save would not have written raises CheckpointError. The walk over the
    structure uses an explicit stack, so a deep record cannot overflow Python's."""
    def corrupted(what):
        return CheckpointError(f"{path} is corrupted: its structure record ({_META}) {what}")

    if not isinstance(meta, dict):
        raise corrupted(f"is a JSON {type(meta).__name__}, expected an object")
    fmt, version = meta.get("format"), meta.get("version")
    if fmt != FORMAT:
        raise CheckpointError(f"{path} is not a tinygrad_rnn checkpoint (format {_brief(fmt)})")
    if type(version) is not int or version < 1:
        raise corrupted(f"has version {_brief(version)}, expected a positive integer")
    if version > VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {version}; this tinygrad_rnn "
                              f"reads versions up to {VERSION}: upgrade tinygrad_rnn")
    keys = {"format", "version", "structure", "arrays"}
    if set(meta) != keys:
        raise corrupted(f"has keys {_brief(sorted(meta))}, expected {sorted(keys)}")
    records = meta["arrays"]
    if not isinstance(records, dict):
        raise corrupted(f"lists its arrays as a {type(records).__name__}, expected an object")
    for name, record in records.items():
        if name in (_META, _DIGEST):
            raise corrupted(f"describes its own entry {name!r} as an array")
        if not (isinstance(record, list) and len(record) == 2 and isinstance(record[0], str)
                and isinstance(record[1], list) and all(type(n) is int and n >= 0 for n in record[1])):
            raise corrupted(f"describes array {name!r} as {_brief(record)}, expected [dtype, shape] "
                            f"(a dtype string and a list of sizes)")
    used = set()
    stack = [(meta["structure"], 1)]
    while stack:
        node, depth = stack.pop()
        if node is None or isinstance(node, (bool, int, float, str)):
            continue
        if not (isinstance(node, dict) and len(node) == 1):
            raise corrupted(f"holds {_brief(node)}, expected a value or a one-key object")
        if depth > MAX_DEPTH:
            raise corrupted(f"nests more than {MAX_DEPTH} containers")
        (tag, body), = node.items()
        if tag == "array":
            if not isinstance(body, str) or body not in records:
                raise corrupted(f"refers to array {_brief(body)}, which it does not describe")
            if body in used:
                raise corrupted(f"refers to array {body!r} twice")
            used.add(body)
            continue
        if tag not in ("dict", "list", "tuple") or not isinstance(body, list):
            raise corrupted(f"holds {_brief(node)}, expected {{'dict'|'list'|'tuple': [...]}} or "
                            f"{{'array': name}}")
        if tag == "dict":
            seen = set()
            for pair in body:
                if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], (str, int))
                        and not isinstance(pair[0], bool)):
                    raise corrupted(f"holds the dict item {_brief(pair)}, expected [str or int key, value]")
                if pair[0] in seen:
                    raise corrupted(f"holds the dict key {_brief(pair[0])} twice")
                seen.add(pair[0])
            stack.extend((pair[1], depth + 1) for pair in body)
        else:
            stack.extend((item, depth + 1) for item in body)
    if used != set(records):
        raise corrupted(f"describes arrays it never uses: {_brief(sorted(set(records) - used))}")
    return meta["structure"], records


def _brief(x):
    """A short repr of part of a record for an error message (reprlib cuts depth and length)."""
    return reprlib.repr(x)


# --- file helpers -----------------------------------------------------------------------
def _as_path(who, path):
    """A str path from a str, bytes or os.PathLike (what open() takes), or a clear error."""
    try:
        path = os.fsdecode(path)
    except TypeError:
        raise TypeError(f"{who}: expected a file path (str, bytes or os.PathLike), got "
                        f"{type(path).__name__}") from None
    if not path or "\0" in path:
        raise ValueError(f"{who}: expected a file path, got {path!r}")
    return path


def _link_target(path):
    """The file that writing to ``path`` changes: ``path`` itself, or the end of the chain of
    symbolic links that starts there (it need not exist yet, as with open(path, "w"))."""
    if not os.path.islink(path):
        return path
    target = os.path.realpath(path)
    if os.path.islink(target):  # realpath stops where links go round in a loop
        raise OSError(errno.ELOOP, "save: cannot write the checkpoint: its symbolic links form a loop", path)
    return target


def _save_error(e, path, target, directory):
    """The OSError ``e`` raised while saving to ``path``, again, naming ``path`` rather than the
    temporary file beside it (same class and errno, so callers can still catch e.g. PermissionError)."""
    reason = e.strerror or str(e)
    if isinstance(e, FileNotFoundError) and not os.path.isdir(directory):
        reason = f"directory {directory!r} does not exist"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason += f" (save writes a temporary file in {directory!r} first, then renames it)"
    message = f"save: cannot write the checkpoint: {reason}"
    if os.path.isfile(target):
        message += "; the previous checkpoint is unchanged"
    if e.errno is None:
        return type(e)(f"{message} ({path!r})")
    return type(e)(e.errno, message, path)


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


__all__ = ["save", "load", "CheckpointError", "FORMAT", "VERSION", "MAX_DEPTH"]
