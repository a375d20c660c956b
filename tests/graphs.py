"""The tests' view of a graph: its nodes in topological order (the engine itself needs none:
its backward counts consumers, and visualize/trace.py numbers nodes in its own order)."""


def topological_order(root, expand=False):
    """Nodes reachable from ``root``, each before the nodes it feeds (root first). With
    ``expand=True`` a fused op is replaced by the primitive ops it stands for."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        expansion = node.expand() if expand else None
        if expansion is not None:        # the node stands for the ops that make its outputs
            stack.extend((out.grad_fn, False) for out in expansion[1] if id(out.grad_fn) not in visited)
            continue
        stack.append((node, True))
        for parent, index in node.parents:
            if index is not None and id(parent) not in visited:
                stack.append((parent, False))
    order.reverse()
    return order
