"""A character-level language model, as in the lecture notes and Karpathy's char-rnn.

    python examples/char_rnn.py                      # ~2 minutes: an LSTM learns to write Python
    python examples/char_rnn.py --data tinyshakespeare.txt --hidden 256 --dropout 0.25 --lr 0.01 --minutes 12
    python examples/char_rnn.py --resume             # continue exactly where the last run stopped
    python examples/char_rnn.py sample --checkpoint out/char_rnn/checkpoint.npz --prime "def " --length 500

The task. Read a text one character at a time and, at every position, predict
the next character. The network sees the characters x_1 .. x_T and outputs
scores y_t (one per vocabulary entry); softmax(y_t) is its guess for x_{t+1}
and the loss is the cross-entropy -log P(x_{t+1}), averaged over the chunk, in
nats per character. A model that knows nothing pays log(V) = log(96) = 4.56
nats; one that has only learnt which characters are common pays 3.14 here.

The data. By default, the Python standard library's own source: the
pure-ASCII top-level ``*.py`` files of the running interpreter, about 4.4 MB and
96 distinct characters, in sorted order (the notes' example learns the Linux
kernel's C in the same way). Nothing is downloaded. ``--data PATH`` takes any
UTF-8 text instead (on tinyshakespeare, the second command above reaches 1.62
nats/char in 12 minutes, 15 epochs, and writes Shakespeare-like lines under
speakers' names). The last 5% is held out for validation; the validation loss
shown while training is measured on 64 x 512 characters spread over it, the one
printed at the end on all of it.

The inputs are one-hot vectors, as in the notes and in char-rnn. An Embedding
would compute the same thing: W_ih @ onehot(c) is just column c of W_ih, so the
input projection of the first layer *is* a learnt embedding already, and a
separate table in front of it would add parameters but no expressive power.
One-hot also keeps the unrolled graph readable: x_t goes straight into the cell.

Truncated backpropagation through time (``tg.data``). The text is cut into
``--batch`` long streams, read side by side; each step takes the next
``--seq-len`` characters of every stream (a chunk), runs the network over them
starting from the hidden state the previous chunk ended with, and
backpropagates through those T steps only: after the update the state is
``detach()``-ed, so the forward pass sees the whole history while the gradient
reaches back at most T characters. See ``train`` below, where the loop is
written out.

How long, and the defaults. With neither ``--steps`` nor ``--epochs`` the run
trains for a time budget, ``--minutes`` (default 1.75, so that the whole run,
loading and pictures included, takes about two minutes): a budget rather than a
step count, because the engine will get faster and the same command will then
simply train more. ``--steps`` makes a run exactly reproducible with ``--seed``.
The defaults (a one-layer LSTM of 128 cells, 32 streams x 64 characters, Adam
with lr 0.02, the gradient norm clipped at 5) come from runs of about equal
compute (80-100 CPU-seconds each, before the engine's first speed-up), validation
loss in nats/char:

    cells  streams x chars  Adam lr  steps   validation
     128       32 x 64       0.003    1500     1.71
     128       64 x 64       0.003    1000     1.79
     256       32 x 64       0.003     700     1.81
     128       32 x 64       0.006    1500     1.58
     192       32 x 64       0.006    1000     1.64
     128       32 x 32       0.006    2800     1.51
     128       32 x 64       0.01     1500     1.54
     128       64 x 64       0.01     1000     1.53
     128       32 x 64       0.02     1500     1.47  (seed 1: 1.48)   <- the defaults
     128       32 x 32       0.02     2800     1.49
     128       32 x 64       0.03     1500     1.67

In two minutes, more updates matter more than more cells, and a large learning
rate (with clipping as a guard) matters most. On two otherwise idle cores the
default run takes 109 s: 3149 steps (1.5 epochs, 61,000 characters/s) and a
validation loss of 1.41 nats/char. Its samples indent, define functions, call
``self.``, raise ``ValueError`` and mostly close their brackets and quotes.

What it writes under ``--out`` (default ``out/char_rnn``): ``log.json`` (every
loss, gradient norm and sample), ``loss.png`` (train and validation),
``grad_norm.png`` (the gradient norm per step, before clipping) and
``grad_histograms.png`` (each parameter's gradient norm early, mid and late),
``bptt.svg``/``.png`` (the cell-level unrolled graph of one 8-character chunk,
with the gradient on every edge; without Graphviz only its DOT source
``bptt.gv``), and ``checkpoint.npz`` (every
``--checkpoint-every`` steps, at the end, and on Ctrl-C).

Checkpoints hold everything needed to continue *exactly*: the parameters, the
optimizer's moments, the step, the position in the data, the hidden state, the
random generator and the history, plus the vocabulary and the model's settings,
so that ``sample`` needs nothing else. They are written atomically
(``tg.save``), as host NumPy arrays, so a checkpoint saved on a GPU samples on
a CPU. (On a GPU, CuPy's random generator is not saved, so with ``--dropout``
a resumed GPU run draws different masks than an uninterrupted one.)
"""
import argparse
import hashlib
import itertools
import math
import signal
import sys
import time

