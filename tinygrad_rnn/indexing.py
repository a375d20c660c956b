"""x[key]: the key checked and made explicit before the GetItem op sees it."""


def normalized_key(key, shape):
    """``key`` (ints, slices, None, ..., integer arrays) for an array of ``shape``: checked, with
    a trailing ``...`` when it has none and, when it holds no integer array, every slice's bounds
    inside its axis (NumPy clips x[0:10] of a 3-long axis to x[0:3]; the Array API leaves
    out-of-range bounds unspecified)."""
    n_indexed = sum(1 for k in key if k is not None and k is not Ellipsis)
    if n_indexed > len(shape):
        raise IndexError(f"too many indices: {n_indexed} for a tensor with {len(shape)} dimensions")
    if sum(1 for k in key if k is Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if any(not isinstance(k, (int, slice, type(None), type(Ellipsis))) for k in key):
        return key
    if Ellipsis not in key:
        key = key + (Ellipsis,)
    return _bounded_slices(key, shape)


def _bounded_slices(key, shape):
    """Slices with start and stop inside the axis (x[0:10] of a 3-long axis is x[0:3]): NumPy
    clips them itself, the Array API leaves out-of-range bounds unspecified."""
    out, axis = [], 0
    for i, k in enumerate(key):
        if k is Ellipsis:
            axis = len(shape) - sum(1 for j in key[i + 1:] if j is not None)
        elif isinstance(k, slice):
            start, stop, step = k.indices(shape[axis])
            if not range(start, stop, step):           # nothing selected
                out.append(slice(0, 0, 1))
            else:                                       # a reverse slice down to index 0 stops at None
                out.append(slice(start, None if stop < 0 else stop, step))
            axis += 1
            continue
        elif k is not None:
            axis += 1
        out.append(k)
    return tuple(out)
