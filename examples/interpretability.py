"""Searching for interpretable cells in a character-level LSTM, as in the lecture notes and
Karpathy, Johnson and Fei-Fei (2016), "Visualizing and understanding recurrent networks".

    python examples/interpretability.py                  # train ~2 minutes, then look inside
    python examples/interpretability.py --checkpoint out/char_rnn/checkpoint.npz   # a char_rnn.py model
    python examples/interpretability.py --quick          # a few seconds

A char-LSTM trained to predict the next character of Python source (the
embedded corpus of ``char_rnn.py``: the standard library's own files) has no
notion of strings, lines or blocks: it only ever sees characters. Yet to predict
well it must keep track of them: after an opening quote, anything goes until the
closing one; after a newline, the indentation of the previous line is a good
guess. Some of its cells end up doing exactly that.

How we look. Run the trained model over held-out source files (not used for
training) and record every cell's value after each character: tanh(c_t) for an
LSTM, as in the paper (h_t for a GRU or vanilla RNN). Label each character with
properties of the text, computed independently of the model:

* in_string:   1 inside a string literal (from the opening quote up to, not
               including, the closing one), else 0; found with Python's own
               ``tokenize`` module, so triple quotes, escapes, prefixes and
               comments are handled the way Python handles them;
* in_prose:    1 inside a string or a comment: where people write English;
* column:      the position in the line (0 right after a newline);
* indentation: the leading spaces of the current line read so far.

For every label, the cells whose values correlate most (Pearson's r, by
absolute value) are printed, and the best one is drawn as a heatmap over the
text: ``<label>_cell<k>.png`` (an excerpt) and ``.html`` (a longer stretch),
blue for -1, white for 0, orange for +1 (a cell with negative r is drawn with
its sign flipped). ``results.json`` holds the numbers.

A control. Some correlation comes for free: even an untrained cell reacts to
letters, or adds up the characters of a line. So the same network before
training (its initial random weights) is analysed too, and its best |r| printed
next to the trained one's; where the trained cell does no better, it says so.
For a ``--checkpoint`` the initial weights are rebuilt from the seed char_rnn.py
drew them with (when the checkpoint was trained on the same device); otherwise
the control is a network of the same shape with other random weights.

What to expect. Correlation is a blunt tool, and a model trained for two
minutes is young. Its clearest cells track the column (|r| about 0.7) and
"prose", strings and comments together (about 0.8): the model has learnt that
English words live there. A cell for strings alone, as clean as the paper's
quote cell, needs larger models trained far longer (as in the paper); after two
minutes the best in_string cell is at about 0.35-0.45, mostly because
docstrings are strings. A 256-cell model trained for 10 minutes with
``char_rnn.py --hidden 256 --lr 0.01 --minutes 10`` (1.25 nats/char) does
better: in_string 0.57, indentation 0.74 (an untrained network, initialised
differently: 0.21 and 0.12). A few seconds (``--quick``) give little or nothing
beyond the control: that mode only checks that everything runs.
"""
import io
import math
import time
import tokenize

import _common  # first: one BLAS thread, and this checkout's tinygrad_rnn and visualize on the path
import numpy as np
import tinygrad_rnn as tg
from _common import positive_float, positive_int
from tinygrad_rnn import nn
from tinygrad_rnn.data import CharVocab, batchify, tbptt_batches
from tinygrad_rnn.nn import functional as F

from char_rnn import CharRNN, detach, initial_model, load_checkpoint, model_from_checkpoint

DEFAULTS = dict(hidden=128, seq_len=64, batch=32, lr=2e-2, minutes=1.75, chars=20_000, max_chars=None)
QUICK = dict(hidden=64, seq_len=32, batch=16, lr=1e-2, minutes=None, steps=60, chars=4_000, max_chars=400_000)
LABELS = ("in_string", "in_prose", "column", "indentation")
STREAMS = 8              # the analysis text is read as 8 pieces side by side (8x fewer sequential steps)
EXCERPT = 800            # characters in the PNG heatmaps (every character is drawn as text: slow);
QUICK_EXCERPT = 200      # --quick: 200
HTML_CHARS = 5000        # and in the HTML pages


