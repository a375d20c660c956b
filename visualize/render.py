"""Graph -> graphviz.Digraph. The only module that imports graphviz.

Every label is an HTML-like label built from escaped text: quotes, ``<``, ``>``, ``&``,
braces, backslashes, newlines, control characters and overlong strings in a name
can neither break the DOT nor put markup into the SVG. Attribute strings that are
not HTML (tooltips) are escaped for DOT's escString rules as well.

``Digraph`` (a ``graphviz.Digraph``) only changes what happens when Graphviz's
``dot`` program is missing: the ``.gv`` source is still written, and the error
says how to install Graphviz instead of showing a traceback from deep inside.
"""
import html
import os
import re

import graphviz

from . import style as S
from .style import MAX_TEXT, clean

INSTALL_HINT = (
    "Graphviz's `dot` program was not found on PATH, so the picture could not be rendered. "
    "The DOT source is still available (digraph.source{where}). Install Graphviz with "
    "`apt-get install graphviz` (Debian/Ubuntu), `brew install graphviz` (macOS), "
    "`conda install -c conda-forge graphviz`, or from https://graphviz.org/download/ "
    "(the Python package `graphviz` alone is not enough).")


class GraphvizNotFound(graphviz.ExecutableNotFound):
    """``dot`` is not installed; the message says how to install it."""

    def __init__(self, where=""):
        RuntimeError.__init__(self, INSTALL_HINT.format(where=where))
        self.args = (INSTALL_HINT.format(where=where),)

    def __str__(self):
        return self.args[0]


class Digraph(graphviz.Digraph):
    """A graphviz.Digraph that draws what each output format can show, and explains how to
    install Graphviz when ``dot`` is missing.

    Unrolled pictures carry their own node positions (layout.py); for them ``engine`` is
    "neato" and rendering passes ``-n2`` (keep the positions, route the edges). SVG output
    (and so Jupyter and the step-through page) shows a tooltip on every box and edge: the
    ``<title>`` of each is its tooltip. Other formats cannot hover: the legend row that says
    so is left out of them."""

    positioned = False

    def source_for(self, format):
        """The DOT source to draw in ``format``: without the hover row unless it is SVG."""
        if str(format).startswith("svg"):
            return self.source
        return self.source.replace(HOVER_ROW, "")

    def pipe(self, format=None, renderer=None, formatter=None, neato_no_op=None, quiet=False, *, engine=None,
             encoding=None):
        fmt = format or self.format
        if self.positioned and neato_no_op is None:
            neato_no_op = 2
        source = graphviz.Source(self.source_for(fmt), engine=engine or self.engine)
        try:
            data = source.pipe(format=fmt, renderer=renderer, formatter=formatter, neato_no_op=neato_no_op,
                               quiet=quiet)
        except graphviz.ExecutableNotFound:
            raise GraphvizNotFound("") from None
        if fmt == "svg":
            data = titled_svg(data)
        return data.decode(encoding) if encoding else data

    def render(self, filename=None, directory=None, view=False, cleanup=False, format=None, **kwargs):
        """Write the DOT source to ``filename`` and the picture to ``filename.<format>`` (as
        graphviz.Digraph.render does); returns the picture's path."""
        fmt = format or self.format
        path = os.path.join(directory or self.directory or "", filename or self.filename)
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.source)
        out = kwargs.get("outfile") or f"{path}.{fmt}"
        try:
            data = self.pipe(format=fmt, **{k: v for k, v in kwargs.items() if k in ("renderer", "formatter",
                                                                                    "neato_no_op", "quiet",
                                                                                    "engine")})
        except GraphvizNotFound:
            raise GraphvizNotFound(f"; it was written to {path}") from None
        with open(out, "wb") as f:
            f.write(data)
        if cleanup:
            os.remove(path)
        if view:
            graphviz.view(out)
        return out

    def _repr_mimebundle_(self, include=None, exclude=None, **kwargs):
        try:
            return super()._repr_mimebundle_(include, exclude, **kwargs)
        except (graphviz.ExecutableNotFound, GraphvizNotFound):
            return {"text/plain": str(GraphvizNotFound("")) + "\n\n" + self.source}


_TITLED = re.compile(rb'<title>[^<]*</title>(\s*<g id="a_[^"]*"><a xlink:title="([^"]*)")')


def titled_svg(data):
    """SVG whose every box and edge has its tooltip as its ``<title>`` (Graphviz writes the node's
    id there and the tooltip into a link around it), which is what a browser shows on hover."""
    return _TITLED.sub(lambda m: b"<title>" + m.group(2) + b"</title>" + m.group(1), data)


