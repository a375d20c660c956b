"""Forecasting a noisy driven oscillator: a state-space RNN (many-to-one, many-to-many) and a NARX network.

The lecture notes ("Deep Learning Recurrent Networks", slides "Examples of infinite
response systems", "NARX Networks" and "the state-space model") describe two
ways for a network to have an infinite memory:

    NARX, "nonlinear autoregressive network with exogenous inputs":
        Y_t = f(X_t, ..., X_{t-L}, Y_{t-1}, ..., Y_{t-K})    recursion from the OUTPUT
        "Inputs may use either past predicted output values, or past true values"
    the state-space model (a recurrent neural network):
        h_t = f(x_t, h_{t-1}),  y_t = g(h_t)                 recursion through a hidden STATE
        "State summarizes information about the entire past"

and the shapes a recurrent network can have ("Variants on recurrent nets"):
many-to-one (read a sequence, answer once) and many-to-many (answer at every step).

The series: a damped oscillator (period 20 steps, damping ratio zeta = 0.15,
dt = 1) pushed around by an external force u_t (the exogenous input, known),
with small random kicks to its velocity (not known) and noisy observations:

    v_{t+1} = v_t - w^2 p_t - 2 zeta w v_t + u_t + kick_t,   p_{t+1} = p_t + v_{t+1},   y_t = p_t + noise_t

Three forecasters, all trained on the first 75% of one long series and tested on the rest:

1. many-to-one RNN: reads the last 24 observations y and forces u, and predicts
   the next observation (a one-step-ahead forecast, one answer per window).
2. many-to-many state-space RNN: reads only the force u_1..u_T and answers y_t at
   every step. Its state must play the role of the oscillator's position and
   velocity; it never sees y, so it can forecast arbitrarily far ahead, but it
   cannot know the random kicks.
3. NARX: an MLP that maps the last 4 outputs and the last 4 forces to the next
   output. Trained on true past outputs, it forecasts by feeding back its own
   predictions ("closed loop"), 60 steps ahead from the end of the known data.

Run:    python examples/time_series.py            (about 20 s)
        python examples/time_series.py --quick    (a few seconds)
Writes: out/time_series/forecast.png (each forecast against the truth), loss.png, results.json
"""
import time

import _common  # noqa: F401  (first: one BLAS thread, and this checkout's tinygrad_rnn and visualize on the path)
import numpy as np
import tinygrad_rnn as tg
from _common import fill_defaults, make_parser, positive_int, setup, write_json
from tinygrad_rnn import nn
from tinygrad_rnn.nn import functional as F
from visualize.plots import plot_curves

WINDOW = 24        # many-to-one: observations read per forecast
K = L = 4          # NARX: past outputs and forces it sees
HORIZON = 60       # NARX: closed-loop forecast length
MIN_LENGTH = 400   # the test part (the last 25%) must hold a window and the NARX horizon
DEFAULTS = dict(length=4000, steps=1500)
QUICK = dict(length=2000, steps=300)       # what --quick changes (an option given on the command line wins)


# --- the series ---------------------------------------------------------------------------------------
def driven_oscillator(rng, n, period=20.0, zeta=0.15, kick=0.02, obs_noise=0.05):
    """(u, y): the force and the observed position, n steps each, y centred and scaled to mean 0 and
    standard deviation 1 (so "always predict 0" is "always predict the mean")."""
    w = 2 * np.pi / period
    u = np.zeros(n)
    for t in range(1, n):                     # a smooth random force: AR(1) noise
        u[t] = 0.95 * u[t - 1] + 0.05 * rng.standard_normal()
    p = v = 0.0
    y = np.zeros(n)
    for t in range(n):
        y[t] = p
        v = v + (-w * w * p - 2 * zeta * w * v + u[t]) + kick * rng.standard_normal()
        p = p + v
    y = (y - y.mean()) / y.std() + obs_noise * rng.standard_normal(n)
    return (u / u.std()).astype(np.float32), y.astype(np.float32)


# --- the models -----------------------------------------------------------------------------------------
class ManyToOne(nn.Module):
    """h_t = tanh(W_ih [y_t, u_{t+1}] + W_hh h_{t-1} + b) over the window; the forecast is w . h_last + b."""

    def __init__(self, hidden_size):
        super().__init__()
        self.rnn = nn.RNN(2, hidden_size)
        self.out = nn.Linear(hidden_size, 1)

    def forward(self, x):                     # x: (WINDOW, B, 2) -> (B,)
        h, _ = self.rnn(x)
        return self.out(h[-1]).squeeze(-1)


