"""Vanishing and exploding gradients: how far back in time does the gradient of a loss reach?

The lecture notes ("Sequence Model Part 1", slides "Gradient Flow in Training
Recurrent Networks"; "L7. RNNs", slide "Life is harder in the RNN world"):

    Backpropagation from h_t to h_{t-1} multiplies by W (actually W_hh^T) and by
    tanh'. Computing the gradient of h_0 involves many factors of W:
    largest singular value > 1: exploding gradients; < 1: vanishing gradients.
    If gradients are exploding: clip. Fancier architectures: LSTMs and co.

and ("Recurrent Neural Networks", MLHEP 2017, slides "RNN step", "Residual RNN
step", "What we drew", "LSTM", "GRU") the road from the vanilla RNN to the LSTM:

    residual:  h_t = h_{t-1} + update(x_t, h_{t-1})     "gradients do not vanish"
    gated:     h_t = forget(x_t, h_{t-1}) * h_{t-1} + update(x_t, h_{t-1})
    LSTM:      c_t = f_t * c_{t-1} + i_t * g_t           "only elementwise multiplication by f"
    GRU:       "the gradients no longer vanish, except they still do, if only slower"

Part 1 measures ||dL/dh_t|| for every t, for a loss on the LAST step only, so
the gradient reaching h_t has come back through T-1-t steps of the recurrence.
Every model reads the same random input (50 steps, batch 8, 32 hidden units);
the plots draw the norm against the distance from the loss on a log axis.

  gradient_vs_distance.png: a vanilla RNN whose W_hh is orthogonal times rho, so
      its spectral radius is exactly rho: 0.5 (below 1), 1 (at 1), 2 (above 1);
      an LSTM and a GRU.
  vanilla_to_lstm.png: vanilla -> residual -> gated residual -> LSTM.

The initialisations are chosen to show each mechanism, and they are said in
the legends. They matter:
  * the LSTM with PyTorch's default initialisation has its forget gate at about
    sigmoid(0) = 0.5, so its gradient halves every step, just like a vanilla
    RNN's. The carousel only carries the gradient when the gate is open, which is
    why LSTMs are started with a positive forget-gate bias (Jozefowicz et al.
    2015). We draw both, and use a bias of 2 (f = sigmoid(2) = 0.88) for the LSTM,
    the GRU's update gate z and the gated residual step's forget gate;
  * the residual step's Jacobian is I + diag(1 - u^2) W_hh. With PyTorch's
    default W_hh it has directions with eigenvalues above 1 and the gradient
    GROWS backward in time (nothing can reset the state: the notes' "much harder
    to get rid of something"). With a small W_hh (orthogonal, rho = 0.05) the
    Jacobian is close to I and the gradient is carried almost unchanged: the
    notes' "gradients do not vanish". We draw both. The gated residual step uses
    the same small W_hh, so the only difference from the residual step is the
    forget gate, which multiplies the carried gradient by f at every step.

Part 2 draws the unrolled graph of a 10-step run at cell level with the gradient
on every edge (colour and width on a log scale): bptt_vanilla_rho0.5.svg,
bptt_vanilla_rho2.svg, bptt_lstm.svg. Their loss is the same L = <v, h_9>, with
h_9 = out[-1], the layer's output at the last step.

Part 3 trains a vanilla RNN with rho = 2 to output its input from 2 steps before,
with plain SGD (lr 0.2), twice: as is, and with clip_grad_norm_(params, 1.0)
between backward() and step() (the notes' "clip whole dL/dw by norm"). Without
clipping a few huge gradients throw the weights away and the loss overflows;
with clipping it trains. clipping.png shows loss and gradient norm per step (the
norm before clipping: what clip_grad_norm_ measured).

Run:    python examples/vanishing_gradients.py            (about 10 s)
        python examples/vanishing_gradients.py --quick    (a few seconds: 30 timesteps, 50 SGD steps)
Writes: out/vanishing_gradients/gradient_vs_distance.png, vanilla_to_lstm.png,
        bptt_*.svg (+ .png; without Graphviz only their .gv source), clipping.png,
        results.json (all the norms and losses)
"""
import warnings