import _common  # first: one BLAS thread, and this checkout's tinygrad_rnn and visualize on the path
import numpy as np
import tinygrad_rnn as tg
from _common import non_negative_int, positive_float, positive_int, probability
from tinygrad_rnn import nn
from tinygrad_rnn.data import CharVocab, batchify, tbptt_batches
from tinygrad_rnn.nn import functional as F

# Defaults, and what --quick changes (a few seconds on a tiny corpus: the tests use it).
DEFAULTS = dict(model="lstm", layers=1, hidden=128, seq_len=64, batch=32, optimizer="adam",
                clip=5.0, dropout=0.0, minutes=1.75, eval_every=200, sample_every=300, sample_length=300,
                checkpoint_every=500, max_chars=None, steps=None)
QUICK = dict(hidden=32, seq_len=16, batch=8, minutes=None, steps=30, eval_every=10,
             sample_every=15, sample_length=60, checkpoint_every=10, max_chars=50_000)
LEARNING_RATES = dict(adam=2e-2, adagrad=0.1, sgd=1.0)    # the default --lr of each optimizer
EARLY_SAMPLES = (30, 100)    # also sample here: the first steps change the text the most
VAL_FRACTION = 0.05          # the last 5% of the text is the validation split
EVAL_STREAMS = 64            # the validation text is read as 64 streams side by side
VAL_PEEK = 512               # during training: only the first 512 characters of each (a quick estimate)
CHECKPOINT = "checkpoint.npz"
# What --resume takes from the checkpoint (everything that shapes the loss sequence);
# the rest (how long, how often to print, where to write) comes from the command line.
RESUMED_ARGS = ("model", "layers", "hidden", "seq_len", "batch", "lr", "optimizer", "clip", "clip_value",
                "dropout", "data", "max_chars", "seed")


# ============================================================================ the model
class CharRNN(nn.Module):
    """One-hot characters -> RNN/LSTM/GRU (``layers`` deep) -> dropout -> linear scores.

    forward(ids (T, B) int, state) -> (logits (T, B, V), new state); the state is
    h (layers, B, H), or the pair (h, c) for the LSTM; None means zeros."""

    def __init__(self, vocab_size, model="lstm", hidden=128, layers=1, dropout=0.0):
        super().__init__()
        self.vocab_size = vocab_size
        layer = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[model]
        self.rnn = layer(vocab_size, hidden, layers, dropout=dropout)   # dropout between layers
        self.drop = nn.Dropout(dropout)                                 # and on the top layer's output
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, ids, state=None):
        x = F.one_hot(ids, self.vocab_size)          # (T, B, V): 1.0 at each character's id
        x.name = "x"                                 # (for the pictures)
        out, state = self.rnn(x, state)              # (T, B, H): the top layer's h_t for every t
        return self.head(self.drop(out)), state      # (T, B, V): scores for the next character