def write(digraph, path, format=None):
    """Write ``path`` (.svg, .png, .pdf or .gv) from a Digraph. The .gv source is always
    written next to it; without ``dot`` this raises GraphvizNotFound with the install hint."""
    root, ext = os.path.splitext(str(path))
    fmt = format or ext.lstrip(".") or "svg"
    if fmt in ("gv", "dot"):
        with open(path, "w", encoding="utf-8") as f:
            f.write(digraph.source)
        return str(path)
    source_path = root + ".gv"
    with open(source_path, "w", encoding="utf-8") as f:
        f.write(digraph.source)
    try:
        if isinstance(digraph, Digraph):
            data = digraph.pipe(format=fmt)
        else:
            data = graphviz.Source(digraph.source, engine=digraph.engine).pipe(format=fmt)
    except (graphviz.ExecutableNotFound, GraphvizNotFound):
        raise GraphvizNotFound(f"; it was written to {source_path}") from None
    with open(root + "." + fmt, "wb") as f:
        f.write(data)
    return root + "." + fmt


def dot_available():
    try:
        graphviz.version()
        return True
    except (graphviz.ExecutableNotFound, RuntimeError, OSError):
        return False


# --- escaping -----------------------------------------------------------------------------
def esc(text, limit=MAX_TEXT):
    """Text for an HTML-like label: escaped, newlines as line breaks.

    Graphviz expands \\N, \\G, \\L... inside HTML labels too, after decoding entities, so a
    backslash is written as two (``&#92;&#92;``), which Graphviz shows as one."""
    s = html.escape(clean(text, limit), quote=True).replace("\\", "&#92;&#92;")
    return s.replace("\n", "<BR/>")


def esc_attr(text, limit=400):
    """Text for a quoted DOT attribute (tooltip): backslashes doubled so no \\N, \\G... expands."""
    s = clean(text, limit).replace("\\", "\\\\").replace("\n", "\\n")
    return graphviz.nohtml(s.replace('"', '\\"'))     # never read as an HTML label, even if it is <...>


# --- labels ---------------------------------------------------------------------------------
_FONTS = {
    "title": (S.FONT_SIZE + 1, True, False, "#000000"),
    "main": (S.FONT_SIZE, False, False, "#000000"),
    "small": (S.SMALL, False, False, "#333333"),
    "formula": (S.SMALL, False, True, "#333333"),
    "grad": (S.SMALL + 1, True, False, "#1b1b5e"),
    "value": (S.SMALL, False, False, "#1f4d2b"),
    "warn": (S.SMALL + 1, True, False, S.HIGHLIGHT),
    "big": (S.TITLE, True, False, "#000000"),
    "legend": (S.SMALL + 2, False, False, "#222222"),
    "legendwarn": (S.SMALL + 3, True, False, S.HIGHLIGHT),
}


def _font(text, kind, colour=None, limit=MAX_TEXT):
    size, bold, italic, default = _FONTS.get(kind, _FONTS["main"])
    body = esc(text, limit)
    if bold:
        body = f"<B>{body}</B>"
    if italic:
        body = f"<I>{body}</I>"
    return f'<FONT POINT-SIZE="{size}" COLOR="{colour or default}">{body}</FONT>'


def _row(item):
    if item[0] == "strip":                  # a heat strip: ("strip", [(colour, tooltip-free text), ...])
        cells = "".join(f'<TD BGCOLOR="{c}" WIDTH="9" HEIGHT="14" FIXEDSIZE="TRUE"></TD>' for c, _ in item[1])
        return (f'<TR><TD><TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="0" COLOR="#ffffff">'
                f"<TR>{cells}</TR></TABLE></TD></TR>")
    text, kind = item[0], item[1]
    colour = item[2] if len(item) > 2 else None
    return f"<TR><TD>{_font(text, kind, colour)}</TD></TR>"


def html_label(lines, role, border=None, highlight=False, framed=True):
    """The label of a node: one table row per line. ``framed=False`` leaves the frame to the node's shape."""
    if not framed:
        rows = "".join(_row(item) for item in lines)
        return f'<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="2">{rows}</TABLE>>'
    fill, line_colour, width, table_style = S.NODE.get(role, S.NODE["op"])
    if border is not None:
        line_colour = border
    if highlight:
        width = max(width, 3)
    style = f' STYLE="{table_style}"' if table_style else ""
    rows = "".join(_row(item) for item in lines)
    return (f'<<TABLE BORDER="{width}" CELLBORDER="0" CELLSPACING="0" CELLPADDING="3" '
            f'BGCOLOR="{fill}" COLOR="{line_colour}"{style}>{rows}</TABLE>>')


def cluster_label(lines):
    rows = "".join(_row(item) for item in lines)
    return f'<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1">{rows}</TABLE>>'