import _common  # noqa: F401  (first: one BLAS thread, and this checkout's tinygrad_rnn and visualize on the path)
import numpy as np
import tinygrad_rnn as tg
import visualize as viz
from _common import fill_defaults, make_parser, positive_int, save_picture, setup, write_json
from tinygrad_rnn import nn
from tinygrad_rnn.nn import functional as F
from tinygrad_rnn.nn.utils import clip_grad_norm_
from visualize.plots import hidden_gradient_norms, plot_gradient_vs_distance

GATE_BIAS = 2.0            # sigmoid(2) = 0.88: the forget / update gate starts mostly open
SMALL_RHO = 0.05           # the residual steps' W_hh: orthogonal times this
DEFAULTS = dict(timesteps=50, train_steps=80)
QUICK = dict(timesteps=30, train_steps=50)     # what --quick changes (an option given on the command line wins)


def set_gate_bias(layer, gate, value):
    """Start gate number ``gate`` (in the layer's stacking order) at sigmoid(value): b_ih = value, b_hh = 0."""
    H = layer.hidden_size
    for name, v in (("bias_ih_l0", value), ("bias_hh_l0", 0.0)):
        p = getattr(layer, name)
        b = p.numpy()
        b[gate * H:(gate + 1) * H] = v
        p.data = p.backend.asarray(b, p.dtype)
    return layer


def models_part1(I, H):
    """name -> a function that builds the layer (each build draws its own weights from the seeded generator)."""
    kw = dict(dtype="float64")
    return {
        "vanilla, \u03c1 = 0.5": lambda: nn.RNN(I, H, init="orthogonal", init_gain=0.5, **kw),
        "vanilla, \u03c1 = 1": lambda: nn.RNN(I, H, init="orthogonal", init_gain=1.0, **kw),
        "vanilla, \u03c1 = 2": lambda: nn.RNN(I, H, init="orthogonal", init_gain=2.0, **kw),
        "LSTM, default init (f \u2248 0.5)": lambda: nn.LSTM(I, H, **kw),
        f"LSTM, forget bias {GATE_BIAS:g}": lambda: set_gate_bias(nn.LSTM(I, H, **kw), 1, GATE_BIAS),   # i f g o
        f"GRU, update bias {GATE_BIAS:g}": lambda: set_gate_bias(nn.GRU(I, H, **kw), 1, GATE_BIAS),     # r z n
    }


def models_part1b(I, H):
    kw = dict(dtype="float64")
    return {
        "vanilla, \u03c1 = 0.5": lambda: nn.RNN(I, H, init="orthogonal", init_gain=0.5, **kw),
        f"residual, \u03c1 = {SMALL_RHO:g}": lambda: nn.ResidualRNN(I, H, init="orthogonal", init_gain=SMALL_RHO, **kw),
        "residual, default init": lambda: nn.ResidualRNN(I, H, **kw),
        f"gated residual, \u03c1 = {SMALL_RHO:g}, forget bias {GATE_BIAS:g}":
            lambda: nn.GatedResidualRNN(I, H, forget_bias=GATE_BIAS, init="orthogonal", init_gain=SMALL_RHO, **kw),
        f"LSTM, forget bias {GATE_BIAS:g}": lambda: set_gate_bias(nn.LSTM(I, H, **kw), 1, GATE_BIAS),
    }


def last_step_loss(layer, x, v):
    """L = <v, h_{T-1}>: a loss on the last hidden state only. Returns (L, the layer's outputs h_0..h_{T-1})."""
    out, _ = layer(x)                        # out: (T, B, H), h_t for every t
    loss = (out[-1] * v).sum()
    loss.name = "L"
    return loss, out