# ============================================================================ labels
def string_and_comment_masks(source):
    """(in_string, in_comment): 0/1 per character of the Python ``source``.

    in_string: after reading this character a string literal is open, i.e. from the
    opening quote up to the character before the closing quote(s). Prefixes (r, b, f)
    count as outside: nothing yet says a string begins. in_comment: from ``#`` to the
    end of its line (the newline excluded). Found with ``tokenize``, so a quote in a
    comment or a ``#`` in a string is what Python says it is. Raises
    tokenize.TokenError or SyntaxError on source that does not tokenize."""
    line_starts = [0]
    for line in source.splitlines(keepends=True):
        line_starts.append(line_starts[-1] + len(line))
    offset = lambda row_col: line_starts[row_col[0] - 1] + row_col[1]
    in_string = np.zeros(len(source), dtype=np.int64)
    in_comment = np.zeros(len(source), dtype=np.int64)
    open_fstrings = []     # Python 3.12+ splits f-strings into FSTRING_START ... FSTRING_END
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.STRING:
            end = offset(tok.end)                                # one past the closing quote
            body = tok.string.lstrip("rRbBuUfF")                 # from the opening quote on
            in_string[end - len(body):end - _quote_length(body)] = 1
        elif tok.type == getattr(tokenize, "FSTRING_START", None):
            body = tok.string.lstrip("rRbBuUfF")
            open_fstrings.append(offset(tok.end) - len(body))   # where the opening quote is
        elif tok.type == getattr(tokenize, "FSTRING_END", None):
            end = offset(tok.end)
            in_string[open_fstrings.pop():end - len(tok.string)] = 1
        elif tok.type == tokenize.COMMENT:
            in_comment[offset(tok.start):offset(tok.end)] = 1
    return in_string, in_comment


def _quote_length(body):
    return 3 if body[:3] in ('"""', "'''") else 1


def line_labels(text):
    """(column, indentation) of every character: the position in its line, and the number of
    leading spaces of its line read so far (a newline belongs to the line it ends)."""
    column = np.zeros(len(text), dtype=np.int64)
    indentation = np.zeros(len(text), dtype=np.int64)
    col, indent, leading = 0, 0, True
    for i, ch in enumerate(text):
        if leading and ch == " ":
            indent += 1
        elif ch != "\n":
            leading = False
        column[i], indentation[i] = col, indent
        col += 1
        if ch == "\n":
            col, indent, leading = 0, 0, True
    return column, indentation


def analysis_text(n_chars, path=None):
    """About ``n_chars`` of Python source with its labels: the file ``path``, or else
    held-out source, whole files from the end of the corpus (its validation split),
    labelled one file at a time, then cut to n_chars."""
    if path is not None:
        source = _common.read_text(path)
        try:
            files = [(source, *string_and_comment_masks(source))]
        except (tokenize.TokenError, SyntaxError) as e:
            _common.fail(f"{path} is not Python source that tokenize can read: {e}")
    else:
        files = held_out_files(n_chars)
    text = "".join(source for source, _, _ in files)[:n_chars]
    if len(text) < 2 * STREAMS:
        _common.fail(f"{path} is too short to analyse: {len(text)} characters, expected at least {2 * STREAMS}")
    in_string = np.concatenate([s for _, s, _ in files])[:n_chars]
    in_comment = np.concatenate([c for _, _, c in files])[:n_chars]
    column, indentation = line_labels(text)
    return text, dict(in_string=in_string, in_prose=in_string | in_comment, column=column,
                      indentation=indentation)


def held_out_files(n_chars):
    """[(source, in_string, in_comment)] of the last corpus files, in corpus order, at least
    n_chars in all (the caller keeps their first n_chars, not their last: files start cleanly)."""
    files, total = [], 0
    for path in reversed(_common.stdlib_files()):
        source = path.read_text(encoding="ascii")
        try:
            files.insert(0, (source, *string_and_comment_masks(source)))
        except (tokenize.TokenError, SyntaxError):
            continue
        total += len(source)
        if total >= n_chars:
            break
    return files


# ============================================================================ the model
def train_model(model, args, vocab):
    """Train the char-LSTM ``model`` with truncated BPTT on the start of the corpus (as char_rnn.py does)."""
    text = _common.stdlib_corpus()
    n_train = int(len(text) * 0.95)                 # the last 5% (where the analysis text comes from) is held out
    if args.max_chars:
        n_train = min(n_train, args.max_chars)
    streams = batchify(vocab.encode(text[:n_train]), args.batch)
    opt = tg.optim.Adam(list(model.named_parameters()), lr=args.lr)
    params = list(model.parameters())
    step, state, start = 0, None, time.perf_counter()
    bar = _common.progress(total=args.steps, desc="training", unit="step")
    while True:
        for x, y in tbptt_batches(streams, args.seq_len):
            logits, state = model(x.T, state)
            loss = F.cross_entropy(logits.reshape(-1, len(vocab)), y.T.reshape(-1))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            state = detach(state)
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            if step == args.steps or (args.minutes and time.perf_counter() - start > 60 * args.minutes):
                bar.close()
                return
        state = None


