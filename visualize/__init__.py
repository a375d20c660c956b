"""visualize: pictures of tinygrad_rnn graphs, unrolled through time, with BPTT's gradient paths.

    import visualize as viz
    viz.draw_graph(loss)                                   # the op graph (micrograd/torchviz style)
    viz.draw_bptt(loss)                                    # unrolled: one column per timestep
    viz.draw_bptt(loss, level="cell", gradients=True)     # + the gradient on every edge, ||dL/dh_t||
    viz.draw_bptt(loss, highlight="h_0")                   # every path from the loss to h_0
    viz.backward_frames(loss)                              # backward, one node per frame
    viz.stepthrough_html(loss, "backward.html")            # ... as one page with a slider
    viz.draw_anomaly(loss), viz.draw_gradcheck(fn, inputs), viz.draw_bptt(loss, memory=True)
    viz.save(picture, "bptt.svg")                          # .svg/.png/.pdf; the .gv source is always written

Every drawing function returns a ``graphviz.Digraph`` (``.source`` is the DOT text; Jupyter
shows it). Rendering needs Graphviz's programs (``apt-get install graphviz``); without
them the DOT source is still produced and rendering says how to install them.

The package is a one-way pipeline; each stage is a module that reads only what the stages
before it made, and no module imports a later one:

    trace.py, record.py   tensor history -> plain nodes and edges (graph.py), + one recorded backward
    unroll.py             scopes -> rows and time columns, at a level of detail
    annotate.py           labels (labels.py), gradients, highlights, legend
    layout.py             positions, edge routes (route.py)
    render.py             a graphviz.Digraph: the only module that imports graphviz
draw.py, stepthrough.py and overlays.py run it; names.py and style.py sit below every stage.
"""
from .draw import draw_bptt, draw_graph
from .overlays import draw_anomaly, draw_gradcheck, find_anomaly, memory_by_step
from .render import Digraph, GraphvizNotFound, dot_available, write as save
from .stepthrough import backward_frames, stepthrough_html

__all__ = ["draw_graph", "draw_bptt", "backward_frames", "stepthrough_html", "draw_anomaly", "draw_gradcheck",
           "find_anomaly", "memory_by_step", "save", "Digraph", "GraphvizNotFound", "dot_available"]
