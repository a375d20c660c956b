"""Stage 1, trace (continued): run backward once and record the gradient on every traced edge.

``tg.record_gradients()`` yields one ``GradientEdge(source, source_index, consumer, grad)``
per gradient contribution. The gradient of a tensor is the sum of the contributions
into it (``dL/dh_t`` = what step t's readout sends + what step t+1 sends back); the
gradient of a shared weight is the sum of its per-timestep contributions, one per
edge out of its AccumulateGrad node: the "+=" of backpropagation through time.

``record`` leaves no trace on the model: it runs ``backward(retain_graph=True)`` and
then restores every leaf's ``.grad`` to what they
were, so drawing never changes a later optimizer step. Pass ``keep_grads=True`` to
keep the accumulated ``.grad`` instead, exactly as after ``loss.backward()``.
"""
import numpy as np

import tinygrad_rnn as tg
from tinygrad_rnn.autograd import GraphFreedError
from tinygrad_rnn.function import AccumulateGrad

from .trace import host, primitive_edge


class Gradients:
    """What a recorded backward pass sent along the edges of a traced graph.

    ``edges``: {edge key (src, src_index, dst, slot): {(src, src_index): float64 array}};
    ``totals``: {(node id, output index): the tensor's gradient} (the sum of the edges out
    of it, plus the seed 1 at a root); ``events``: (consumer id, [(edge key, grad), ...])
    in the order backward visited the consumers; ``seeds``: the roots backward started from."""

    def __init__(self, edges, order, seeds, events, notes, shapes):
        self.edges, self.order, self.seeds, self.events, self.notes = edges, order, seeds, events, notes
        self.shapes = shapes
        self.totals = _totals(edges, order, seeds, shapes)
        self.full = self            # the whole pass (a partial pass keeps it: its final directions)

    def grad(self, node_id, index=0):
        return self.totals.get((node_id, index))

    def on(self, edge_key):
        """{(src, src_index): array} sent along the traced edge ``edge_key`` (None if nothing)."""
        return self.edges.get(edge_key)

    def partial(self, keys):
        """The same pass stopped early: only the edges in ``keys`` have sent their gradient."""
        edges = {k: v for k, v in self.edges.items() if k in keys}
        part = Gradients(edges, self.order, self.seeds, self.events, self.notes, self.shapes)
        part.full = self.full
        return part

    def share(self, edge_key):
        """How much of the gradient of its source tensor the traced edge ``edge_key`` carries: its
        contribution g projected on the source's whole gradient G (of the whole pass),
        <g, G> / ||G||. The shares of all the edges out of a tensor add up to ||G||. None if the
        edge carries nothing."""
        cache = self.full.__dict__.setdefault("_shares", {})
        if edge_key not in cache:
            cache[edge_key] = self._share(edge_key)
        return cache[edge_key]

    def _share(self, edge_key):
        grads = self.full.edges.get(edge_key)
        if not grads:
            return None
        total = 0.0
        for key, g in grads.items():
            G = self.full.totals[key]
            n = float(np.sqrt(np.sum(np.square(G, dtype=np.float64))))
            total += float(np.sum(g * G)) / n if n > 0 else 0.0
        return total


def record(g, roots, keep_grads=False):
    """Backpropagate from each of ``roots`` (the traced graph ``g``'s roots) and return the
    Gradients of every edge of ``g``."""
    leaves = [obj.tensor for obj in g.objects.values() if isinstance(obj, AccumulateGrad)]
    leaves = [t for t in leaves if t is not None]
    saved_grads = [(t, t.grad) for t in leaves]
    edges, seeds, events, notes = {}, [], [], []
    done = 0
    try:
        for i, root in enumerate(roots):
            with tg.record_gradients() as records:
                try:
                    seed = None if root.numel() == 1 else tg.ones(*root.shape, dtype=root.dtype, backend=root.device)
                    root.backward(seed, retain_graph=True)
                except GraphFreedError as e:
                    if len(roots) == 1:
                        raise GraphFreedError(
                            "drawing gradients runs backward through the graph, but its saved values were freed by "
                            "an earlier backward() without retain_graph=True. Draw before calling loss.backward(), "
                            "call loss.backward(retain_graph=True), or build the graph again. (" + str(e) + ")") from None
                    name = root.name or f"output {i}"
                    notes.append(f"{name}: its graph was freed by an earlier backward(), so its gradients "
                                 f"are not drawn")
                    continue
            done += 1
            seeds.append(g.roots[i])
            _attach(g, records, edges, events)
        if not done:
            raise GraphFreedError("drawing gradients runs backward through the graph, but every output's graph "
                                  "was freed by an earlier backward() without retain_graph=True")
    finally:
        if not keep_grads:
            for t, grad in saved_grads:
                t.grad = grad
    shapes = {(n.id, i): out["shape"] for n in g.nodes.values() for i, out in enumerate(n.outputs)}
    return Gradients(edges, [e.key for e in g.edges], seeds, events, notes, shapes)


def _attach(g, records, edges, events):
    by_dst = {}
    for e in g.edges:
        by_dst.setdefault(e.dst, []).append(e)
    for lst in by_dst.values():
        lst.sort(key=lambda e: e.slot)
    used = {}
    last = None
    for r in records:
        source, source_index = primitive_edge(r.source, r.source_index)     # as drawn (trace.py)
        src, dst = g.lookup.get(id(source)), g.lookup.get(id(r.consumer))
        if src is None or dst is None:
            continue
        key = (dst, src, source_index)
        k = used.get(key, 0)
        used[key] = k + 1
        candidates = [e for e in by_dst.get(dst, ()) if e.src == src and e.src_index == source_index
                      and e.kind != "cut"]
        if k >= len(candidates):
            continue
        edge = candidates[k]
        grad = host(r.grad).astype(np.float64)
        grads = edges[edge.key] = dict(edges.get(edge.key) or {})
        skey = (src, source_index)
        grads[skey] = grad if skey not in grads else grads[skey] + grad
        if last is None or last[0] != dst:
            last = (dst, [])
            events.append(last)
        last[1].append((edge.key, grad))


def _totals(edges, order, seeds, shapes):
    """Each output's gradient: the sum of the contributions into it (plus the seed at a root)."""
    totals = {}
    for key in order:
        for k, grad in (edges.get(key) or {}).items():
            totals[k] = grad if k not in totals else totals[k] + grad
    for k in seeds:
        seed = np.ones(shapes[k])
        totals[k] = seed if k not in totals else totals[k] + seed
    return totals


def norm(grads):
    """‖·‖ of the gradients on an edge or box: Frobenius norm per tensor, combined as
    sqrt(sum of squares) over distinct tensors (contributions to one tensor are summed first)."""
    if not grads:
        return None
    total = 0.0
    for g in grads.values():
        total += float(np.sum(np.square(g, dtype=np.float64)))
    return float(np.sqrt(total))


def array_norm(a):
    if a is None:
        return None
    return float(np.sqrt(np.sum(np.square(np.asarray(host(a), dtype=np.float64)))))
