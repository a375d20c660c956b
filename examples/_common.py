"""Small helpers shared by every example in ``examples/``.

Each example is one file a student reads top to bottom; this module holds only
the plumbing they would otherwise all repeat. The conventions:

* every example takes ``--device cpu|cuda`` (cuda = the CuPy backend),
  ``--seed N``, ``--quick`` (a few seconds, used by the tests) and
  ``--out DIR`` (default ``out/<example name>``, git-ignored);
* its pictures and logs go under that directory;
* text examples train on the embedded corpus: the Python standard library's own
  source files, found from the running interpreter, so nothing is downloaded.

Typical use (run as ``python examples/foo.py``; the script's directory is on
``sys.path``, so ``import _common`` just works). Import it first, before numpy:
it limits BLAS to one thread (see below) and puts this checkout on ``sys.path``::

    from _common import fill_defaults, make_parser, positive_int, setup

    DEFAULTS = dict(steps=500)
    QUICK = dict(steps=50)     # what --quick changes; an option given on the command line wins

    parser = make_parser(__doc__, out="out/foo")
    parser.add_argument("--steps", type=positive_int, help="training steps (default: 500; --quick: 50)")
    args = fill_defaults(parser.parse_args(), DEFAULTS, QUICK)
    out = setup(args)          # seeds, selects the device, creates ``out``

API (stable: other examples import it)::

    make_parser(description, out)      argparse parser with the common options
    add_common_args(parser, out)       add --device/--seed/--quick/--out to an existing parser
    setup(args) -> pathlib.Path        seed_everything + set_device + make_out_dir
    seed_everything(seed)              tg.manual_seed, random.seed, np.random.seed
    set_device(device) -> str          "cpu"/"cuda" -> backend name; clear error if CuPy/GPU missing
    make_out_dir(path) -> pathlib.Path mkdir -p
    stdlib_files() -> list[Path]       the corpus files (pure-ASCII top-level stdlib *.py, sorted)
    stdlib_corpus(max_chars=None)      their concatenated text
    read_text(path)                    a UTF-8 text file, with clear errors
    load_corpus(path=None, max_chars=None) -> (text, description)
    progress(iterable=None, **kw)      a tqdm progress bar (a plain fallback without tqdm)
    write_json(path, obj)              pretty JSON, written atomically
    save_picture(picture, path)        write a visualize picture; without Graphviz, its .gv source
                                       and (once) how to install Graphviz, and carry on
    graphviz_missing(note)             print ``note`` and (once) the install hint
    fail(message)                      exit with "error: message" (status 2), no traceback
    positive_int, non_negative_int, positive_float, probability
                                       argparse ``type=`` checkers with clear messages
    fill_defaults(args, defaults, quick)
                                       options left unset (None) get their --quick or normal default
    seconds(s) -> str                  "0.42 s", "3.1 s", "95 s": a duration, readably
"""
import argparse
import json
import os
import pathlib
import random
import sys
import sysconfig

# One BLAS thread (unless the user set it). The examples multiply small matrices, e.g. (32, 128) @ (128, 512):
# a second thread costs more to synchronise than it saves, and on a busy machine (tests running in
# parallel) a spinning BLAS thread can make every step several times slower. Read when NumPy loads,
# so import _common before numpy.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402  (after the thread setting)

# Run from a source checkout, the examples use the checkout's tinygrad_rnn and visualize, installed or
# not (and even when an older editable install registered a package differently).
ROOT = pathlib.Path(__file__).resolve().parents[1]
if (ROOT / "tinygrad_rnn").is_dir() and str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import tinygrad_rnn as tg  # noqa: E402  (after the path above)

DEVICES = {"cpu": "numpy", "cuda": "cupy"}


# --- command line -------------------------------------------------------------------------
def make_parser(description, out):
    """An ``argparse.ArgumentParser`` with the common options already added.

    ``description``: usually the example's ``__doc__``, shown by ``--help`` as written.
    ``out``: the default output directory, e.g. ``"out/char_rnn"``."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, out)
    return parser


def add_common_args(parser, out):
    """Add ``--device``, ``--seed``, ``--quick`` and ``--out`` to ``parser`` (also a subparser)."""
    parser.add_argument("--device", choices=sorted(DEVICES), default="cpu",
                        help="cpu (NumPy) or cuda (CuPy on an NVIDIA GPU) (default: cpu)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--quick", action="store_true",
                        help="a tiny run that takes a few seconds (used by the tests)")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path(out),
                        help=f"output directory for pictures and logs (default: {out})")
    return parser


def setup(args):
    """Seed, select the device and create the output directory; returns ``args.out`` as a Path."""
    seed_everything(args.seed)
    set_device(args.device)
    return make_out_dir(args.out)


def fail(message):
    """Stop the program with ``error: message`` on stderr and exit status 2 (as argparse does)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def positive_int(text):
    """argparse type: an int >= 1 (``--steps 0`` is refused with a message saying what is expected)."""
    return _number(text, int, lambda v: v >= 1, "a positive integer")


def non_negative_int(text):
    """argparse type: an int >= 0."""
    return _number(text, int, lambda v: v >= 0, "an integer >= 0")


def positive_float(text):
    """argparse type: a finite float > 0."""
    return _number(text, float, lambda v: 0 < v < float("inf"), "a positive number")


def probability(text):
    """argparse type: a float in [0, 1) (a dropout rate, a validation fraction)."""
    return _number(text, float, lambda v: 0 <= v < 1, "a number in [0, 1)")


