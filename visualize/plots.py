"""Plots of training and of gradients through time (matplotlib is an optional extra).

    pip install 'tinygrad_rnn[plots]'

- ``plot_loss``: training and validation loss curves; ``plot_curves``: several named
  curves on one axis (the models an example compares).
- ``hidden_gradient_norms`` and ``plot_gradient_vs_distance``: ||dL/dh_t|| against
  the distance from the loss, for several models on one log axis (vanishing and
  exploding gradients at a glance).
- ``gradient_norm_history`` and ``plot_gradient_histograms``: how each parameter's
  gradient norm is distributed early, midway and late in training.
- ``activation_html`` and ``plot_activation``: a text with each character coloured
  by one cell's value in [-1, 1], as in Karpathy, Johnson and Fei-Fei (2016),
  "Visualizing and understanding recurrent networks".

Each plot returns a ``matplotlib.figure.Figure`` (Jupyter shows it inline) and
saves it to ``path`` when given (.png, .svg or .pdf, from the extension). The
figures are drawn on matplotlib's non-interactive Agg canvas, not through
pyplot. So nothing global changes: there is no backend switch, no window, and no
figure kept alive by pyplot. matplotlib is imported inside the functions, so
``import visualize`` works without it. ``activation_html`` does not need it.

Colours are safe for colour-blind readers. Lines use Okabe and Ito's palette,
told apart by line style and marker as well, which also survives black-and-white
print. Activations use a blue-white-orange diverging scale, with no red/green
pair anywhere.
"""
import html
import math

import numpy as np

from tinygrad_rnn import record_gradients

from .trace import graph_edge

INSTALL_HINT = "pip install 'tinygrad_rnn[plots]'"

# Okabe & Ito (2008), ordered so that the first colours differ most in lightness too
PALETTE = ["#0072B2", "#E69F00", "#000000", "#CC79A7", "#56B4E9", "#009E73", "#D55E00", "#F0E442"]
LINESTYLES = ["-", "--", "-.", ":"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]

# the diverging scale: -1 -> blue, 0 -> white, +1 -> orange (ColorBrewer RdBu's blue, PuOr's orange)
BLUE, WHITE, ORANGE = (5, 113, 176), (255, 255, 255), (230, 97, 1)
NAN_COLOR = "#bdbdbd"
FONT = {"font.size": 13, "axes.titlesize": 15, "axes.labelsize": 13, "legend.fontsize": 12,
        "xtick.labelsize": 12, "ytick.labelsize": 12}


# --- matplotlib, imported on first use --------------------------------------------------
def _matplotlib():
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(f"visualize.plots needs matplotlib, which is an optional extra: {INSTALL_HINT}") from e
    return matplotlib, Figure, FigureCanvasAgg


def _figure(figsize):
    """A Figure on the Agg canvas, with legible fonts (font settings apply while artists are made)."""
    matplotlib, Figure, FigureCanvasAgg = _matplotlib()
    with matplotlib.rc_context(FONT):
        fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, matplotlib.rc_context(FONT)


def _finish(fig, path):
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def _literal(artists):
    """User text ($ signs, braces, backslashes) is drawn as written, never parsed as mathtext."""
    for a in artists:
        a.set_parse_math(False)


def _legend(ax, **kw):
    legend = ax.legend(**kw)
    _literal(legend.get_texts())
    return legend


def _style(i):
    return dict(color=PALETTE[i % len(PALETTE)], linestyle=LINESTYLES[i % len(LINESTYLES)],
                marker=MARKERS[i % len(MARKERS)])