# --- the Digraph ------------------------------------------------------------------------------
GRAPH_ATTRS = {"rankdir": "BT", "newrank": "true", "fontname": S.FONT, "nodesep": "0.3", "ranksep": "0.35",
               "compound": "true", "outputorder": "edgesfirst", "bgcolor": "white", "pad": "0.2"}


def to_digraph(pic, placement=None, name="bptt"):
    """The Digraph of a Picture (annotate.py), at the positions of ``placement`` (layout.py):
    ``neato -n2`` then draws it as laid out. Without a placement, Graphviz's dot lays it out."""
    dg = Digraph(name=name, comment="render with: neato -n2 -Tsvg file.gv  (the positions are precomputed)"
                 if placement is not None else None)
    attrs = dict(GRAPH_ATTRS)
    if placement is not None:
        dg.engine = "neato"
        dg.positioned = True
        attrs = {k: v for k, v in attrs.items() if k not in ("rankdir", "newrank", "nodesep", "ranksep")}
        attrs.update({"splines": "true", "overlap": "true"})
    attrs.update(pic.graph_attrs)
    dg.attr("graph", **attrs)
    dg.attr("node", shape="plain", fontname=S.FONT, fontsize=str(S.FONT_SIZE))
    dg.attr("edge", fontname=S.FONT, fontsize=str(S.SMALL), arrowsize="0.7")
    if pic.title or pic.legend or pic.notes:
        dg.attr("graph", label=_graph_label(pic), labelloc="t", labeljust="l")
    subgraphs = _clusters(pic, placement)
    for node in pic.graph.nodes.values():
        target = subgraphs.get(pic.unrolled.cluster_of.get(node.id), dg)
        target.node(node.id, **_node_attrs(pic.boxes[node.id], node.id, placement))
    for ri_id, ri, (x, y) in (placement.row_labels if placement is not None else ()):
        dg.node(ri_id, label=html_label(pic.row_labels[ri], "note"), pos=f"{x:.1f},{y:.1f}!",
                tooltip=esc_attr(" ".join(text for text, _ in pic.row_labels[ri]).replace("\n", " ")))
    for sub in subgraphs.values():
        dg.subgraph(sub)
    _edges(dg, pic, placement)
    return dg


def _clusters(pic, placement):
    subgraphs = {}
    for cid, c in sorted(pic.unrolled.clusters.items(), key=lambda kv: kv[1].order):
        sub = graphviz.Digraph(name=cid)
        fill, border = S.CLUSTER.get(c.style, S.CLUSTER["time"])
        label = pic.cluster_labels.get(cid)
        sub.attr("graph", label=cluster_label(label) if label else "", style="rounded,filled", fillcolor=fill,
                 color=border, penwidth="1.2", labeljust="c", labelloc="t", margin="10")
        if placement is not None and cid in placement.cluster_bb:
            sub.attr("graph", bb=",".join(f"{v:.1f}" for v in placement.cluster_bb[cid]))
        if cid in pic.cluster_tooltips:
            sub.attr("graph", tooltip=esc_attr(pic.cluster_tooltips[cid]))
        subgraphs[cid] = sub
    return subgraphs


def _node_attrs(box, node_id, placement):
    if placement is not None:
        attrs = _box_attrs(box, node_id, placement.size[node_id])
    else:
        attrs = {"label": html_label(box.lines or [(node_id, "main")], box.role or "op", border=box.border,
                                     highlight=box.highlight)}
    if box.tooltip:
        attrs["tooltip"] = esc_attr(box.tooltip)
    if placement is not None:
        x, y = placement.pos[node_id]
        attrs["pos"] = f"{x:.1f},{y:.1f}!"
    return attrs


def _edges(dg, pic, placement):
    # a highlighted edge gets a wide vermillion underlay, drawn first: its own colour stays on top
    for k, (e, m) in enumerate(zip(pic.graph.edges, pic.marks)):
        if m.highlight:
            width = float(m.attrs.get("penwidth", 1.0)) + S.UNDERLAY
            attrs = {"color": m.highlight_colour, "penwidth": f"{width:g}", "dir": "none"}
            if placement is not None:
                attrs["pos"] = _without_arrows(placement.edge_pos(k, m.head, m.back))
            dg.edge(e.src, e.dst, **attrs)
    for k, (e, m) in enumerate(zip(pic.graph.edges, pic.marks)):
        attrs = {key: str(v) for key, v in m.attrs.items() if v is not None}
        if placement is not None:
            attrs["pos"] = placement.edge_pos(k, m.head, m.back)
            if m.label:
                attrs["lp"] = placement.label_pos(k, m.label)
        if m.label:
            attrs["label"] = f"<{_font(m.label, 'small', m.fontcolor)}>"
        if m.tooltip:
            attrs["tooltip"] = esc_attr(m.tooltip)
        dg.edge(e.src, e.dst, **attrs)


