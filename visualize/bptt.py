"""The gradient overlay: run backward once, record every edge's gradient, attach it to the Graph.

``tg.record_gradients()`` yields one ``GradientEdge(source, source_index, consumer, grad)``
per gradient contribution. The gradient of a tensor is the sum of the contributions
into it (``dL/dh_t`` = what step t's readout sends + what step t+1 sends back); the
gradient of a shared weight is the sum of its per-timestep contributions, one per
edge out of its AccumulateGrad node: the "+=" of backpropagation through time.

``record`` leaves no trace on the model: it runs ``backward(retain_graph=True)`` and
then restores every leaf's ``.grad`` (and the engine's pass counters) to what they
were, so drawing never changes a later optimizer step. Pass ``keep_grads=True`` to
keep the accumulated ``.grad`` instead, exactly as after ``loss.backward()``.
"""
import numpy as np

import tinygrad_rnn as tg
from tinygrad_rnn.autograd import GraphFreedError
from tinygrad_rnn.function import AccumulateGrad, Function

from .trace import host, primitive_edge


class Recording:
    """What one recorded backward pass saw, in the order backward produced it.

    ``events``: (consumer node id, [(edge, grad array), ...]) per node that backward visited."""

    def __init__(self):
        self.events = []
        self.seeds = []
        self.notes = []


def record(g, roots, keep_grads=False):
    """Backpropagate from each of ``roots`` and store each edge's gradient on ``g``.

    Sets ``edge.grads = {(src, src_index): array}`` and each node output's "grad"
    (the total: the sum over the edges into it; the seed 1 for a root). Returns a
    Recording of the visiting order, for the step-through frames."""
    leaves = [obj.tensor for obj in g.objects.values() if isinstance(obj, AccumulateGrad)]
    leaves = [t for t in leaves if t is not None]
    saved_grads = [(t, t.grad) for t in leaves]
    passes = [(obj, obj.passes) for obj in g.objects.values() if isinstance(obj, Function)]
    rec = Recording()
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
                    rec.notes.append(f"{name}: its graph was freed by an earlier backward(), so its gradients "
                                     f"are not drawn")
                    continue
            done += 1
            rec.seeds.append(g.roots[i])
            _attach(g, records, rec)
        if not done:
            raise GraphFreedError("drawing gradients runs backward through the graph, but every output's graph "
                                  "was freed by an earlier backward() without retain_graph=True")
    finally:
        if not keep_grads:
            for t, grad in saved_grads:
                t.grad = grad
        for obj, n in passes:
            obj.passes = n
    _totals(g, rec.seeds)
    return rec


def _attach(g, records, rec):
    by_dst = {}
    for e in g.edges:
        by_dst.setdefault(e.dst, []).append(e)
    for edges in by_dst.values():
        edges.sort(key=lambda e: e.slot)
    used = {}
    last = None
    for r in records:
        source, source_index = primitive_edge(r.source, r.source_index)
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
        edge.grads = dict(edge.grads or {})
        skey = (src, source_index)
        edge.grads[skey] = grad if skey not in edge.grads else edge.grads[skey] + grad
        if last is None or last[0] != dst:
            last = (dst, [])
            rec.events.append(last)
        last[1].append((edge, grad))


def _totals(g, seeds):
    """Each output's gradient: the sum of the contributions into it (plus the seed at a root)."""
    totals = {}
    for e in g.edges:
        for (src, index), grad in (e.grads or {}).items():
            k = (src, index)
            totals[k] = grad if k not in totals else totals[k] + grad
    for node_id, index in seeds:
        node = g.nodes[node_id]
        shape = node.outputs[index]["shape"]
        k = (node_id, index)
        seed = np.ones(shape)
        totals[k] = seed if k not in totals else totals[k] + seed
    for node in g.nodes.values():
        for i, out in enumerate(node.outputs):
            out["grad"] = totals.get((node.id, i))
            out["grad_recorded"] = True


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