def detach(state):
    """Cut the graph behind the hidden state: truncated BPTT's one line."""
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def make_model(config):
    return CharRNN(len(config["vocab"]), config["model"], config["hidden"], config["layers"], config["dropout"])


def initial_model(config, seed):
    """The untrained model of a run with this seed: its weights are the first numbers the seeded
    generator draws (interpretability.py rebuilds them this way, as its control)."""
    tg.manual_seed(seed)
    return make_model(config)


def make_optimizer(name, model, lr):
    params = list(model.named_parameters())
    if name == "adam":
        return tg.optim.Adam(params, lr=lr)
    if name == "adagrad":
        return tg.optim.Adagrad(params, lr=lr)
    return tg.optim.SGD(params, lr=lr)


# ============================================================================ sampling
def sample(model, vocab, prime, length, temperature, rng):
    """``prime`` followed by ``length`` characters drawn one at a time from the model.

    Each drawn character is fed back in as the next input (the notes' "sample,
    feed into the model"). temperature < 1 sharpens softmax(y / temperature)
    towards the likeliest characters, > 1 flattens it; 0 always takes the
    likeliest. ``rng``: a NumPy Generator, so the same seed gives the same text."""
    missing = sorted(set(prime) - set(vocab.chars))
    if missing:
        raise ValueError(f"the prime text has characters that are not in the model's vocabulary: "
                         f"{''.join(missing)!r}")
    was_training = model.training
    model.eval()                                     # no dropout while sampling
    out = []
    with tg.no_grad():
        ids = vocab.encode(prime or "\n")
        logits, state = model(tg.Tensor(ids[:, None]))                 # read the prime: (T, 1)
        for _ in range(length):
            y = logits.numpy()[-1, 0].astype(np.float64)                # scores for the next char
            if temperature == 0:
                c = int(np.argmax(y))
            else:
                p = np.exp((y - y.max()) / temperature)
                c = int(np.searchsorted(np.cumsum(p), rng.random() * p.sum(), side="right"))
                c = min(c, len(p) - 1)
            out.append(c)
            logits, state = model(tg.Tensor(np.array([[c]])), state)   # feed it back in
    model.train(was_training)
    return prime + vocab.decode(out)


# ============================================================================ evaluation
def evaluate(model, streams, seq_len):
    """Mean cross-entropy (nats/char) over all of ``streams`` (B, L), reading them as in
    training (chunks of ``seq_len``, state carried) but without gradients or dropout."""
    model.eval()
    total, count, state = 0.0, 0, None
    with tg.no_grad():
        for x, y in tbptt_batches(streams, seq_len):
            logits, state = model(x.T, state)
            loss = F.cross_entropy(logits.reshape(-1, model.vocab_size), y.T.reshape(-1), reduction="sum")
            total += loss.item()
            count += y.numel()
    model.train()
    return total / count


# ============================================================================ checkpoints
def save_checkpoint(path, config, args, model, opt, progress, state, history):
    """Everything ``--resume`` and ``sample`` need, as host arrays and plain values, atomically."""
    tg.save({"kind": "char_rnn",
             "config": config,                         # model settings + vocabulary: enough to sample
             "args": {k: getattr(args, k) for k in RESUMED_ARGS},
             "model": model.state_dict(),
             "optimizer": opt.state_dict(),
             "progress": progress,                     # step, epoch, chunk within the epoch
             "state": None if state is None else list(state if isinstance(state, tuple) else (state,)),
             "rng": tg.backend.get_rng_state(),        # dropout's random stream
             "history": history}, path)


def load_checkpoint(path):
    try:
        ckpt = tg.load(path)
    except (FileNotFoundError, tg.CheckpointError) as e:
        _common.fail(str(e))
    if not isinstance(ckpt, dict) or ckpt.get("kind") != "char_rnn":
        _common.fail(f"{path} is a tinygrad_rnn checkpoint but not one written by char_rnn.py")
    return ckpt


def model_from_checkpoint(ckpt):
    config = ckpt["config"]
    model = make_model(config)
    model.load_state_dict(ckpt["model"])               # copies the host arrays to the current device
    return model, CharVocab(config["vocab"])