def _as_1d(values, what):
    a = np.asarray(values.numpy() if hasattr(values, "numpy") else values, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D sequence of numbers, got shape {a.shape}")
    return a


# --- loss curves ---------------------------------------------------------------------------
def plot_loss(train, validation=None, *, train_x=None, validation_x=None, xlabel="step", log_y=False,
              title="Loss", path=None):
    """Training (solid, blue) and validation (dashed, orange) loss against step or epoch.

    train, validation: sequences of losses. train_x, validation_x: where each was
    measured (default 0, 1, 2, ...). Validation is usually measured less often, so
    pass its steps. xlabel: "step" or "epoch" (any text). log_y: log-scale loss axis.
    """
    curves = {"train": (train_x, train)}
    if validation is not None:
        curves["validation"] = (validation_x, validation)
    return _plot_curves("plot_loss", curves, xlabel, "loss", log_y, title, path)


def plot_curves(curves, *, xlabel="training step", ylabel="loss", log_y=True, title="Training loss", path=None):
    """Several named curves on one axis, e.g. the training loss of the models an example compares.

    curves: {label: losses} or {label: (steps, losses)}; each curve gets its own colour, line
    style and marker. log_y (default on): log-scale axis, and " (log scale)" after ylabel."""
    return _plot_curves("plot_curves", {k: v if isinstance(v, tuple) else (None, v) for k, v in curves.items()},
                        xlabel, ylabel, log_y, title, path)


def _plot_curves(what, curves, xlabel, ylabel, log_y, title, path):
    """curves: {label: (x or None, y)}; the shared body of plot_loss and plot_curves."""
    named = []
    for label, (x, y) in curves.items():
        y = _as_1d(y, f"{what}: {label}")
        if len(y) == 0:
            raise ValueError(f"{what}: {label} is empty")
        x = np.arange(len(y)) if x is None else _as_1d(x, f"{what}: {label}_x")
        if len(x) != len(y):
            raise ValueError(f"{what}: {label}_x has {len(x)} entries but {label} has {len(y)}")
        named.append((label, x, y))
    fig, fonts = _figure((7, 4.5))
    with fonts:
        ax = fig.add_subplot()
        for i, (label, x, y) in enumerate(named):
            k = i % len(PALETTE)
            ax.plot(x, y, label=label, color=PALETTE[k], linestyle=LINESTYLES[i % len(LINESTYLES)], linewidth=2,
                    marker=None if len(y) > 30 else MARKERS[k])
        if log_y:
            from matplotlib.ticker import LogFormatter
            ax.set_yscale("log")
            # losses often span less than a decade: label some minor ticks too, as plain numbers
            ax.yaxis.set_major_formatter(LogFormatter())
            ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.6)))
        ax.set_xlabel(xlabel, parse_math=False)
        ax.set_ylabel(ylabel + (" (log scale)" if log_y else ""), parse_math=False)
        ax.set_title(title, parse_math=False)
        ax.grid(True, which="both", alpha=0.3)
        _legend(ax)
    return _finish(fig, path)


# --- gradients through time ------------------------------------------------------------------
def _hidden_edges(hidden):
    """The graph edges of h_0 .. h_{T-1}: from a list of tensors, or from the stack that a layer's output came from."""
    if isinstance(hidden, (list, tuple)):
        return [graph_edge(h) for h in hidden]
    node = hidden.grad_fn
    if node is None:
        raise ValueError("hidden_gradient_norms: `hidden` is not part of a graph (it needs no gradient, "
                         "or was made under no_grad())")
    index = hidden._out_idx
    while node.name in ("permute", "reshape"):      # batch_first transposes, unbatched squeezes
        node, index = node.parents[0]
    if node.expand() is not None:                   # a layer's time loop: its output is the stack of its steps
        node = node.expand()[1][index].grad_fn
    if node.name != "stack":
        raise ValueError(f"hidden_gradient_norms: expected the output of a recurrent layer (a stack of h_t) "
                         f"or a list of h_t tensors, got a tensor made by {node.name} (an output that joins several "
                         f"layers or directions has no single h_t per step: pass a list of the h_t you want)")
    return list(node.parents)