class StateSpace(nn.Module):
    """The notes' state-space model: h_t = tanh(W_ih u_t + W_hh h_{t-1} + b), y_t = w . h_t + b, at every t."""

    def __init__(self, hidden_size):
        super().__init__()
        self.rnn = nn.RNN(1, hidden_size)
        self.out = nn.Linear(hidden_size, 1)

    def forward(self, u):                     # u: (T, B, 1) -> (T, B)
        h, _ = self.rnn(u)
        return self.out(h).squeeze(-1)


class NARX(nn.Module):
    """y_t = MLP(y_{t-1}, ..., y_{t-K}, u_t, ..., u_{t-L+1}): no state, its memory is its own past outputs."""

    def __init__(self, hidden_size):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(K + L, hidden_size), nn.Tanh(), nn.Linear(hidden_size, 1))

    def forward(self, past_y, u):             # (B, K) newest first, (B, L) newest first -> (B,)
        return self.net(tg.Tensor(np.concatenate([past_y, u], axis=1).astype(np.float32))).squeeze(-1)


# --- the three training sets ------------------------------------------------------------------------------
def windows(u, y, ends):
    """Many-to-one: for each end t, x = [(y_s, u_{s+1}) for s in t-WINDOW+1..t] (WINDOW, B, 2), target y_{t+1}."""
    idx = np.asarray(ends)[None, :] + np.arange(-WINDOW + 1, 1)[:, None]        # (WINDOW, B)
    return np.stack([y[idx], u[idx + 1]], axis=-1), y[np.asarray(ends) + 1]


def narx_rows(u, y, ts):
    """NARX: for each t, (past y newest first, u_t..u_{t-L+1}) and the target y_t."""
    ts = np.asarray(ts)
    past = y[ts[:, None] - 1 - np.arange(K)]
    force = u[ts[:, None] - np.arange(L)]
    return past, force, y[ts]


def train(step_fn, params, steps, lr):
    opt = tg.optim.Adam(params, lr=lr)
    losses = []
    for step in range(steps):
        loss = step_fn()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def narx_closed_loop(model, u, y, start, horizon):
    """Forecast y[start : start + horizon] from the true y before ``start``, feeding back each prediction."""
    known = list(y[start - K:start])
    with tg.no_grad():
        for t in range(start, start + horizon):
            past = np.array(known[-K:][::-1])[None]
            force = u[t - np.arange(L)][None]
            known.append(float(model(past, force).numpy()[0]))
    return np.array(known[K:])