# ============================================================================ the data
def load_data(args):
    """(text, description, train ids, validation ids, vocabulary)."""
    text, description = _common.load_corpus(args.data, args.max_chars)
    vocab = CharVocab(text)
    ids = vocab.encode(text)
    n_val = max(int(len(ids) * VAL_FRACTION), 2 * EVAL_STREAMS)
    if len(ids) - n_val < 2 * args.batch * 2:
        _common.fail(f"the text ({len(text):,} characters) is too short for --batch {args.batch}: "
                     f"each of the {args.batch} streams needs a few characters, and {n_val} go to validation")
    return text, description, ids[:-n_val], ids[-n_val:], vocab


class StopOnCtrlC:
    """While active, Ctrl-C (SIGINT) only sets ``.requested``; training stops after the current
    step and saves, so the checkpoint is never from the middle of an update. A second Ctrl-C
    interrupts at once."""

    def __enter__(self):
        self.requested = False
        self.previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self.previous)
        return False


# ============================================================================ training
def train(args):
    resumed = load_checkpoint(args.resume) if args.resume else None
    if resumed:                        # the settings that shape the run come from the checkpoint
        for k, v in resumed["args"].items():
            setattr(args, k, v)
    text, description, train_ids, val_ids, vocab = load_data(args)
    out = _common.setup(args)          # seed, device, output directory
    config = dict(model=args.model, hidden=args.hidden, layers=args.layers, dropout=args.dropout,
                  vocab="".join(vocab.chars), corpus_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
                  # whose random generator drew the initial weights (NumPy's and CuPy's differ)
                  init_device=resumed["config"].get("init_device") if resumed else args.device)
    model = initial_model(config, args.seed)
    opt = make_optimizer(args.optimizer, model, args.lr)
    params = list(model.parameters())

    streams = batchify(train_ids, args.batch)          # (B, L): B streams read side by side
    val_streams = batchify(val_ids, min(EVAL_STREAMS, len(val_ids) // 2))
    val_peek = val_streams[:, :VAL_PEEK + 1]           # 64 x 512 characters spread over the split
    chunks_per_epoch = math.ceil((streams.shape[1] - 1) / args.seq_len)
    total_steps = args.steps or (args.epochs * chunks_per_epoch if args.epochs else None)

    # where we are: steps taken, passes over the text, chunk within this pass, hidden state
    step, epoch, chunk, state = 0, 0, 0, None
    history = dict(step=[], loss=[], grad_norm=[], val_step=[], val_loss=[], param_grad_norms={},
                   samples=[], wall_time=0.0)
    if resumed:
        if resumed["config"]["corpus_sha256"] != config["corpus_sha256"]:
            _common.fail(f"{args.resume} was trained on a different text than {description}")
        step, epoch, chunk, state, history = restore(resumed, model, opt)
        print(f"resuming {args.resume} at step {step} (epoch {epoch}, chunk {chunk}/{chunks_per_epoch})")
    print(f"data: {description}, {len(vocab)} distinct characters; "
          f"{len(train_ids):,} for training, {len(val_ids):,} for validation")
    print(f"model: {model.num_parameters():,} parameters\n{model}")
    until = " or ".join(([f"{total_steps} steps"] if total_steps else []) +
                        ([f"{args.minutes:g} minutes"] if args.minutes else []))
    print(f"truncated BPTT: {args.batch} streams x {args.seq_len} characters per step, "
          f"{chunks_per_epoch} steps per epoch; training for {until}")

    def show_sample():
        rng = np.random.default_rng([args.seed, step])   # a function of the step, so a resumed run agrees
        s = sample(model, vocab, "\n", args.sample_length, args.temperature, rng)
        history["samples"].append(dict(step=step, text=s))
        bar.write(f"\n----- sample at step {step} (temperature {args.temperature}) -----{s}\n" + "-" * 40)

    def save():
        save_checkpoint(out / CHECKPOINT, config, args, model, opt, dict(step=step, epoch=epoch, chunk=chunk),
                        state, history)

    start, start_step, smooth = time.perf_counter(), step, None
    val_loss = history["val_loss"][-1] if history["val_loss"] else float("nan")
    bar = _common.progress(total=total_steps, initial=step, desc="training", unit="step")
    if step == 0:
        show_sample()                                    # before training: noise
    stop = total_steps is not None and step >= total_steps
    with StopOnCtrlC() as ctrl_c:
        while not stop:
            # one pass over the text (an epoch), T characters of every stream at a time
            for x, y in itertools.islice(tbptt_batches(streams, args.seq_len), chunk, None):
                logits, state = model(x.T, state)        # x: (B, T) ids; start from the previous chunk's state
                loss = F.cross_entropy(logits.reshape(-1, len(vocab)), y.T.reshape(-1))
                opt.zero_grad()
                loss.backward()                          # BPTT through these T steps, and no further
                record_parameter_norms(model, history)
                grad_norm = nn.utils.clip_grad_norm_(params, args.clip or math.inf).item()
                if args.clip_value:
                    nn.utils.clip_grad_value_(params, args.clip_value)
                opt.step()
                state = detach(state)                    # truncate: the next chunk's gradient stops here
                step, chunk = step + 1, chunk + 1

                # bookkeeping: log, progress bar, validation, samples, checkpoints
                loss = loss.item()
                history["step"].append(step)
                history["loss"].append(loss)
                history["grad_norm"].append(grad_norm)
                smooth = loss if smooth is None else 0.95 * smooth + 0.05 * loss
                if step % args.eval_every == 0:
                    val_loss = evaluate(model, val_peek, 4 * args.seq_len)
                    history["val_step"].append(step)
                    history["val_loss"].append(val_loss)
                bar.update(1)
                chars_per_s = (step - start_step) * x.numel() / (time.perf_counter() - start)   # average so far
                bar.set_postfix({"loss": f"{smooth:.3f}", "val loss": f"{val_loss:.3f}",
                                 "chars/s": f"{chars_per_s:,.0f}", "grad norm": f"{grad_norm:.2f}"}, refresh=False)
                if step % args.sample_every == 0 or (step in EARLY_SAMPLES and step < args.sample_every):
                    show_sample()
                if step % args.checkpoint_every == 0:
                    save()
                out_of_time = args.minutes and time.perf_counter() - start > 60 * args.minutes
                stop = ctrl_c.requested or out_of_time or step == total_steps
                if stop:
                    break
            else:      # the whole text has been read: start again from the top, from a zero state
                epoch, chunk, state = epoch + 1, 0, None
        bar.close()
        seconds = time.perf_counter() - start
        history["wall_time"] += seconds
        save()
        if ctrl_c.requested:
            print(f"\ninterrupted at step {step}: saved {out / CHECKPOINT}; continue with --resume")
            write_log(out, args, config, history, dict(interrupted=True))
            raise SystemExit(130)

    val_loss = evaluate(model, val_streams, 4 * args.seq_len)     # all of the validation split
    if history["samples"][-1]["step"] != step:
        show_sample()
    chars = (step - start_step) * args.batch * args.seq_len
    final = dict(steps=step, epochs=round(step / chunks_per_epoch, 3), seconds_this_run=round(seconds, 2),
                 chars_per_second=round(chars / max(seconds, 1e-9)), val_loss=round(val_loss, 4))
    write_log(out, args, config, history, final)
    if not args.no_plots:
        draw_pictures(out, model, vocab, val_ids, history, args)
    save()
    print(f"{step} steps ({final['epochs']} epochs) in {_common.seconds(seconds)}, "
          f"{final['chars_per_second']:,} chars/s; validation loss {final['val_loss']:.3f} nats/char; "
          f"outputs in {out}/")


def restore(ckpt, model, opt):
    """Put a checkpoint's parameters, optimizer moments and random state back; returns
    (step, epoch, chunk, hidden state, history)."""
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    tg.backend.set_rng_state(ckpt["rng"])
    state = None
    if ckpt["state"] is not None:
        h = [tg.Tensor(a) for a in ckpt["state"]]      # host arrays -> the current device
        state = tuple(h) if len(h) == 2 else h[0]
    history = ckpt["history"]
    progress = ckpt["progress"]
    return progress["step"], progress["epoch"], progress["chunk"], state, history


def record_parameter_norms(model, history):
    """||dL/dW|| of every parameter at this step, for the gradient histograms."""
    for name, p in model.named_parameters():
        norm = (p.grad * p.grad).sum().sqrt().item()     # computed where the gradient lives
        history["param_grad_norms"].setdefault(name, []).append(norm)


# ============================================================================ outputs
def write_log(out, args, config, history, final):
    _common.write_json(out / "log.json", dict(
        args={k: (str(v) if k in ("out", "data", "resume") and v is not None else v) for k, v in vars(args).items()
              if k != "func"},
        config=config,
        final=final, **{k: v for k, v in history.items() if k != "param_grad_norms"}))


def draw_pictures(out, model, vocab, val_ids, history, args):
    """The loss curves, the gradient norms, and the unrolled graph of one short chunk."""
    import visualize as viz
    from visualize import plots
    plots.plot_loss(history["loss"], history["val_loss"] or None, train_x=history["step"],
                    validation_x=history["val_step"] or None, xlabel="step",
                    title=f"Character-level {args.model.upper()}: loss (nats/char)", path=out / "loss.png")
    plot_grad_norm(history["step"], history["grad_norm"], args.clip, out / "grad_norm.png")
    plots.plot_gradient_histograms(history["param_grad_norms"], steps=history["step"],
                                   title="Gradient norm of each parameter (before clipping)",
                                   path=out / "grad_histograms.png")
    # one 8-character chunk of the validation text, from a zero state, with gradients on every edge;
    # in Python source, the first "return " makes a readable one
    start = max(vocab.decode(val_ids[:20_000]).find("return "), 0)
    ids = val_ids[start:start + 9]
    model.eval()
    try:
        logits, _ = model(tg.Tensor(ids[:-1, None]))
    finally:
        model.train()
    loss = F.cross_entropy(logits.reshape(-1, len(vocab)), tg.Tensor(ids[1:]))
    loss.name = "L"
    text = vocab.decode(ids)
    graph = viz.draw_bptt(loss, level="cell", gradients=True, params=dict(model.named_parameters()),
                          title=f"BPTT through 8 characters: {text[:-1]!r} -> {text[1:]!r}")
    for ext in ("svg", "png"):
        _common.save_picture(graph, out / f"bptt.{ext}")


def plot_grad_norm(steps, norms, clip, path):
    """||g|| per step (before clipping) on a log axis, with the clipping threshold."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(steps, norms, color="#0072B2", linewidth=1, label="‖dL/dθ‖ before clipping")
    if clip:
        ax.axhline(clip, color="#E69F00", linestyle="--", linewidth=2, label=f"clipped to {clip:g}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("gradient norm (log scale)")
    ax.set_title("Gradient norm of all parameters")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=120)


# ============================================================================ the sample command
def sample_command(args):
    _common.seed_everything(args.seed)
    _common.set_device(args.device)
    model, vocab = model_from_checkpoint(load_checkpoint(args.checkpoint))
    try:
        text = sample(model, vocab, args.prime, args.length, args.temperature, np.random.default_rng(args.seed))
    except ValueError as e:
        _common.fail(str(e))
    print(text)


# ============================================================================ command line
def build_parsers():
    train_p = _common.make_parser(__doc__ + "\nTo generate text from a checkpoint instead: char_rnn.py sample --help",
                                  out="out/char_rnn")
    a = train_p.add_argument
    default = lambda k: f"(default: {DEFAULTS[k]}" + (f"; --quick: {QUICK[k]})" if k in QUICK else ")")
    a("--model", choices=["rnn", "lstm", "gru"], default=None, help=f"the recurrent layer {default('model')}")
    a("--layers", type=positive_int, help=f"stacked recurrent layers {default('layers')}")
    a("--hidden", type=positive_int, help=f"hidden units per layer {default('hidden')}")
    a("--seq-len", type=positive_int, help=f"truncated BPTT length T, characters per chunk {default('seq_len')}")
    a("--batch", type=positive_int, help=f"streams read side by side {default('batch')}")
    a("--lr", type=positive_float, help="learning rate (default: adam 0.02, adagrad 0.1, sgd 1)")
    a("--optimizer", choices=["adam", "adagrad", "sgd"], help=f"{default('optimizer')}")
    a("--clip", type=float, help=f"clip the gradient norm to this; 0: no clipping {default('clip')}")
    a("--clip-value", type=positive_float, help="also clip every gradient entry to [-v, v] (default: off)")
    a("--dropout", type=probability, help=f"dropout between layers and before the output {default('dropout')}")
    a("--steps", type=positive_int, help="train for this many steps (default: the --minutes budget; --quick: 30)")
    a("--epochs", type=positive_int, help="train for this many passes over the text")
    a("--minutes", type=positive_float,
      help=f"time budget when neither --steps nor --epochs is given (default: {DEFAULTS['minutes']})")
    a("--temperature", type=float, default=0.8, help="sampling temperature; 0: always the likeliest (default: 0.8)")
    a("--data", help="train on this UTF-8 text file (default: the Python standard library's source)")
    a("--max-chars", type=positive_int, help="use only the first N characters of the text (--quick: 50000)")
    a("--eval-every", type=positive_int, help=f"validation loss every N steps {default('eval_every')}")
    a("--sample-every", type=positive_int, help=f"print a sample every N steps {default('sample_every')}")
    a("--sample-length", type=non_negative_int, help=f"characters per sample {default('sample_length')}")
    a("--checkpoint-every", type=positive_int, help=f"save every N steps {default('checkpoint_every')}")
    a("--no-plots", action="store_true", help="skip the pictures at the end (the log is still written)")
    a("--resume", nargs="?", const="", default=None, metavar="CHECKPOINT",
      help="continue from a checkpoint (default: OUT/checkpoint.npz) exactly; the model, data and "
           "optimizer settings come from it, the length of the run from this command line")

    sample_p = argparse.ArgumentParser(prog="char_rnn.py sample",
                                       description="Generate text from a char_rnn.py checkpoint.")
    s = sample_p.add_argument
    s("--checkpoint", default="out/char_rnn/checkpoint.npz", help="(default: out/char_rnn/checkpoint.npz)")
    s("--prime", default="\n", help="text to start from (default: a newline)")
    s("--length", type=non_negative_int, default=500, help="characters to generate (default: 500)")
    s("--temperature", type=float, default=0.8, help="(default: 0.8; 0: always the likeliest)")
    s("--seed", type=int, default=0, help="random seed: the same seed gives the same text (default: 0)")
    s("--device", choices=sorted(_common.DEVICES), default="cpu", help="(default: cpu)")
    return train_p, sample_p


def parse_args(argv):
    train_p, sample_p = build_parsers()
    if argv[:1] == ["sample"]:
        args = sample_p.parse_args(argv[1:])
        if args.temperature < 0:
            sample_p.error(f"--temperature must be >= 0, got {args.temperature}")
        args.func = sample_command
        return args
    args = train_p.parse_args(argv[1:] if argv[:1] == ["train"] else argv)
    defaults = dict(DEFAULTS, **(QUICK if args.quick else {}))
    if args.steps is not None or args.epochs is not None:
        defaults.update(steps=None, minutes=None)     # an explicit length replaces the time budget
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.lr is None:
        args.lr = LEARNING_RATES[args.optimizer]
    if args.clip < 0:
        train_p.error(f"--clip must be >= 0 (0: no clipping), got {args.clip}")
    if args.temperature < 0:
        train_p.error(f"--temperature must be >= 0, got {args.temperature}")
    if args.resume == "":
        args.resume = str(args.out / CHECKPOINT)
    args.func = train
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    args.func(args)


if __name__ == "__main__":
    main()