def hidden_gradient_norms(loss, hidden):
    """||dL/dh_t|| for t = 0 .. T-1 (time order), from one backward pass of ``loss``.

    hidden: the output of a recurrent layer, (T, B, H), or (B, T, H) with batch_first,
    or (T, H) unbatched. Its time slices are the top layer's h_t. It can also be a list
    of the h_t tensors of a hand-written loop.

    How: ``loss.backward()`` runs inside ``tg.record_gradients()``, and for each h_t
    the contributions that arrive at it are added up. There are two of them: one
    from the output (the loss at step t) and one from step t+1 (the recurrence).
    Their sum is the total dL/dh_t, the same as ``h_t.retain_grad()`` gives. The
    norm is taken over the whole (B, H) gradient. A step that gets no gradient
    gives 0. The backward pass also accumulates the parameters' ``.grad``, as any
    backward does.

    Returns a NumPy array of T floats.
    """
    edges = _hidden_edges(hidden)
    wanted = {(id(node), index) for node, index in edges if index is not None}
    with record_gradients() as records:
        loss.backward()
    totals = {}   # (node, output index) of an h_t -> dL/dh_t, the sum of the contributions that reached it
    for r in records:
        key = (id(r.source), r.source_index)
        if key in wanted:
            g = loss.backend.to_numpy(r.grad).astype(np.float64)
            totals[key] = g if key not in totals else totals[key] + g
    zero = np.zeros(1)
    return np.array([float(np.sqrt(np.sum(totals.get((id(node), index), zero) ** 2))) for node, index in edges])


def plot_gradient_vs_distance(norms, *, title="How far back does the gradient reach?", path=None):
    """||dL/dh_t|| against the distance from the loss, one line per model, on a log axis.

    norms: {model name: sequence of ||dL/dh_t|| for t = 0 .. T-1, in time order}, as
    ``hidden_gradient_norms`` returns. They are drawn at distance T-1-t, the number of
    steps back from the last timestep, which is where a last-step loss sits.
    Values that a log axis cannot show (0, NaN, inf) are left out, and the legend
    says how many.
    """
    if not norms:
        raise ValueError("plot_gradient_vs_distance: norms is empty; expected {model name: norms per timestep}")
    fig, fonts = _figure((7, 4.5))
    with fonts:
        ax = fig.add_subplot()
        for i, (name, values) in enumerate(norms.items()):
            y = _as_1d(values, f"plot_gradient_vs_distance: {name!r}")[::-1]
            d = np.arange(len(y))
            ok = np.isfinite(y) & (y > 0)
            label = str(name) + (f" ({int((~ok).sum())} zero/non-finite not shown)" if not ok.all() else "")
            ax.plot(d[ok], y[ok], label=label, linewidth=2, markersize=5, **_style(i))
        ax.set_yscale("log")
        ax.set_xlabel("distance from the loss (timesteps back)")
        ax.set_ylabel("‖dL/dh_t‖ (log scale)")
        ax.set_title(title, parse_math=False)
        ax.grid(True, which="both", alpha=0.3)
        _legend(ax)
    return _finish(fig, path)


# --- gradient norms over training ---------------------------------------------------------------
def gradient_norm_history(history):
    """{name: [gradient or norm per step]} -> {name: NumPy array of L2 norms per step}.

    An entry may be an array or Tensor (its L2 norm is taken) or a number (already a norm)."""
    out = {}
    for name, steps in history.items():
        norms = []
        for g in steps:
            a = np.asarray(g.numpy() if hasattr(g, "numpy") else g, dtype=np.float64)
            norms.append(float(np.sqrt(np.sum(a * a))) if a.ndim else abs(float(a)))
        out[name] = np.asarray(norms)
    return out