def rmse(a, b):
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def plot_forecasts(panels, path):
    """One panel per model: the truth, the forecast, and where the forecast starts."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(11, 8.5), layout="constrained")
    axes = fig.subplots(len(panels), 1)
    for ax, (title, t, truth, t_f, forecast, start) in zip(axes, panels):
        ax.plot(t, truth, color="black", linewidth=1.5, label="truth (observed y)")
        ax.plot(t_f, forecast, color="#D55E00", linewidth=2, linestyle="--", label="forecast")
        if start is not None:
            ax.axvline(start, color="#0072B2", linewidth=1.5, linestyle=":", label="forecast starts (no more y)")
        ax.set_title(title, fontsize=12)
        ax.set_ylabel("y")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper right", fontsize=9)
    axes[-1].set_xlabel("time step (test part of the series)")
    fig.savefig(path, dpi=110)


def main():
    parser = make_parser(__doc__, out="out/time_series")
    parser.add_argument("--length", type=positive_int,
                        help=f"length of the series, at least {MIN_LENGTH} (default: 4000; --quick: 2000)")
    parser.add_argument("--hidden", type=positive_int, default=32, help="hidden units of each model (default: 32)")
    parser.add_argument("--steps", type=positive_int, help="training steps of each model (default: 1500; --quick: 300)")
    args = fill_defaults(parser.parse_args(), DEFAULTS, QUICK)
    if args.length < MIN_LENGTH:
        parser.error(f"--length must be at least {MIN_LENGTH} (the last quarter is the test part), got {args.length}")
    out = setup(args)
    rng = np.random.default_rng(args.seed)

    u, y = driven_oscillator(rng, args.length)
    split = int(0.75 * args.length)
    print(f"A driven oscillator, {args.length} steps: training on t < {split}, testing on t >= {split}.\n")

    # 1. many-to-one: one-step-ahead forecasts from windows of the past
    m2o = ManyToOne(args.hidden)

    def m2o_step():
        x, target = windows(u, y, rng.integers(WINDOW, split - 1, size=64))
        return F.mse_loss(m2o(tg.Tensor(x)), tg.Tensor(target))
    t0 = time.time()
    m2o_loss = train(m2o_step, m2o.parameters(), args.steps, lr=0.005)
    test_ends = np.arange(split + WINDOW, args.length - 1)
    with tg.no_grad():
        x, target = windows(u, y, test_ends)
        m2o_pred = m2o(tg.Tensor(x)).numpy()
    print(f"many-to-one RNN   trained in {time.time() - t0:4.1f} s: loss {m2o_loss[0]:.3f} -> "
          f"{np.mean(m2o_loss[-20:]):.4f}")

    # 2. many-to-many state-space RNN: y from u alone, at every step
    ssm = StateSpace(args.hidden)
    chunk, burn_in = 60, 20           # the first steps of a chunk only warm the state up (it starts at 0)

    def ssm_step():
        starts = rng.integers(0, split - chunk, size=32)
        idx = starts[None, :] + np.arange(chunk)[:, None]             # (chunk, B)
        pred = ssm(tg.Tensor(u[idx][..., None]))
        return F.mse_loss(pred[burn_in:], tg.Tensor(y[idx][burn_in:]))
    t0 = time.time()
    ssm_loss = train(ssm_step, ssm.parameters(), args.steps, lr=0.005)
    with tg.no_grad():   # run over the whole series: the state carries everything the force did so far
        ssm_pred = ssm(tg.Tensor(u[:, None, None])).numpy()[:, 0]
    print(f"state-space RNN   trained in {time.time() - t0:4.1f} s: loss {ssm_loss[0]:.3f} -> "
          f"{np.mean(ssm_loss[-20:]):.4f}")

    # 3. NARX: open-loop training on true past outputs, closed-loop forecast
    narx = NARX(args.hidden)

    def narx_step():
        past, force, target = narx_rows(u, y, rng.integers(K, split, size=64))
        return F.mse_loss(narx(past, force), tg.Tensor(target))
    t0 = time.time()
    narx_loss = train(narx_step, narx.parameters(), args.steps, lr=0.005)
    start = split + WINDOW
    narx_pred = narx_closed_loop(narx, u, y, start, HORIZON)
    print(f"NARX network      trained in {time.time() - t0:4.1f} s: loss {narx_loss[0]:.3f} -> "
          f"{np.mean(narx_loss[-20:]):.4f}\n")

    # --- how good? ---------------------------------------------------------------------------------
    test = slice(split, args.length)
    results = {
        "many_to_one": {"rmse": rmse(m2o_pred, target), "loss": m2o_loss},
        "state_space": {"rmse": rmse(ssm_pred[test], y[test]), "loss": ssm_loss},
        "narx": {"rmse": rmse(narx_pred, y[start:start + HORIZON]), "loss": narx_loss},
        "baselines": {"persistence": rmse(y[test_ends], y[test_ends + 1]), "zero": rmse(0 * y[test], y[test])},
    }
    print("Root-mean-square error on the test part (y has mean 0 and standard deviation 1):\n")
    rows = [("many-to-one RNN", "one step ahead, from the last 24 y and u", results["many_to_one"]["rmse"]),
            ("state-space RNN", f"all {args.length - split} test steps, from u only", results["state_space"]["rmse"]),
            ("NARX, closed loop", f"{HORIZON} steps ahead, feeding back its outputs", results["narx"]["rmse"]),
            ("baseline", "one step ahead: y_{t+1} = y_t", results["baselines"]["persistence"]),
            ("baseline", "always 0 (the mean of the series)", results["baselines"]["zero"])]
    for name, what, value in rows:
        print(f"  {name:<18} {what:<48} {value:.3f}")

    span = np.arange(split, min(split + 200, args.length - 1))        # the first 200 test steps
    rmses = {name: results[name]["rmse"] for name in ("many_to_one", "state_space", "narx")}
    plot_forecasts([
        (f"many-to-one RNN: one step ahead from the last {WINDOW} observations (RMSE {rmses['many_to_one']:.3f})",
         span, y[span], test_ends[:len(span) - WINDOW] + 1, m2o_pred[:len(span) - WINDOW], None),
        (f"many-to-many state-space RNN: from the force u alone, never sees y (RMSE {rmses['state_space']:.3f})",
         span, y[span], span, ssm_pred[span], None),
        (f"NARX: {HORIZON} steps ahead, closed loop on its own outputs (RMSE {rmses['narx']:.3f})",
         span, y[span], np.arange(start, start + HORIZON), narx_pred, start),
    ], out / "forecast.png")
    plot_curves({"many-to-one RNN": m2o_loss, "state-space RNN (many-to-many)": ssm_loss, "NARX (MLP)": narx_loss},
                ylabel="mean squared error", title="Driven oscillator: training loss", path=out / "loss.png")
    write_json(out / "results.json", results)
    print(f"\nwrote {out / 'forecast.png'}, {out / 'loss.png'} and {out / 'results.json'}")


if __name__ == "__main__":
    main()