def measure(builders, T, I, H, B, seed):
    """||dL/dh_t|| for t = 0..T-1 for each model, all on the same input x and readout v."""
    norms = {}
    for name, build in builders.items():
        tg.manual_seed(seed)
        layer = build()
        tg.manual_seed(seed + 1)                 # the same x and v for every model
        x = tg.randn(T, B, I, dtype="float64", name="x")
        v = tg.randn(B, H, dtype="float64", name="v")
        loss, out = last_step_loss(layer, x, v)
        norms[name] = hidden_gradient_norms(loss, out)
    return norms


def print_norms(norms, T):
    shown = [d for d in (0, 1, 2, 5, 10, 20, 30, 40, 49) if d < T]
    print(f"  {'distance from the loss:':<42}" + "".join(f"{d:>9}" for d in shown))
    for name, n in norms.items():
        print(f"  {name:<42}" + "".join(f"{n[T - 1 - d]:9.1e}" for d in shown))


# --- part 3: clipping --------------------------------------------------------------------------------
def train_delay_task(clip, steps, seed, T=20, H=32, delay=2, lr=0.2):
    """SGD on y_t = x_{t-delay} with a vanilla RNN started at spectral radius 2. Returns (losses, grad norms)."""
    tg.manual_seed(seed)
    rnn = nn.RNN(1, H, init="orthogonal", init_gain=2.0)
    readout = nn.Linear(H, 1)
    params = list(rnn.parameters()) + list(readout.parameters())
    opt = tg.optim.SGD(params, lr=lr)
    rng = np.random.default_rng(seed)
    losses, grad_norms = [], []
    for step in range(steps):
        x = rng.standard_normal((T, 16, 1)).astype(np.float32)
        y = np.concatenate([np.zeros((delay, 16), np.float32), x[:-delay, :, 0]])
        h, _ = rnn(tg.Tensor(x))
        loss = F.mse_loss(readout(h).squeeze(-1), tg.Tensor(y))
        opt.zero_grad()
        loss.backward()
        # clip_grad_norm_ returns the norm before clipping; max_norm = inf measures without clipping
        norm = clip_grad_norm_(params, max_norm=clip if clip is not None else float("inf"))
        opt.step()
        losses.append(loss.item())
        grad_norms.append(norm.item())
    return losses, grad_norms