def fill_defaults(args, defaults, quick=None):
    """Give every option that was not on the command line (still None) its default: from
    ``quick`` when ``--quick`` is on and it has one, else from ``defaults``. So
    ``--quick --steps 3`` runs 3 steps: what the user typed always wins. Returns ``args``."""
    values = dict(defaults, **(quick or {})) if args.quick else defaults
    for name, value in values.items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    return args


def _number(text, kind, ok, expected):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


# --- reproducibility and devices ---------------------------------------------------------------
def seed_everything(seed):
    """Seed every random generator an example may touch: the engine's, Python's and NumPy's global one."""
    tg.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def set_device(device):
    """Make ``device`` ("cpu" or "cuda"; also a backend name) the default for new tensors.

    Returns the backend name ("numpy" or "cupy"). Without CuPy or a GPU, exits with
    a message that says what is missing."""
    name = DEVICES.get(device, device)
    try:
        tg.set_backend(name)
    except (RuntimeError, ValueError) as e:
        fail(f"--device {device}: {e}")
    return name


def make_out_dir(path):
    """Create ``path`` (and its parents) if needed; returns it as a Path."""
    path = pathlib.Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        fail(f"cannot create the output directory {path}: {e}")
    return path


# --- text corpora --------------------------------------------------------------------------
def stdlib_files():
    """The embedded corpus: the pure-ASCII top-level ``*.py`` files of the running
    interpreter's standard library, in sorted order (about 160 files, 4.4 MB, ~96
    distinct characters on CPython 3.11). Same interpreter, same corpus."""
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    return [f for f in sorted(root.glob("*.py")) if f.read_bytes().isascii()]


def stdlib_corpus(max_chars=None):
    """The concatenated text of ``stdlib_files()``, cut to ``max_chars`` if given.

    Like the notes' char-RNN reading the Linux kernel's C, the model reads one long
    stream of source code; files follow each other, each ending with a newline."""
    parts, n = [], 0
    for f in stdlib_files():
        text = f.read_text(encoding="ascii")
        if not text.endswith("\n"):
            text += "\n"
        parts.append(text)
        n += len(text)
        if max_chars is not None and n >= max_chars:
            break
    text = "".join(parts)
    return text if max_chars is None else text[:max_chars]


def read_text(path):
    """Read a UTF-8 text file; a missing, unreadable, non-UTF-8 or empty file stops with a clear error."""
    path = pathlib.Path(path)
    if not path.exists():
        fail(f"no such file: {path}")
    if not path.is_file():
        fail(f"{path} is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        fail(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})")
    except OSError as e:
        fail(f"cannot read {path}: {e}")
    if not text:
        fail(f"{path} is empty")
    return text


def load_corpus(path=None, max_chars=None):
    """``(text, description)``: the file at ``path``, or the embedded stdlib corpus when ``path`` is None."""
    if path is None:
        text = stdlib_corpus(max_chars)
        return text, f"Python {sys.version.split()[0]} standard library ({len(text):,} chars)"
    text = read_text(path)
    if max_chars is not None:
        text = text[:max_chars]
    return text, f"{path} ({len(text):,} chars)"


# --- output -----------------------------------------------------------------------------------
def progress(iterable=None, **kwargs):
    """A tqdm progress bar (same arguments as ``tqdm.tqdm``); without tqdm, a silent stand-in
    with the methods the examples use (``update``, ``set_postfix``, ``write``, ``close``)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar(iterable)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)


class _NoBar:
    def __init__(self, iterable):
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n=1):
        pass

    def set_postfix(self, *args, **kwargs):
        pass

    def set_description(self, *args, **kwargs):
        pass

    def close(self):
        pass

    @staticmethod
    def write(s):
        print(s)


def seconds(s):
    """A duration for people: "0.42 s", "3.1 s", "95 s" (never "0 s" for a quick run)."""
    return f"{s:.2f} s" if s < 1 else f"{s:.1f} s" if s < 10 else f"{s:.0f} s"


# --- pictures -------------------------------------------------------------------------------
GRAPHVIZ_HINT = ("Graphviz's `dot` program is not installed, so the pictures are written as DOT source (.gv) "
                 "only. To draw them, install Graphviz (sudo apt-get install graphviz; macOS: brew install "
                 "graphviz) and run this again.")
_hint_shown = False


def graphviz_missing(note):
    """Say what could not be drawn (``note``) and, the first time, how to install Graphviz."""
    global _hint_shown
    if not _hint_shown:
        print(GRAPHVIZ_HINT)
        _hint_shown = True
    print(note)


def save_picture(picture, path):
    """Write a visualize picture (a graphviz Digraph) to ``path`` (.svg, .png, .pdf); the DOT
    source ``.gv`` is always written next to it. Without Graphviz's ``dot`` only the ``.gv`` is
    written: say so, print how to install Graphviz (once), and carry on. Returns the path written."""
    import visualize as viz
    path = pathlib.Path(path)
    try:
        return pathlib.Path(viz.save(picture, path))
    except viz.GraphvizNotFound:
        source = path.with_suffix(".gv")            # viz.save writes it before calling dot
        if not source.exists():
            source.write_text(picture.source, encoding="utf-8")
        graphviz_missing(f"  no {path.name}: wrote its DOT source {source}")
        return source


def write_json(path, obj):
    """Write ``obj`` as indented JSON to ``path`` atomically (a temporary file, then a rename)."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


__all__ = ["make_parser", "add_common_args", "setup", "fail", "seed_everything", "set_device",
           "make_out_dir", "stdlib_files", "stdlib_corpus", "read_text", "load_corpus", "progress",
           "write_json", "positive_int", "non_negative_int", "positive_float", "probability", "DEVICES",
           "fill_defaults", "seconds", "save_picture", "graphviz_missing", "GRAPHVIZ_HINT"]
