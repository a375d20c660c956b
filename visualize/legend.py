"""Stage 3, annotate (continued): the legend, and a few words for any box.

Every row of a legend explains a mark that is in its picture, and its examples are sums
taken from the picture's own numbers. Reads a Picture (annotate.py) as it is being made.
"""
import re

from . import labels as L
from . import style as S
from .names import alias
from .record import array_norm
from .unroll import state_outputs


def describe(pic, node_id):
    """A few words for a box: its name, op or title, and its timestep."""
    node = pic.graph.nodes[node_id]
    box = pic.boxes.get(node_id)
    what = node.name if node.kind in ("param", "leaf", "input", "const", "cut") else None
    if what is None:
        what = box.lines[0][0] if box is not None and box.lines and box.lines[0][0] != "strip" else node.op
    return f"{what} (t={node.t})" if node.t is not None else str(what)


NODE_WORDS = [
    ("root", "L", "the loss (what backward starts from)"),
    ("loss", "L_t", "a per-step loss"),
    ("param", "W", "parameter: drawn once, one edge per use (one colour per parameter)"),
    ("leaf", "h_0", "leaf that requires grad (e.g. the initial state)"),
    ("input", "x_t", "data (no gradient)"),
    ("const", "0", "a constant: a number, a mask, zeros (drawn at each use)"),
    ("op", "op", "one primitive op"),
    ("cell", "cell", "one cell call at one step (collapsed ops)"),
    ("readout", "output", "the step's output and loss (collapsed)"),
    ("projection", "W_ih x", "input projection for all steps (one matmul)"),
    ("layer", "layer", "one layer over all steps (collapsed)"),
    ("cut", "\u2702", "detached tensor: truncated BPTT stops here"),
    ("ellipsis", "\u22ef", "timesteps not drawn"),
]


def legend(pic):
    """The legend's rows: ("box", role, text, words), ("line", colour, width, dashed, words,
    arrow), ("swatch", colour, width, words), ("small", words) or ("hover", words): a row that
    only SVG and HTML output show (render.py drops it from PNG and PDF)."""
    opts = pic.opts
    items = []
    roles = {b.role for b in pic.boxes.values()}
    kinds = {e.kind for e in pic.graph.edges}
    for role, text, words in NODE_WORDS:
        if role in roles:
            items.append(("box", role, text, words))
    gradients = opts.get("gradients")
    if "state" in kinds and not gradients:
        items.append(("line", S.EDGE["state"][0], 2, False, "state h_{t-1} \u2192 h_t between steps (an LSTM's c_t "
                      "beside it; a reverse layer's run right to left)", "forward"))
    if "param" in kinds and not gradients:
        items.append(("line", S.PARAM_COLOURS[0], 1, False, "a parameter's use at one step (under each row, one lane "
                      "per parameter, in its colour)", "forward"))
    if "cut" in kinds:
        items.append(("line", S.EDGE["cut"][0], 1, True, "detach(): no gradient crosses (truncated BPTT)",
                      "none" if gradients else "forward"))
    if gradients:
        items += _gradient_legend(pic, kinds)
    items += _highlight_legend(pic)
    if any(f.get("input_grads") for f in pic.facts.values()):
        items.append(("small", "\u2016\u2202L/\u2202x_t\u2016 in an input's box: how strongly the loss reacts to "
                               "the input of step t (\u25c0 the largest). Data gets no gradient in training;"))
        items.append(("small", "it is worked out for the picture from the gradient dZ of the op that reads it: "
                               "dZ W for W x (one-hot characters), dZ for an embedding's row E[x_t]"))
    if opts.get("show_values"):
        missing = any(n.kind == "op" and n.outputs and n.outputs[0].get("value") is None
                      for n in pic.graph.nodes.values())
        if missing:
            items.append(("small", "values of intermediate tensors: build the graph inside `with tg.retain_values():`"))
    if opts.get("memory"):
        total = sum(n.info.get("saved_bytes", 0) for n in pic.unrolled.placed.nodes.values())
        items.append(("small", f"arrays saved for backward: {S.fmt_bytes(total)} in all "
                               f"(freed by backward; detach() keeps earlier chunks out of the graph)"))
    items.append(("hover", S.HOVER))
    return items


