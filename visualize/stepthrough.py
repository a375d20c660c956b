"""Backward, one node at a time: frames for teaching, and one HTML page with a slider.

Frame 0 shows the seed dL/dL = 1. Each following frame is one node that backward
visits (at ``level="cell"``: one cell or readout box): the node is outlined in
vermillion, the gradients it sends to its inputs appear on its edges, and every
tensor shows the gradient collected so far. A shared weight's box counts its
"+=" terms as they arrive, one per timestep, so the sum of BPTT builds up in
front of the class. All frames share one layout, so nothing jumps between them.
"""
import html
import json

from . import labels as L
from . import style as S
from .annotate import annotate
from .draw import to_picture
from .layout import layout
from .record import record
from .trace import trace
from .collapse import fit
from .unroll import place

MAX_FRAMES = 150


def backward_frames(loss, level="op", show_values=False, formulas=None, params=None, max_frames=MAX_FRAMES,
                    title=None):
    """A list of ``graphviz.Digraph``: backward of ``loss`` visiting one node per frame.

    For small graphs (the "hello" RNN has 43 frames at level "op", 10 at level "cell").
    Raises ValueError when there would be more than ``max_frames`` frames. The leaves'
    ``.grad`` are left as they were."""
    if formulas is None:
        formulas = level == "op"      # each op's local derivative is what backward applies
    roots = [loss]
    traced = trace(roots, params)
    grads = record(traced, roots)
    placed, rows = place(traced)
    unrolled = fit(placed, rows, level, None, 10 ** 6)
    opts = dict(show_values=show_values, gradients=True, formulas=formulas, edge_labels=True, level=level)
    final = annotate(unrolled, grads, opts)
    placement = layout(final) if final.positioned else None
    steps = _steps(grads, unrolled.group_of)
    if len(steps) + 1 > max_frames:
        raise ValueError(f"backward_frames: {len(steps) + 1} frames exceed max_frames={max_frames}; the step-through "
                         f"is meant for small graphs: draw a shorter sequence, use level=\"cell\", or raise max_frames")
    # one colour scale for all frames; an edge that will carry a gradient points backward from the first
    # frame on (annotate knows from the whole pass which will)
    opts = dict(opts, scale=final.scale, stepping=True)
    frames, done, visited = [], set(), set()
    for k in range(len(steps) + 1):
        current = []
        if k:
            gid, consumers, contributions = steps[k - 1]
            done.update(key for key, _ in contributions)
            current = unrolled.hidden.get(gid, [gid])      # ops between layers: all their input boxes
            visited.update(current)
        pic = annotate(unrolled, grads.partial(done), opts)
        for node_id, box in pic.boxes.items():
            box.pending = unrolled.graph.nodes[node_id].kind in ("op", "group") and node_id not in visited and not (
                any(node_id == r for r, _ in unrolled.graph.roots) and k == 0)
        for node_id in current:
            pic.boxes[node_id].border, pic.boxes[node_id].highlight = S.HIGHLIGHT, True
        pic.title = (title + " \u2014 " if title else "") + caption(unrolled, steps, k)
        frame = to_picture(pic, placement, name=f"frame{k}")
        frame.caption = pic.title
        frames.append(frame)
    return frames


def _steps(grads, group_of):
    """Backward's visits, one per box: (box id, [placed node ids], [(edge key, grad), ...])."""
    steps = []
    for consumer, contributions in grads.events:
        gid = group_of.get(consumer, consumer)
        if steps and steps[-1][0] == gid:
            steps[-1][1].append(consumer)
            steps[-1][2].extend(contributions)
        else:
            steps.append((gid, [consumer], list(contributions)))
    return steps