def cell_values(model, vocab, text):
    """Every cell's value after every character of ``text``. Returns ``(values, n)``: ``values``
    is an (n, layers * H) NumPy array for the first n characters of ``text``, n = the largest
    multiple of STREAMS <= len(text) (the last few characters are left out).

    LSTM: tanh(c_t), in [-1, 1] as in the paper; GRU and RNN: h_t. The text is cut into
    STREAMS pieces read side by side, one character per call of the recurrent layer,
    which returns the state of every layer; each piece starts from a zero state.
    Characters outside the model's vocabulary are read as spaces."""
    ids = vocab.encode("".join(c if c in vocab.stoi else " " for c in text))
    L = len(ids) // STREAMS
    pieces = ids[:L * STREAMS].reshape(STREAMS, L)        # row b: characters b*L .. (b+1)*L - 1
    lstm = isinstance(model.rnn, nn.LSTM)
    values = np.zeros((STREAMS, L, model.rnn.num_layers * model.rnn.hidden_size), dtype=np.float32)
    model.eval()
    state = None
    with tg.no_grad():
        for t in range(L):
            x = F.one_hot(tg.Tensor(pieces[None, :, t]), len(vocab))        # (1, STREAMS, V)
            _, state = model.rnn(x, state)                                  # (layers, STREAMS, H) each
            v = state[1].tanh() if lstm else state                          # tanh(c) or h
            values[:, t, :] = v.numpy().transpose(1, 0, 2).reshape(STREAMS, -1)
    return values.reshape(STREAMS * L, -1), L * STREAMS


def correlations(values, label):
    """Pearson's r between each column of ``values`` (N, cells) and ``label`` (N,).

    A (nearly) constant cell or label gets r = 0: its spread is rounding error, and
    dividing by it would give any number at all."""
    v = values.astype(np.float64)
    v = v - v.mean(axis=0)
    y = label.astype(np.float64) - label.mean()
    spread_v, spread_y = np.sqrt((v * v).sum(axis=0)), np.sqrt((y * y).sum())
    flat = spread_v < 1e-6 * math.sqrt(len(y))
    if spread_y < 1e-6 * math.sqrt(len(y)):
        return np.zeros(v.shape[1])
    r = (v * y[:, None]).sum(axis=0) / (np.where(flat, 1.0, spread_v) * spread_y)
    return np.where(flat, 0.0, r)


def cell_name(model, k):
    H = model.rnn.hidden_size
    return f"layer {k // H} cell {k % H}" if model.rnn.num_layers > 1 else f"cell {k}"


def checkpoint_control(ckpt, device):
    """The control for a char_rnn.py checkpoint: ``(model, description)``. char_rnn.py draws the
    initial weights right after seeding (``char_rnn.initial_model``), so the checkpoint's seed
    rebuilds them, on the device it was trained on (CuPy draws other numbers than NumPy)."""
    config, seed = ckpt["config"], ckpt.get("args", {}).get("seed")
    if seed is not None and config.get("init_device") == device:
        return initial_model(config, seed), "the same network before training"
    return (CharRNN(len(config["vocab"]), config["model"], config["hidden"], config["layers"]),
            "an untrained network of the same shape (other random weights)")