def plot_gradient_histograms(history, *, phases=3, bins=20, steps=None, title="Gradient norms during training",
                             path=None):
    """One panel per parameter: histograms of log10 of its gradient norm, one for each of
    ``phases`` consecutive parts of training (early, middle, late), so that vanishing or
    exploding gradients show as histograms moving apart.

    history: {parameter name: [gradient at step 0, step 1, ...]}. Each entry is an array
    or Tensor (its L2 norm is taken) or a number (already a norm), e.g. collected with
    ``{n: p.grad.numpy() for n, p in model.named_parameters()}`` after each backward.
    steps: the training step of each entry (default 0, 1, 2, ...), used in the legend.
    Norms that are 0 or non-finite have no logarithm. They are left out, and the
    x label says how many.
    """
    norms = gradient_norm_history(history)
    if not norms:
        raise ValueError("plot_gradient_histograms: history is empty; expected {parameter name: [gradients per step]}")
    if phases < 1:
        raise ValueError(f"plot_gradient_histograms: phases must be at least 1, got {phases}")
    n = len(norms)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, fonts = _figure((4.8 * cols, 3.6 * rows + 0.6))
    with fonts:
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        for ax, (name, y) in zip(axes, norms.items()):
            x = np.arange(len(y)) if steps is None else _as_1d(steps, "plot_gradient_histograms: steps")[:len(y)]
            ok = np.isfinite(y) & (y > 0)
            if ok.any():
                logs = np.full(len(y), np.nan)
                logs[ok] = np.log10(y[ok])
                lo, hi = logs[ok].min(), logs[ok].max()
                edges = np.linspace(lo, hi, bins + 1) if hi - lo > 1e-3 else np.linspace(lo - 0.5, hi + 0.5, bins + 1)
                for p, part in enumerate(np.array_split(np.arange(len(y)), min(phases, len(y)))):
                    values = logs[part][ok[part]]
                    color = PALETTE[p % len(PALETTE)]
                    label = f"steps {x[part[0]]:g}–{x[part[-1]]:g}"
                    ax.hist(values, bins=edges, histtype="stepfilled", alpha=0.25, color=color)
                    ax.hist(values, bins=edges, histtype="step", linewidth=2, color=color,
                            linestyle=LINESTYLES[p % len(LINESTYLES)], label=label)
                _legend(ax, fontsize=10)
            bad = int((~ok).sum())
            ax.set_title(str(name), fontsize=13, parse_math=False)
            ax.set_xlabel("log10 ‖gradient‖" + (f"  ({bad} zero/non-finite left out)" if bad else ""))
            ax.set_ylabel("steps")
        for ax in axes[n:]:
            ax.set_visible(False)
        fig.suptitle(title, parse_math=False)
    return _finish(fig, path)


# --- activations over text ------------------------------------------------------------------------
def diverging_color(value):
    """'#rrggbb' for a value in [-1, 1]: -1 blue, 0 white, +1 orange, linear in between.
    Values outside are clipped; NaN is grey."""
    v = float(value)
    if math.isnan(v):
        return NAN_COLOR
    v = max(-1.0, min(1.0, v))
    end = BLUE if v < 0 else ORANGE
    a = abs(v)
    rgb = [round(w + a * (e - w)) for w, e in zip(WHITE, end)]
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _text_color(background):
    """Black on light backgrounds, white on dark ones (relative luminance, WCAG)."""
    r, g, b = (int(background[i:i + 2], 16) / 255 for i in (1, 3, 5))
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
    return "#000000" if 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2] > 0.18 else "#ffffff"


def _visible(c):
    """What to draw for a character: newline, tab and other control characters get a visible sign."""
    if c == "\n":
        return "↵"
    if c == "\t":
        return "⇥"
    if ord(c) < 32 or 127 <= ord(c) < 160 or 0xD800 <= ord(c) <= 0xDFFF:
        return "¤"
    return c


def _values_for(text, values, what):
    if not isinstance(text, str):
        raise TypeError(f"{what}: expected text as a str, got {type(text).__name__}")
    v = _as_1d(values, what)
    if len(v) != len(text):
        raise ValueError(f"{what}: expected one value per character ({len(text)}), got {len(v)} values")
    return v


def _cell_name(cell):
    return f"cell {cell}" if isinstance(cell, (int, np.integer)) else str(cell)