def _without_arrows(pos):
    """An edge ``pos`` with its arrow tips ("s,x,y" / "e,x,y") dropped: the underlay runs to the
    tips themselves, so the highlight reaches the boxes."""
    parts = pos.split()
    tips = {p[0]: p[2:] for p in parts if p[:2] in ("s,", "e,")}
    pts = [p for p in parts if p[:2] not in ("s,", "e,")]
    if "s" in tips:
        pts = [tips["s"]] * 3 + pts      # a straight piece from the tail tip to the first point
    if "e" in tips:
        pts = pts + [tips["e"]] * 3
    return " ".join(pts)


def _box_attrs(box, node_id, size):
    """A fixed-size box (so the precomputed layout and edge ends are exact) around a frameless label."""
    if box.role == "anchor":            # where a row's input weights point: a small dot
        return {"label": "", "shape": "point", "width": f"{size[0] / 72:.3f}", "color": "#555555",
                "fixedsize": "true"}
    fill, border, width, table_style = S.NODE.get(box.role or "op", S.NODE["op"])
    if box.border:
        border = box.border
    if box.highlight:
        width = max(width, 3)
    style = {"rounded": "rounded,filled", "dashed": "dashed,filled"}.get(table_style, "filled")
    if box.pending:            # step-through: backward has not reached it yet
        style, fill, border = style.replace("rounded", "rounded,dashed") if "rounded" in style else "dashed,filled", \
            "#f7f7f7", "#aaaaaa"
    return {"label": html_label(box.lines or [(node_id, "main")], None, framed=False), "shape": "box",
            "style": style, "fillcolor": fill, "color": border, "penwidth": str(width),
            "width": f"{size[0] / 72:.3f}", "height": f"{size[1] / 72:.3f}", "fixedsize": "true", "margin": "0"}


def _graph_label(pic):
    rows = []
    if pic.title:
        rows.append(f'<TR><TD ALIGN="LEFT" COLSPAN="2">{_font(pic.title, "big", limit=240)}</TD></TR>')
    for note in pic.notes:
        rows.append(f'<TR><TD ALIGN="LEFT" COLSPAN="2">{_font(note, "legendwarn", limit=200)}</TD></TR>')
    for item in pic.legend:
        if item[0] == "swatch":
            _, colour, width, text = item
            bar = (f'<TABLE BORDER="0" CELLSPACING="0" CELLPADDING="0"><TR><TD BGCOLOR="{colour}" WIDTH="36" '
                   f'HEIGHT="{max(1, int(round(width * 1.6)))}" FIXEDSIZE="TRUE"></TD></TR></TABLE>')
            rows.append(f'<TR><TD ALIGN="RIGHT">{bar}</TD><TD ALIGN="LEFT">{_font(text, "legend", limit=160)}</TD></TR>')
        elif item[0] == "box":
            _, role, text, explanation = item
            fill, border, width, tstyle = S.NODE.get(role, S.NODE["op"])
            tstyle = f' STYLE="{tstyle}"' if tstyle else ""
            box = (f'<TABLE BORDER="{width}" CELLBORDER="0" CELLPADDING="2" BGCOLOR="{fill}" COLOR="{border}"'
                   f'{tstyle}><TR><TD>{_font(text, "small")}</TD></TR></TABLE>')
            rows.append(f'<TR><TD ALIGN="RIGHT">{box}</TD><TD ALIGN="LEFT">{_font(explanation, "legend", limit=160)}</TD></TR>')
        elif item[0] == "line":             # ("line", colour, width, dashed, text, arrow: forward/back/none)
            _, colour, width, dashed, text, arrow = item
            bar = "\u2504\u2504\u2504" if dashed else "\u2501\u2501\u2501"
            mark = {"forward": bar + "\u25b6", "back": "\u25c0" + bar, "none": bar + "\u2501"}[arrow]
            rows.append(f'<TR><TD ALIGN="RIGHT"><FONT COLOR="{colour}" POINT-SIZE="{S.SMALL + 2 + int(width)}">'
                        f'{mark}</FONT></TD><TD ALIGN="LEFT">{_font(text, "legend", limit=160)}</TD></TR>')
        elif item[0] == "hover":
            rows.append(HOVER_ROW)
        else:
            kind = {"small": "legend", "warn": "legendwarn"}.get(item[0], item[0])
            rows.append(f'<TR><TD ALIGN="LEFT" COLSPAN="2">{_font(item[1], kind, limit=200)}</TD></TR>')
    return f'<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="1" CELLPADDING="1">{"".join(rows)}</TABLE>>'


# the legend row that only SVG output shows (Digraph.source_for leaves it out of PNG and PDF)
HOVER_ROW = f'<TR><TD ALIGN="LEFT" COLSPAN="2">{_font(S.HOVER, "legend", limit=200)}</TD></TR>'
