"""Names from the maths: W_hh for ``rnn.weight_hh_l0``, the scopes of a time loop, the state's names.

Every stage reads names the same way, so they live here, below all of them (this module
imports nothing of the package).
"""
import re

PARAM = re.compile(r"^(?:(?P<module>.*)\.)?(?P<kind>weight|bias)(?:_(?P<which>ih|hh|cif|co)_l(?P<layer>\d+)"
                   r"(?P<rev>_reverse)?)?$")
SUP = str.maketrans("0123456789", "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079")
TIME = re.compile(r"^t=(-?\d+)$")                 # the scope of one timestep: "t=3"
LAYER = re.compile(r"^layer(\d+)(_reverse)?$")     # the scope of one layer and direction
STATE_NAME = re.compile(r"^(h|c|s|state|hidden|cell)(_?\{?-?\d+\}?|_t|_prev)?$")


def alias(name):
    """A short name from the maths for a PyTorch parameter name: rnn.weight_hh_l0 -> W_hh,
    rnn.weight_hh_l1 -> W_hh\u207d\u00b9\u207e (layer 1), weight_hh_l0_reverse -> W_hh\u2190."""
    if not name:
        return None
    m = PARAM.match(name)
    if not m:
        return name
    letter = "W" if m.group("kind") == "weight" else "b"
    which = m.group("which")
    if which is None:
        module = (m.group("module") or "").split(".")[-1]
        return f"{letter}_{module}" if module else letter
    s = f"{letter}_{which}"
    if m.group("layer") and m.group("layer") != "0":
        s += f"\u207d{m.group('layer').translate(SUP)}\u207e"
    if m.group("rev"):
        s += "\u2190"
    return s


def looks_like_parameter(name):
    """A weight or a bias by its name (``weight_hh_l0``, ``fc.bias``)."""
    return bool(name and PARAM.match(name))


def short(name, limit=14):
    """A tensor's name for use inside another label ("x_1 = 'h'" -> "x_1")."""
    if not name:
        return None
    s = str(name).split(" = ")[0]
    return s if len(s) <= limit else s[:limit - 1] + "\u2026"


def safe_id(text, limit=24):
    """A piece of a node id: letters, digits and underscores only."""
    return re.sub(r"[^A-Za-z0-9_]", "_", str(text))[:limit].strip("_") or "x"


def time_of(scope):
    """(position in ``scope`` of its "t=<t>" part, t), or (None, None) outside a time loop."""
    for i, s in enumerate(scope):
        m = TIME.match(s)
        if m:
            return i, int(m.group(1))
    return None, None