def activation_html(text, values, cell="cell", title=None, path=None):
    """A standalone HTML page: ``text`` with each character's background coloured by
    ``values`` (one per character, in [-1, 1]: blue -1, white 0, orange +1).

    cell: the cell's name or index (an int i gives "cell i"), used in the title.
    Newlines show as ↵ (and break the line), tabs as ⇥, and other control characters as ¤.
    Hovering a character shows its value. Everything is escaped, and the page is
    also well-formed XML. Returns the HTML text, and writes it (UTF-8) to ``path``
    when given. Needs no matplotlib.
    """
    v = _values_for(text, values, "activation_html")
    cell = _cell_name(cell)
    title = f"Activation of {cell} over the text" if title is None else str(title)
    esc = html.escape
    spans = []
    for c, x in zip(text, v):
        bg = diverging_color(x)
        shown = _visible(c)
        tip = f"{x:.3f}" + ("" if shown == c else f" (U+{ord(c):04X})")
        special = " special" if shown != c else ""
        spans.append(f'<span class="c{special}" style="background-color:{bg};color:{_text_color(bg)}" '
                     f'title="{esc(tip)}">{esc(shown)}</span>')
        if c == "\n":
            spans.append("<br/>")   # and no literal newline: the div is white-space: pre-wrap
    legend = "".join(f'<span class="swatch" style="background-color:{diverging_color(x)};'
                     f'color:{_text_color(diverging_color(x))}">{x:g}</span>'
                     for x in np.linspace(-1, 1, 9))
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8"/>
<title>{esc(title)}</title>
<style>
body {{ font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; font-size: 16px; margin: 2em; color: #111; }}
h1 {{ font-size: 1.4em; }}
.text {{ font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 18px; line-height: 1.7;
         white-space: pre-wrap; word-break: break-all; }}
.special {{ opacity: 0.8; }}
.legend {{ margin: 0.5em 0 1.5em; }}
.swatch {{ display: inline-block; width: 3.2em; text-align: center; font-size: 13px; padding: 0.2em 0; }}
</style>
</head>
<body>
<h1>{esc(title)}</h1>
<p>Each character is coloured by the value of {esc(cell)} there: blue is −1, white 0, orange +1.
↵ is a newline, ⇥ a tab, ¤ another control character. Hover over a character to see its value.</p>
<div class="legend">{legend}</div>
<div class="text">{"".join(spans)}</div>
</body>
</html>
"""
    if path is not None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(page)
    return page


def plot_activation(text, values, cell="cell", title=None, width=64, path=None):
    """The same picture as ``activation_html``, as a matplotlib figure (PNG/SVG/PDF via ``path``).

    Characters sit in a grid ``width`` columns wide. Lines break at newlines (drawn
    as ↵) and at the width. A colour bar gives the scale. Draw a few hundred
    characters at most: every character is a text artist. For long texts use
    ``activation_html``.
    """
    v = _values_for(text, values, "plot_activation")
    cell = _cell_name(cell)
    title = f"Activation of {cell} over the text" if title is None else str(title)
    if width < 1:
        raise ValueError(f"plot_activation: width must be at least 1, got {width}")
    # lay out: (row, col) for each character
    places, row, col = [], 0, 0
    for c in text:
        if col == width:
            row, col = row + 1, 0
        places.append((row, col))
        col += 1
        if c == "\n":
            row, col = row + 1, 0
    rows = max(1, places[-1][0] + 1 if places else 1)
    cols = max(1, min(width, max((p[1] + 1 for p in places), default=1)))
    grid = np.ones((rows, cols, 3))
    for (r, k), x in zip(places, v):
        bg = diverging_color(x)
        grid[r, k] = [int(bg[i:i + 2], 16) / 255 for i in (1, 3, 5)]

    matplotlib, _, _ = _matplotlib()
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LinearSegmentedColormap, Normalize
    fig_width = max(5.0, 0.16 * cols + 0.8)     # about one 12-point monospace character per column
    fig, fonts = _figure((fig_width, 0.34 * rows + 1.9))
    with fonts:
        ax = fig.add_subplot()
        ax.imshow(grid, aspect="auto", interpolation="nearest", extent=(-0.5, cols - 0.5, rows - 0.5, -0.5))
        for (r, k), c, x in zip(places, text, v):
            shown = _visible(c)
            if shown != " ":
                ax.text(k, r, shown, ha="center", va="center", family="DejaVu Sans Mono", fontsize=12,
                        color=_text_color(diverging_color(x)), parse_math=False)
        ax.set_xticks([])
        ax.set_yticks([])
        for side in ax.spines.values():
            side.set_visible(False)
        ax.set_title(title, parse_math=False)
        cmap = LinearSegmentedColormap.from_list("blue_white_orange", [np.asarray(c) / 255 for c in (BLUE, WHITE, ORANGE)])
        bar = fig.colorbar(ScalarMappable(Normalize(-1, 1), cmap), ax=ax, orientation="horizontal",
                           fraction=0.08, aspect=30, shrink=min(1.0, 5 / fig_width))
        bar.ax.set_xlabel(f"value of {cell}", parse_math=False)
        bar.set_ticks([-1, -0.5, 0, 0.5, 1])
    return _finish(fig, path)
