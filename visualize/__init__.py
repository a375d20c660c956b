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
"""
from .draw import draw_bptt, draw_graph
from .overlays import draw_anomaly, draw_gradcheck, find_anomaly, memory_by_step
from .render import Digraph, GraphvizNotFound, dot_available, write as save
from .stepthrough import backward_frames, stepthrough_html

__all__ = ["draw_graph", "draw_bptt", "backward_frames", "stepthrough_html", "draw_anomaly", "draw_gradcheck",
           "find_anomaly", "memory_by_step", "save", "Digraph", "GraphvizNotFound", "dot_available"]