def _gradient_legend(pic, kinds):
    numbers = pic.opts.get("edge_labels", True)
    items = [("small", "Arrows point backward: an edge carries back part of the gradient \u2202L/\u2202\u00b7 of "
                       "the tensor it starts from."),
             ("small", ("Its number, width and colour (log scale) give that part's share: its projection on the "
                        "tensor's gradient," if numbers else
                        "Its width and colour (log scale) give that part's share: its projection on the tensor's "
                        "gradient,")),
             ("small", "so the shares of the edges out of a tensor add up to its \u2016\u2202L/\u2202\u00b7\u2016 "
                       "(a negative share points against it):")]
    for colour, width, lo, hi in pic.scale.bins():
        items.append(("swatch", colour, width, f"{S.fmt(lo)} \u2013 {S.fmt(hi)}"))
    example = _state_example(pic) if numbers else None
    if example:
        items.append(("small", example))
    if "state" in kinds:
        cells = any(e.info.get("state_name") == "c" for e in pic.graph.edges if e.kind == "state")
        items.append(("small", f"edges between steps carry the state {'h_t and c_t' if cells else 'h_t'}; "
                               f"backward, the part of \u2202L/\u2202h_t that comes from step t+1 flows along them"))
        if cells and pic.opts.get("level") != "op":
            items.append(("small", "\u2016\u2202L/\u2202c_t\u2016 in a step's title is the whole gradient: the c edge "
                                   "carries the part from step t+1, the rest reaches c_t inside the cell box, through "
                                   "h_t = o tanh(c_t)"))
    if pic.param_colour:
        items.append(("small", "lanes under each row: one colour per parameter, one edge per use; a parameter's "
                               "gradient is the sum of its uses' terms"))
        example = _param_example(pic) if numbers else None
        if example:
            items.append(("small", example))
    items.append(("line", S.ZERO_GRAD, 1, False, "no arrowhead: no gradient flows there (data, constants)", "none"))
    if pic.opts.get("stepping"):
        items.append(("line", S.PENDING, 1, False, "light grey: backward has not sent this gradient yet", "back"))
    return items


def _state_example(pic):
    """The sum at one state, with the picture's own numbers: "at t = 2: ||dL/dh_2|| = 0.410 = ..."."""
    out = {}
    for k, source in enumerate(pic.edge_source):
        if source is not None and pic.numbers[k] is not None:
            out.setdefault(source, []).append(k)
    full = pic.gradients.full
    for key, items in sorted(state_outputs(pic.unrolled.placed).items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        for name, nid, i in items:
            ks = out.get((nid, i), [])
            n = array_norm(full.grad(nid, i))
            if n is None or len(ks) < 2 or pic.unrolled.group_of.get(nid, nid) not in pic.graph.nodes:
                continue
            t = pic.unrolled.placed.nodes[nid].t
            base = re.sub(r"_?\{?-?\d+\}?$", "", name) or name
            parts = " + ".join(f"{pic.numbers[k]} (to {describe(pic, pic.graph.edges[k].dst)})" for k in ks)
            return f"e.g. \u2016\u2202L/\u2202{base}_{t}\u2016 = {S.fmt(n)} = {parts}".replace("+ -", "- ")
    return None


def _param_example(pic):
    """The sum at one shared parameter, with the picture's own numbers."""
    best = None
    for node_id in pic.param_colour:          # the recurrent weight W_hh if it can be
        terms = [t for t in pic.facts[node_id].get("terms", []) if t[1] is not None]
        rank = (len(terms), "hh" in (pic.graph.nodes[node_id].name or ""))
        if 1 < len(terms) <= 6 and (best is None or rank > best[2]):
            best = (node_id, terms, rank)
    if best is None:
        return None
    node = pic.graph.nodes[best[0]]
    total = array_norm(pic.gradients.full.grad(node.id))
    sym = L.grad_symbol(alias(node.name) or node.name)
    parts = " + ".join(text for _, text, _ in best[1])
    return (f"e.g. \u2016{sym}\u2016 = {parts} = {S.fmt(total)} (its uses at "
            f"{', '.join(label for label, _, _ in best[1])})").replace("+ -", "- ")


def _highlight_legend(pic):
    items = []
    if pic.highlight_summary:
        src, dst, reads, n_ops = pic.highlight_summary
        items.append(("line", S.HIGHLIGHT, 4, False, f"vermillion underlay: every gradient path from {src} to {dst} "
                                                      f"({n_ops} ops)", "none"))
        for name, k in sorted(reads.items()):
            items.append(("small", f"  ops on these paths that read {name}: {k}"))
    return items


def op_graph_legend(pic):
    items = []
    roles = {b.role for b in pic.boxes.values()}
    for role, text, words in [("root", "L", "the output being drawn (the loss)"), ("loss", "L_t", "a loss"),
                              ("tensor", "(1, 3)", "a tensor made by an op: its name if it has one, shape, numbers"),
                              ("opnode", "op", "an op"),
                              ("param", "W", "parameter (requires grad)"), ("leaf", "h_0", "leaf that requires grad"),
                              ("input", "x", "data (no gradient)"), ("const", "1.0", "a constant"),
                              ("cut", "\u2702", "a detached tensor (no gradient flows back)")]:
        if role in roles:
            items.append(("box", role, text, words))
    kinds = {e.kind for e in pic.graph.edges}
    for kind, words in [("data", "data flow: an op's input or output"),
                        ("param", "a parameter (or a leaf that requires grad) read by an op"),
                        ("state", "the state carried from step t to step t+1 (h_{t-1} \u2192 h_t)"),
                        ("cut", "detach(): no gradient crosses")]:
        if kind in kinds:
            colour, width, style = S.EDGE[kind]
            items.append(("line", colour, width, style == "dashed", words, "forward"))
    if pic.opts.get("show_values") and any(n.kind == "tensor" and n.outputs and n.outputs[0].get("value") is None
                                           for n in pic.graph.nodes.values()):
        items.append(("small", "values of intermediate tensors: build the graph inside `with tg.retain_values():`"))
    items.append(("hover", S.HOVER))
    return items