def plot_clipping(runs, path):
    """Loss and gradient norm per step, with and without clipping; where a run overflows, say so."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(15, 4.5), layout="constrained")
    axes = fig.subplots(1, 3)
    for (name, (losses, norms)), style, color in zip(runs.items(), ("-", "--"), ("#D55E00", "#0072B2")):
        for ax, values in zip(axes, (losses, norms)):
            values = np.asarray(values, dtype=np.float64)
            ok = np.isfinite(values)
            ax.plot(np.arange(len(values))[ok], values[ok], style, color=color, linewidth=2, label=name)
            if not ok.all():
                first = int(np.argmin(ok))
                ax.axvline(first, color=color, linestyle=":", linewidth=1.5)
                ax.text(first, ax.get_ylim()[1] if ax.has_data() else 1, f" inf/NaN from step {first}",
                        color=color, va="top", fontsize=10)
    axes[0].set(yscale="log", xlabel="training step", ylabel="loss (log scale)", title="Loss")
    axes[1].set(yscale="log", xlabel="training step", ylabel="\u2016dL/d\u03b8\u2016 before clipping (log scale)",
                title="Gradient norm")
    clipped_name, (clipped_losses, _) = list(runs.items())[-1]
    axes[2].plot(clipped_losses, "--", color="#0072B2", linewidth=2)
    axes[2].set(xlabel="training step", ylabel="loss", title="Loss with clipping, zoomed in (linear scale)")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=2, fontsize=11)
    fig.suptitle("Vanilla RNN started at spectral radius 2, SGD with lr 0.2", fontsize=13)
    fig.savefig(path, dpi=120)


def main():
    parser = make_parser(__doc__, out="out/vanishing_gradients")
    parser.add_argument("--timesteps", type=positive_int,
                        help="timesteps T of the measured runs (default: 50; --quick: 30)")
    parser.add_argument("--hidden", type=positive_int, default=32, help="hidden units (default: 32)")
    parser.add_argument("--train-steps", type=positive_int,
                        help="SGD steps of the clipping demo (default: 80; --quick: 50)")
    args = fill_defaults(parser.parse_args(), DEFAULTS, QUICK)
    out = setup(args)
    T, H, I, B = args.timesteps, args.hidden, 4, 8

    # --- part 1: gradient norm against distance ----------------------------------------------------------
    print(f"||dL/dh_t|| for a loss on the last of {T} steps (L = <v, h_{T - 1}>), {H} hidden units:\n")
    norms = measure(models_part1(I, H), T, I, H, B, args.seed)
    print_norms(norms, T)
    plot_gradient_vs_distance(norms, title="How far back does the gradient reach?",
                              path=out / "gradient_vs_distance.png")
    print("\nFrom the vanilla RNN to the LSTM:\n")
    progression = measure(models_part1b(I, H), T, I, H, B, args.seed)
    print_norms(progression, T)
    plot_gradient_vs_distance(progression, title="From the vanilla RNN to the LSTM",
                              path=out / "vanilla_to_lstm.png")

    # --- part 2: BPTT pictures, coloured by gradient -------------------------------------------------------
    pictures = {"bptt_vanilla_rho0.5": models_part1(I, H)["vanilla, \u03c1 = 0.5"],
                "bptt_vanilla_rho2": models_part1(I, H)["vanilla, \u03c1 = 2"],
                "bptt_lstm": models_part1(I, H)[f"LSTM, forget bias {GATE_BIAS:g}"]}
    titles = {"bptt_vanilla_rho0.5": "vanilla RNN, spectral radius 0.5: the gradient fades going back",
              "bptt_vanilla_rho2": "vanilla RNN, spectral radius 2: the gradient grows going back",
              "bptt_lstm": f"LSTM, forget-gate bias {GATE_BIAS:g}: the cell state carries the gradient"}
    drawn = []
    for name, build in pictures.items():
        tg.manual_seed(args.seed)
        layer = build()
        tg.manual_seed(args.seed + 1)
        x = tg.randn(10, 1, I, dtype="float64", name="x")
        loss, _ = last_step_loss(layer, x, tg.randn(1, H, dtype="float64", name="v"))
        dg = viz.draw_bptt(loss, level="cell", gradients=True, title=titles[name])
        drawn.append(save_picture(dg, out / f"{name}.svg"))
        if not args.quick:
            save_picture(dg, out / f"{name}.png")

    # --- part 3: clipping an exploding run -----------------------------------------------------------------
    print(f"\nTraining a vanilla RNN (spectral radius 2) with SGD, lr 0.2, {args.train_steps} steps:\n")
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)      # the unclipped run overflows on purpose
        runs = {"no clipping": train_delay_task(None, args.train_steps, args.seed),
                "clip_grad_norm_(params, 1.0)": train_delay_task(1.0, args.train_steps, args.seed)}
    every = max(1, args.train_steps // 8)
    shown = range(0, args.train_steps, every)
    print(f"  {'step':<58}" + "".join(f"{s:>9}" for s in shown))
    for name, (losses, grad_norms) in runs.items():
        print(f"  {'loss, ' + name:<58}" + "".join(f"{losses[s]:9.2g}" for s in shown))
        print(f"  {'grad norm (before clipping), ' + name:<58}" + "".join(f"{grad_norms[s]:9.2g}" for s in shown))
    plot_clipping(runs, out / "clipping.png")

    write_json(out / "results.json", {
        "T": T, "hidden": H,
        "norms": {name: n.tolist() for name, n in norms.items()},
        "progression": {name: n.tolist() for name, n in progression.items()},
        "clipping": {name: {"loss": [float(v) if np.isfinite(v) else None for v in losses],
                            "grad_norm": [float(v) if np.isfinite(v) else None for v in grad_norms]}
                     for name, (losses, grad_norms) in runs.items()}})
    print(f"\nwrote {out}/gradient_vs_distance.png, vanilla_to_lstm.png, bptt_*{drawn[0].suffix}, clipping.png, "
          f"results.json")


if __name__ == "__main__":
    main()