# ============================================================================ main
def main(argv=None):
    args = parse_args(argv)
    out = _common.setup(args)
    # The control: the network before training. Some correlation comes for free (a random cell
    # still reacts to letters, or sums up a line), so the trained cells are compared with it.
    if args.checkpoint:
        ckpt = load_checkpoint(args.checkpoint)
        model, vocab = model_from_checkpoint(ckpt)
        control, control_name = checkpoint_control(ckpt, args.device)
        print(f"model from {args.checkpoint}: {model.rnn}")
    else:
        vocab = CharVocab(_common.stdlib_corpus())
        model = CharRNN(len(vocab), "lstm", args.hidden, 1)
        control = CharRNN(len(vocab), "lstm", args.hidden, 1)
        control.load_state_dict(model.state_dict())          # a copy of the initial weights
        control_name = "the same network before training"
        length = f"{args.steps} steps" if args.steps else f"{args.minutes:g} minutes"
        print(f"training a {args.hidden}-cell LSTM on the standard library's source ({length})")
        train_model(model, args, vocab)

    text, labels = analysis_text(args.chars, args.text)
    unknown = sorted(set(text) - set(vocab.chars))
    if unknown:       # e.g. a model trained on another text, or on a small part of the corpus
        print(f"note: characters the model never saw are read as spaces: {''.join(unknown)!r}")
    values, n = cell_values(model, vocab, text)
    control_values, _ = cell_values(control, vocab, text)
    text, labels = text[:n], {k: v[:n] for k, v in labels.items()}
    print(f"\nanalysed {n:,} characters of {args.text or 'held-out source'}; {values.shape[1]} cells; "
          f"{labels['in_string'].mean():.0%} of the characters are inside strings\n")

    from visualize import plots
    results = {}
    for label in LABELS:
        r = correlations(values, labels[label])
        top = np.argsort(-np.abs(r))[:args.top]
        control_r = float(np.abs(correlations(control_values, labels[label])).max())
        best = int(top[0])
        results[label] = dict(top=[dict(cell=int(k), name=cell_name(model, k), r=round(float(r[k]), 4))
                                   for k in top],
                              untrained_best_abs_r=round(control_r, 4), control=control_name)
        print(f"cells most correlated with {label}:")
        for row in results[label]["top"]:
            print(f"   {row['name']:>18}   r = {row['r']:+.3f}")
        print(f"   (the control, {control_name}: best |r| = {control_r:.3f})")
        if abs(r[best]) <= control_r:
            print(f"   caveat: no better than the untrained control, so this correlation says nothing about "
                  f"what training taught the network")
        sign = 1.0 if r[best] >= 0 else -1.0       # draw it so that orange means "more of the label"
        v = sign * values[:, best]
        what = f"{cell_name(model, best)}{' (sign flipped)' if sign < 0 else ''}"
        title = f"{what}, the cell most correlated with {label} (r = {r[best]:+.2f})"
        k = QUICK_EXCERPT if args.quick else EXCERPT
        start = _excerpt_start(text, labels[label], k)
        plots.plot_activation(text[start:start + k], v[start:start + k], cell=what, title=title,
                              width=80, path=out / f"{label}_cell{best}.png")
        plots.activation_html(text[:HTML_CHARS], v[:HTML_CHARS], cell=what, title=title,
                              path=out / f"{label}_cell{best}.html")
        print(f"   -> {out / f'{label}_cell{best}.png'} and .html\n")
    _common.write_json(out / "results.json", dict(characters=n, cells=int(values.shape[1]),
                                                  checkpoint=args.checkpoint, text=args.text, labels=results))


def parse_args(argv):
    parser = _common.make_parser(__doc__, out="out/interpretability")
    a = parser.add_argument
    a("--checkpoint", help="analyse a model saved by char_rnn.py instead of training one")
    a("--text", help="analyse this Python file (default: held-out files of the standard library)")
    a("--chars", type=positive_int, help="characters to analyse (default: 20000; --quick: 4000)")
    a("--top", type=positive_int, default=5, help="cells to list per label (default: 5)")
    a("--hidden", type=positive_int, help="LSTM cells (default: 128; --quick: 64)")
    a("--seq-len", type=positive_int, help="truncated BPTT length (default: 64; --quick: 32)")
    a("--batch", type=positive_int, help="streams per step (default: 32; --quick: 16)")
    a("--lr", type=positive_float, help="Adam's learning rate (default: 0.02; --quick: 0.01)")
    a("--steps", type=positive_int, help="training steps (default: the --minutes budget; --quick: 60)")
    a("--minutes", type=positive_float, help="training time budget (default: 1.75)")
    a("--max-chars", type=positive_int, help="train on the first N characters only (--quick: 400000)")
    args = parser.parse_args(argv)
    defaults = dict(DEFAULTS, **(QUICK if args.quick else {}))
    if args.steps is not None:
        defaults["minutes"] = None
    for k, v in defaults.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    if args.chars < 2 * STREAMS:
        parser.error(f"--chars must be at least {2 * STREAMS}, got {args.chars}")
    return args


def _excerpt_start(text, label, length):
    """Where the PNG excerpt starts: the line start from which the next ``length`` characters
    show the label changing most (a 0/1 label: most switches; a count: largest variance)."""
    starts = [0] + [i + 1 for i, c in enumerate(text[:len(text) - length]) if c == "\n"]
    binary = set(np.unique(label)) <= {0, 1}
    score = lambda w: np.count_nonzero(np.diff(w)) if binary else w.var()
    return max(starts, key=lambda s: score(label[s:s + length]))


if __name__ == "__main__":
    main()