def caption(unrolled, steps, k):
    """What frame ``k`` shows, in one sentence."""
    g, dg = unrolled.placed, unrolled.graph
    if k == 0:
        root = g.nodes[g.roots[0][0]]
        name = root.outputs[g.roots[0][1]]["name"] or "the output"
        return f"step 0 of {len(steps)}: backward starts from {name} with dL/dL = 1"
    gid, consumers, contributions = steps[k - 1]
    node = dg.nodes.get(gid)
    first = g.nodes[consumers[0]]
    where = "/".join(first.scope) or "top level"
    if node is None:        # the ops between layers, drawn as one input box per step
        ops = L.op_summary([g.nodes[c].op for c in consumers])
        what = f"backward through the ops between layers at {where} ({ops}), for all steps at once"
    elif node.kind == "op":
        what = f"backward of {node.op} at {where}: {node.formula}"
    else:
        box = L.PART_TITLES.get(node.part, node.name or "a group")
        what = (f"backward through the {box} box at {where} ({len(consumers)} "
                f"op{'' if len(consumers) == 1 else 's'})")
    targets = []
    for (src_id, src_index, _, _), _ in contributions:
        if unrolled.group_of.get(src_id, src_id) == gid:
            continue            # inside the collapsed box: not what it sends out
        src = g.nodes[src_id]
        name = src.outputs[src_index]["name"] if src.outputs else None
        label = name or src.name or src.op or src.kind
        if label not in targets:
            targets.append(label)
    if not targets:
        return f"step {k} of {len(steps)}: {what}; its gradients stay inside the box"
    sends = ", ".join(targets[:5]) + (" ..." if len(targets) > 5 else "")
    return f"step {k} of {len(steps)}: {what}; gradient sent to {sends}"


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: Helvetica, Arial, sans-serif; margin: 1em; }}
#caption {{ font-size: 18px; margin: 0.5em 0; min-height: 2.5em; }}
.frame {{ display: none; overflow: auto; }}
.frame svg {{ max-width: 100%; height: auto; }}
input[type=range] {{ width: 60%; }}
button {{ font-size: 16px; }}
</style></head><body>
<h2>{title}</h2>
<div><button id="prev">&#9664; back</button>
<input type="range" id="slider" min="0" max="{last}" value="0">
<button id="next">next &#9654;</button> <span id="count"></span></div>
<div id="caption"></div>
{frames}
<script>
const captions = {captions};
const frames = document.querySelectorAll('.frame');
const slider = document.getElementById('slider');
function show(k) {{
  k = Math.max(0, Math.min(frames.length - 1, k));
  frames.forEach((f, i) => f.style.display = (i === k) ? 'block' : 'none');
  slider.value = k;
  document.getElementById('caption').textContent = captions[k];
  document.getElementById('count').textContent = 'frame ' + k + ' / ' + (frames.length - 1);
}}
slider.addEventListener('input', () => show(parseInt(slider.value)));
document.getElementById('prev').addEventListener('click', () => show(parseInt(slider.value) - 1));
document.getElementById('next').addEventListener('click', () => show(parseInt(slider.value) + 1));
document.addEventListener('keydown', (e) => {{
  if (e.key === 'ArrowRight') show(parseInt(slider.value) + 1);
  if (e.key === 'ArrowLeft') show(parseInt(slider.value) - 1);
}});
// the page opens at frame k when its address ends in #k (a link to one step of backward)
const wanted = /^#\\d+$/.test(location.hash) ? parseInt(location.hash.slice(1)) : 0;
show(wanted);
</script></body></html>
"""


def script_json(value):
    """JSON that is safe inside an HTML <script> element, whatever its strings hold.

    The HTML parser reads a script's text before JavaScript does: "</script>" would end
    the element, and "<!--" followed by "<script>" would make it swallow the rest of the
    page. With every <, > and & written as a JavaScript escape (\\u003c ...) the text
    holds none of them (non-ASCII characters are escaped too, so lone surrogates in a name
    cannot break the page's UTF-8). JavaScript reads the same strings back."""
    text = json.dumps(value)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    return text


def stepthrough_html(loss, path=None, level="op", title="Backpropagation, one node at a time", **kwargs):
    """One self-contained HTML page (no scripts or files from elsewhere): a slider over the
    backward frames, with a caption per frame (the arrow keys step too; "page.html#5"
    opens at frame 5). Needs Graphviz to draw the frames (raises
    GraphvizNotFound with the install hint otherwise). Returns the HTML; writes it to ``path``."""
    frames = backward_frames(loss, level=level, **kwargs)
    svgs = []
    for k, f in enumerate(frames):
        svg = f.pipe(format="svg").decode("utf-8")
        svg = svg[svg.index("<svg"):]
        svgs.append(f'<div class="frame" id="frame{k}">{svg}</div>')
    captions = script_json([f.caption for f in frames])
    page = PAGE.format(title=html.escape(title), last=len(frames) - 1, frames="\n".join(svgs), captions=captions)
    if path is not None:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(page)
    return page
