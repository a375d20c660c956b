"""The pictures: ``draw_bptt`` (the graph unrolled through time) and ``draw_graph`` (the op graph).

Each runs the pipeline once, every stage reading only what the one before it made:

    trace (trace.py, record.py)  tensor history -> plain nodes and edges (+ one recorded backward)
    unroll (unroll.py)           scopes -> rows and time columns, at a level of detail
    annotate (annotate.py)       labels, gradients, highlights, legend
    layout (layout.py)           positions and edge routes
    render (render.py)           a graphviz.Digraph (the only module that imports graphviz)

Each returns a ``graphviz.Digraph``: ``.source`` is the DOT text, Jupyter displays it,
``.render("name", format="png")`` writes a file (or ``visualize.save(dg, "x.svg")``);
``.picture`` is the annotated Picture it was drawn from.
"""
from tinygrad_rnn.autograd import GraphFreedError
from tinygrad_rnn.tensor import Tensor

from .annotate import annotate, annotate_op_graph
from .layout import layout
from .record import record
from .render import to_digraph
from .trace import find, trace
from .collapse import fit, op_graph
from .unroll import DEFAULT_MAX_NODES, place


def roots_of(loss):
    """The tensors a picture is drawn from: ``loss`` or a list of them."""
    if isinstance(loss, Tensor):
        return [loss]
    if isinstance(loss, (list, tuple)):
        return list(loss)
    raise TypeError(f"expected a Tensor or a list of Tensors, got {type(loss).__name__}")


def tensor_specs(traced, spec):
    """A highlight for annotate: tensors replaced by their (node id, output index) in ``traced``."""
    if spec is None:
        return None
    out = []
    for s in (spec if isinstance(spec, (list, tuple)) else [spec]):
        if isinstance(s, Tensor):
            found = find(traced, s)
            if found is None:
                raise ValueError(f"highlight: the tensor{' ' + repr(s.name) if s.name else ''} of shape {s.shape} "
                                 f"is not part of this graph")
            s = found
        out.append(s)
    return out


def draw_bptt(loss, level="op", gradients=False, highlight=None, timesteps=None, show_values=False,
              formulas=False, params=None, max_nodes=DEFAULT_MAX_NODES, memory=False, keep_grads=False,
              highlight_from=None, edge_labels=True, title=None, input_gradients=False):
    """The graph of ``loss`` laid out through time, like the unrolled figures of the lecture.

    Time runs left to right, one cluster per timestep (per layer and direction); inputs
    at the bottom, losses at the top; state edges run from t to t+1 (right to left for
    a reverse direction); each shared parameter is drawn once, with one edge per use.

    level: "op" (every primitive op), "cell" (one box per cell call: the notes'
        "representational shortcut"), "layer" (one box per layer and direction).
    gradients: run ``loss.backward(retain_graph=True)`` with recording and draw, with arrows
        pointing backward, the part of the gradient each edge carries: its share of the
        gradient G of the tensor it starts from, <g, G> / ||G|| (the number on the edge; width
        and colour on a log scale), so that the numbers on the edges out of a tensor add up to
        its ||dL/d.||; ||dL/dh_t|| per timestep; each shared weight's gradient as the sum of its
        uses' shares. An edge without gradient has no arrowhead. The leaves' ``.grad`` are
        restored afterwards (``keep_grads=True`` keeps them, as after a plain backward).
    highlight: a Tensor, a parameter name ("rnn.weight_hh_l0" or "W_hh"), a tensor name
        ("h_0", "L_4"), or "h_<t>"/"c_<t>" (the state made at step t, in every row):
        every path from the loss (or ``highlight_from``) to it gets a vermillion underlay
        (the edges keep their own colours) and its boxes a vermillion border.
    timesteps: show only some steps: k (the first and last k), (first, last), or a list of t.
    show_values, formulas: numbers of tensors (intermediates need ``tg.retain_values()``)
        and each op's local derivative.
    input_gradients: ||dL/dx_t|| in every input's box (one-hot characters, features: the
        gradient of the op that reads them times its weight, dZ W_ih; ids looked up by an
        embedding: the gradient of each looked-up row E[x_t]), the largest marked. Data needs
        no gradient to train, so backward never makes one: it is computed for the picture.
    params: {name: tensor} to name leaves. memory: bytes saved for backward per step.
    max_nodes: above it, collapse to a coarser level, then elide timesteps (said in the picture).
    """
    roots = roots_of(loss)
    traced = trace(roots, params)
    grads = record(traced, roots, keep_grads) if gradients or input_gradients else None
    placed, rows = place(traced)
    unrolled = fit(placed, rows, level, timesteps, max_nodes)
    opts = dict(show_values=show_values, gradients=gradients, formulas=formulas, memory=memory,
                edge_labels=edge_labels, level=level, input_gradients=input_gradients)
    pic = annotate(unrolled, grads, opts, tensor_specs(traced, highlight), tensor_specs(traced, highlight_from),
                   notes=grads.notes if grads is not None else (), title=title)
    out = to_picture(pic, layout(pic) if pic.positioned else None)
    out.gradients = grads
    return out


def to_picture(pic, placement, name="bptt"):
    """The Digraph of an annotated picture, with the picture and its placement attached."""
    out = to_digraph(pic, placement, name=name)
    out.picture, out.placement = pic, placement
    return out


def draw_graph(tensor, show_values=True, show_grads=False, formulas=False, params=None,
               max_nodes=DEFAULT_MAX_NODES, title=None):
    """The op graph that produced ``tensor`` (micrograd's draw_dot / torchviz, with more in each box).

    Op nodes (grey, small: the op and, with ``formulas=True``, its local derivative; the
    derivative is always the SVG tooltip) alternate with tensor nodes (name, shape, and
    numbers: a scalar or tiny tensor shows its values). Parameters, inputs, constants and
    the loss are styled apart; a legend explains them.

    show_values: numbers of tensors. Leaves always have them; intermediates only if the
        graph was built inside ``with tg.retain_values():`` (the legend says so).
    show_grads: run one recorded backward (``.grad`` is left as it was) and show each
        tensor's gradient norm; if the graph was already freed, leaf ``.grad`` is shown.
    params: {name: tensor} to name leaves (torchviz's ``params=``).
    """
    roots = roots_of(tensor)
    traced = trace(roots, params)
    notes, grads = [], None
    opts = dict(show_values=show_values, gradients=False, formulas=formulas, show_grads=show_grads)
    if show_grads:
        try:
            grads = record(traced, roots)
            opts["gradients"] = True
        except GraphFreedError:
            notes.append("the graph was freed by an earlier backward(): only the leaves' .grad are shown")
    placed, rows = place(traced)
    pic = annotate_op_graph(op_graph(placed, max_nodes), grads, opts, notes=notes, title=title)
    return to_picture(pic, None, name="graph")
