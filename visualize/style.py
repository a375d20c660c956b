"""Colours, sizes and number formats: what every mark of the pictures means.

Categories use light tints of the Okabe-Ito palette (safe for the common forms of
colour blindness) and differ in border as well, so they survive black-and-white
printing. Gradient magnitudes use one sequential ramp (viridis, reversed and
trimmed so the faintest colour still shows on white): dark purple and thick =
large, light green and thin = small, on a log scale. Never red against green.
"""
import math
import re

FONT = "Helvetica"
FONT_SIZE = 14          # legible when projected
SMALL = 11
TITLE = 18

# viridis at 0.0, 0.1, ..., 0.8 (its light yellow end is dropped: invisible on white)
VIRIDIS = ["#440154", "#482475", "#414487", "#355f8d", "#2a788e", "#21918c", "#22a884", "#44bf70", "#7ad151"]
GRAD_BINS = len(VIRIDIS)
MIN_WIDTH, MAX_WIDTH = 1.0, 5.0
ZERO_GRAD = "#bbbbbb"

# node roles: (fill, border colour, border width, table style)
NODE = {
    "op":         ("#ffffff", "#555555", 1, "rounded"),
    "cell":       ("#e3ecf7", "#2f5d8a", 2, "rounded"),
    "readout":    ("#f2ecf8", "#6a4c93", 1, "rounded"),
    "group":      ("#f0f0f0", "#555555", 1, "rounded"),
    "layer":      ("#e3ecf7", "#2f5d8a", 2, "rounded"),
    "projection": ("#eef4ea", "#4d7a3a", 1, "rounded"),
    "param":      ("#fde8c8", "#b86e00", 2, ""),
    "leaf":       ("#fff3b0", "#9a8000", 2, ""),
    "input":      ("#e6f4ea", "#3d7a4f", 1, ""),
    "const":      ("#ffffff", "#aaaaaa", 1, ""),
    "cut":        ("#ffffff", "#666666", 1, "dashed"),
    "loss":       ("#f8dcea", "#a0467b", 2, "rounded"),
    "root":       ("#f3c3da", "#7d2a5a", 3, "rounded"),
    "ellipsis":   ("#ffffff", "#999999", 1, "dashed"),
    "note":       ("#ffffff", "#999999", 0, ""),
    "tensor":     ("#ffffff", "#555555", 1, ""),
    "opnode":     ("#eeeeee", "#888888", 1, "rounded"),
}
HIGHLIGHT = "#D55E00"      # Okabe-Ito vermillion: the highlighted path, a non-finite value
SUSPECT = "#CC79A7"        # reddish purple: a gradient that disagrees with finite differences
UNDERLAY = 5.0             # a highlighted edge's vermillion underlay is this much wider than the edge
PENDING = "#d9d9d9"        # step-through: an edge whose gradient backward has not sent yet

# one colour per parameter: its box's border and its lanes, so each lane can be followed to its
# use (Okabe-Ito and Tol hues that are neither the state's blue, nor the highlight's vermillion,
# nor on the gradients' viridis ramp)
PARAM_COLOURS = ["#E69F00", "#CC79A7", "#8C510A", "#000000", "#56B4E9", "#999933", "#882255", "#777777"]
LANE_WIDTH = 1.4        # a parameter's lane without gradients
HOVER = "SVG and HTML: hover over a box or an edge for what it computes (and an op's local derivative)"

# edge roles: (colour, width, style)
EDGE = {
    "data":   ("#555555", 1.2, "solid"),
    "param":  ("#b86e00", 1.0, "solid"),
    "state":  ("#0072B2", 2.6, "solid"),
    "accum":  ("#999999", 1.0, "solid"),
    "cut":    ("#666666", 1.8, "dashed"),
    "ellipsis": ("#999999", 1.2, "dotted"),
}
CLUSTER = {
    "time":    ("#fafafa", "#9aa9bb"),
    "reverse": ("#fbf8f3", "#b9a58c"),
    "legend":  ("#ffffff", "#cccccc"),
}


def fmt(x):
    """A number in at most 4 significant characters' worth of precision: 0.0312, 1.25, 3.1e-05."""
    if x is None:
        return "?"
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    a = abs(x)
    if 1e-2 <= a < 1e4:
        digits = max(0, 2 - int(math.floor(math.log10(a))))
        s = f"{x:.{digits}f}"
        return s
    return f"{x:.2e}".replace("e-0", "e-").replace("e+0", "e+")


def fmt_sum(total, parts):
    """(text of ``total``, [texts of ``parts``]): ``total`` as ``fmt`` writes it, and each part
    on the same grid of digits, rounded so that the printed parts add up to the printed total
    (largest remainders; the parts must add up to ``total`` before rounding). A part that is
    exactly 0 is "0"."""
    shown = fmt(total)
    a = abs(float(total))
    if not parts or a == 0 or not math.isfinite(a):
        return shown, [fmt(p) for p in parts]
    if 1e-2 <= a < 1e4:
        digits = max(0, 2 - int(math.floor(math.log10(a))))
        unit, exp = 10.0 ** -digits, None
    else:
        exp = int(shown.split("e")[1])
        digits, unit = 2, 10.0 ** (exp - 2)
    want = round(float(shown) / unit)
    scaled = [p / unit for p in parts]
    counts = [math.floor(x) for x in scaled]
    order = sorted(range(len(parts)), key=lambda i: counts[i] - scaled[i])      # largest remainder first
    for i in order[:max(0, want - sum(counts))]:
        counts[i] += 1

    def text(c, p):
        if p == 0:
            return "0"
        if exp is None:
            return f"{c * unit:.{digits}f}"
        return f"{c / 100:.2f}e{exp}"
    return shown, [text(c, p) for c, p in zip(counts, parts)]


def signed(text):
    """"+0.052" for "0.052"; a negative or zero text as it is."""
    return text if text.startswith("-") or text == "0" else "+" + text


def fmt_bytes(n):
    n = int(n)
    for unit in ("B", "kB", "MB"):
        if n < 1000:
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} GB"


class GradScale:
    """Log-scale mapping from a gradient norm to (colour, width), shared by the whole picture.

    ``level(norm)`` is 0 for the smallest non-zero norm drawn and GRAD_BINS-1 for the
    largest; colour and width grow monotonically with it."""

    def __init__(self, norms):
        finite = [n for n in norms if n is not None and n > 0 and math.isfinite(n)]
        self.lo = min(finite) if finite else 1.0
        self.hi = max(finite) if finite else 1.0
        self.empty = not finite

    def fraction(self, norm):
        if norm is None or not norm > 0:
            return None
        if not math.isfinite(norm):
            return 1.0
        if self.hi <= self.lo * (1 + 1e-12):
            return 1.0
        f = (math.log10(norm) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        return min(1.0, max(0.0, f))

    def level(self, norm):
        f = self.fraction(norm)
        if f is None:
            return None
        return min(GRAD_BINS - 1, int(f * GRAD_BINS))

    def colour(self, norm):
        k = self.level(norm)
        return ZERO_GRAD if k is None else VIRIDIS[GRAD_BINS - 1 - k]

    def width(self, norm):
        f = self.fraction(norm)
        if f is None:
            return MIN_WIDTH * 0.8
        k = self.level(norm)
        return round(MIN_WIDTH + (MAX_WIDTH - MIN_WIDTH) * k / (GRAD_BINS - 1), 2)

    def bins(self):
        """(colour, width, low, high) for each level, smallest first: the legend's rows."""
        if self.empty:
            return []
        out = []
        lg_lo, lg_hi = math.log10(self.lo), math.log10(self.hi)
        for k in range(GRAD_BINS):
            a = 10 ** (lg_lo + (lg_hi - lg_lo) * k / GRAD_BINS)
            b = 10 ** (lg_lo + (lg_hi - lg_lo) * (k + 1) / GRAD_BINS)
            out.append((VIRIDIS[GRAD_BINS - 1 - k], round(MIN_WIDTH + (MAX_WIDTH - MIN_WIDTH) * k / (GRAD_BINS - 1), 2), a, b))
        if self.hi <= self.lo * (1 + 1e-12):
            return [out[-1][:2] + (self.lo, self.hi)]
        return out


# --- text ----------------------------------------------------------------------------------
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffe\uffff]")
MAX_TEXT = 72           # characters of one label row; longer text is cut with an ellipsis


def clean(text, limit=MAX_TEXT):
    """Text safe for any output: valid UTF-8, no control characters, at most ``limit`` chars.
    (The renderer escapes what it draws; the layout measures the same cut text.)"""
    s = str(text)
    s = s.encode("utf-8", "replace").decode("utf-8")            # lone surrogates -> '?'
    s = s.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    s = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", s)
    if len(s) > limit:
        s = s[:limit - 1] + "\u2026"
    return s
