"""The primitive ops: one class each, forward and backward side by side.

``forward`` receives backend arrays and returns the output array (a tuple for
the multi-output ops ``Split`` and ``Unbind``); ``backward`` receives the output
gradient ``dy`` and returns one gradient per input (``None`` where none is
needed): a bare array for one-input ops, a tuple otherwise. Gradients may keep
a broadcast shape: the engine sums them back to each input's shape in one place
(``autograd.sum_to_shape``). One exception to "an array": ``Linear`` returns its
weight's gradient as ``OuterProducts`` (the factors of dy.T @ x), so a weight
shared by every timestep gets its gradient from one product.

``self.xp`` is the array namespace; only Python Array API functions are called
on it. Each op's ``formula`` is its local derivative as a student would write
it; the graph renderer shows it. The fused recurrent-cell ops are in cell_ops.py.
"""
from .backend import backend_of
from .function import Function


# ---------------------------------------------------------------- binary (broadcasting)
class Add(Function):
    """y = x + w"""
    formula = "dx = dy;  dw = dy"

    def forward(self, x, w):
        return x + w

    def backward(self, dy):
        return dy, dy


class Sub(Function):
    """y = x - w"""
    formula = "dx = dy;  dw = -dy"

    def forward(self, x, w):
        return x - w

    def backward(self, dy):
        return dy, (-dy if self.needs_input_grad[1] else None)


class Mul(Function):
    """y = x * w (elementwise)"""
    formula = "dx = dy * w;  dw = dy * x"

    def forward(self, x, w):
        self.save_for_backward(x, w)
        return x * w

    def backward(self, dy):
        x, w = self.saved
        need_x, need_w = self.needs_input_grad
        return (dy * w if need_x else None), (dy * x if need_w else None)


class Lerp(Function):
    """y = x + w * (e - x) = (1 - w) * x + w * e  (torch.lerp(x, e, w)): x where w = 0, e where w = 1"""
    formula = "dx = dy * (1 - w);  de = dy * w;  dw = dy * (e - x)"

    def forward(self, x, e, w):
        self.save_for_backward(x, e, w)
        return x + w * (e - x)

    def backward(self, dy):
        x, e, w = self.saved
        need_x, need_e, need_w = self.needs_input_grad
        de = dy * w if need_x or need_e else None
        return ((dy - de) if need_x else None), (de if need_e else None), (dy * (e - x) if need_w else None)


class Div(Function):
    """y = x / w"""
    formula = "dx = dy / w;  dw = -dy * y / w"

    def forward(self, x, w):
        y = x / w
        self.save_for_backward(w, y)
        return y

    def backward(self, dy):
        w, y = self.saved
        dx = dy / w
        return dx, (-dx * y if self.needs_input_grad[1] else None)


class MatMul(Function):
    """y = x @ w  (x: (..., n, k), w: (k, m) or batched; 1-D operands as in NumPy)"""
    formula = "dx = dy @ w.T;  dw = x.T @ dy"

    vec_x = vec_w = False      # set when an operand was a 1-D vector (treated as a row / a column)

    def forward(self, x, w):
        if x.ndim == 1 or w.ndim == 1:
            return self._vector_forward(x, w)
        self.save_for_backward(x, w)
        return x @ w

    def _vector_forward(self, x, w):
        xp = self.xp
        self.vec_x, self.vec_w = x.ndim == 1, w.ndim == 1
        if self.vec_x:                      # (k,) @ w  ->  (1, k) @ w
            x = xp.reshape(x, (1, x.shape[0]))
        if self.vec_w:                      # x @ (k,)  ->  x @ (k, 1)
            w = xp.reshape(w, (w.shape[0], 1))
        self.save_for_backward(x, w)
        y = x @ w
        self.y_shape = y.shape
        return xp.reshape(y, y.shape[:-2] + y.shape[y.ndim - 2 + self.vec_x:y.ndim - self.vec_w])

    def explain(self, arrays, error):
        x, w = arrays
        if x.ndim == 0 or w.ndim == 0:
            return f"cannot multiply {tuple(x.shape)} by {tuple(w.shape)}: @ needs at least one dimension on each side"
        k_w = w.shape[0] if w.ndim == 1 else w.shape[-2]
        if x.shape[-1] != k_w:
            return (f"cannot multiply {tuple(x.shape)} by {tuple(w.shape)}: the inner dimensions "
                    f"{x.shape[-1]} and {k_w} differ")
        return f"cannot multiply {tuple(x.shape)} by {tuple(w.shape)}: {error}"

    def backward(self, dy):
        xp = self.xp
        x, w = self.saved
        if self.vec_x or self.vec_w:
            dy = xp.reshape(dy, self.y_shape)
        need_x, need_w = self.needs_input_grad
        dx = dw = None
        if need_x:
            dx = dy @ xp.matrix_transpose(w)
            if self.vec_x:   # drop the row axis; batch axes (if w had them) are summed by the engine
                dx = xp.reshape(dx, dx.shape[:-2] + dx.shape[-1:])
        if need_w:
            if w.ndim == 2 and x.ndim > 2:
                # all batch rows at once: one (k, rows) @ (rows, m) product
                dw = xp.matrix_transpose(_rows(xp, x)) @ _rows(xp, dy)
            else:
                dw = xp.matrix_transpose(x) @ dy
            if self.vec_w:
                dw = xp.reshape(dw, dw.shape[:-1])
        return dx, dw


class Linear(Function):
    """y = x @ W.T + b  (x: (..., in), W: (out, in), b broadcast to (..., out)); PyTorch's F.linear.

    One node for the affine map W h + b of a layer or an RNN step, so the weight
    connects straight to every timestep that uses it and the picture reads like
    the equations. Without b it is x @ W.T."""
    formula = "dx = dy @ W;  dW = dy.T @ x;  db = dy"

    def forward(self, x, W, b=None):
        xp = self.xp
        self.save_for_backward(x, W)
        if x.ndim == 2:
            y = x @ xp.matrix_transpose(W)
        else:                                          # one product for all rows (batch and time)
            y = xp.reshape(_rows(xp, x) @ xp.matrix_transpose(W), x.shape[:-1] + (W.shape[0],))
        if b is not None:
            if b.shape == y.shape[y.ndim - b.ndim:]:
                y += b        # in place: the product is ours, skip one temporary
            else:
                y = y + b
        return y

    def backward(self, dy):
        xp = self.xp
        x, W = self.saved
        need = self.needs_input_grad
        dy_rows = dy if dy.ndim == 2 else _rows(xp, dy)
        dx = None
        if need[0]:
            dx = dy_rows @ W if x.ndim == 2 else xp.reshape(dy_rows @ W, x.shape)
        dW = OuterProducts(xp, dy_rows, x if x.ndim == 2 else _rows(xp, x)) if need[1] else None
        if len(need) == 2:
            return dx, dW
        db = None
        if need[2]:                  # b (out,): summed over the rows here; another shape: by the engine
            b_node, b_index = self.parents[2]
            db = xp.sum(dy_rows, axis=0) if len(b_node.out_shapes[b_index]) == 1 else dy
        return dx, dW, db


class OuterProducts:
    """A weight gradient  sum_k dy_k.T @ x_k, kept as its factors until every term is in.

    In BPTT a weight used at every timestep receives one product per step:
    dL/dW_hh = sum_t dL/da(t).T @ h(t-1), the notes' "+=". T small products and
    T additions cost far more than stacking the factors and multiplying once,
    which is how a hand-written BPTT computes dW_hh after its time loop. So
    ``Linear.backward`` (and the fused cell ops) return a weight's gradient as one
    of these; the backward pass joins them as they arrive and ``value()``
    multiplies once when the total is needed. (Same numbers, up to float rounding.)
    """
    __slots__ = ("xp", "dys", "xs", "shape")

    def __init__(self, xp, dy, x):
        self.xp, self.dys, self.xs = xp, [dy], [x]
        self.shape = (dy.shape[-1], x.shape[-1])

    def join(self, other):
        self.dys += other.dys
        self.xs += other.xs

    def value(self):
        xp = self.xp
        if len(self.dys) == 1:
            dy, x = self.dys[0], self.xs[0]
        else:
            dy, x = xp.concat(self.dys, axis=0), xp.concat(self.xs, axis=0)
        if dy.shape[0] == 1:   # one row: an outer product, which matmul does slowly (inner size 1)
            return xp.reshape(dy, (-1, 1)) * x
        return xp.matrix_transpose(dy) @ x


class Where(Function):
    """y = x where cond else w  (cond: a bool tensor, no gradient)"""
    formula = "dx = dy * cond;  dw = dy * (not cond)"

    def forward(self, cond, x, w):
        self.save_for_backward(cond)
        return self.xp.where(cond, x, w)

    def backward(self, dy):
        (cond,) = self.saved
        zero = self.xp.zeros((), dtype=dy.dtype)
        _, need_x, need_w = self.needs_input_grad
        return (None, self.xp.where(cond, dy, zero) if need_x else None,
                self.xp.where(cond, zero, dy) if need_w else None)


# ---------------------------------------------------------------- unary
class Neg(Function):
    """y = -x"""
    formula = "dx = -dy"

    def forward(self, x):
        return -x

    def backward(self, dy):
        return -dy


class Exp(Function):
    """y = exp(x)"""
    formula = "dx = dy * y"

    def forward(self, x):
        y = self.xp.exp(x)
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        return dy * self.saved[0]


class Log(Function):
    """y = log(x)"""
    formula = "dx = dy / x"

    def forward(self, x):
        self.save_for_backward(x)
        return self.xp.log(x)

    def backward(self, dy):
        return dy / self.saved[0]


class Tanh(Function):
    """y = tanh(x)"""
    formula = "dx = dy * (1 - y**2)"

    def forward(self, x):
        y = self.xp.tanh(x)
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        (y,) = self.saved
        return dy * (1 - y * y)


class Sigmoid(Function):
    """y = 1 / (1 + exp(-x)), computed as (1 + tanh(x/2)) / 2, which never overflows"""
    formula = "dx = dy * y * (1 - y)"

    def forward(self, x):
        y = self.xp.tanh(0.5 * x)
        y += 1
        y *= 0.5
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        (y,) = self.saved
        return dy * (y - y * y)


class ReLU(Function):
    """y = max(x, 0)"""
    formula = "dx = dy * (x > 0)"

    def forward(self, x):
        y = self.xp.maximum(x, self.xp.zeros((), dtype=x.dtype))
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        (y,) = self.saved
        return dy * self.xp.astype(y > 0, dy.dtype)


class Sqrt(Function):
    """y = sqrt(x)"""
    formula = "dx = dy / (2 * y)"

    def forward(self, x):
        y = self.xp.sqrt(x)
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        return dy / (2 * self.saved[0])


class Abs(Function):
    """y = |x|"""
    formula = "dx = dy * sign(x)"

    def forward(self, x):
        self.save_for_backward(x)
        return self.xp.abs(x)

    def backward(self, dy):
        return dy * self.xp.sign(self.saved[0])


class Pow(Function):
    """y = x ** p  (p a constant number)"""
    formula = "dx = dy * p * x**(p-1)"

    def forward(self, x, exponent):
        self.p = exponent
        self.save_for_backward(x)
        return x ** exponent

    def backward(self, dy):
        (x,) = self.saved
        if self.p == 2:
            return dy * (2 * x)
        if self.p == 0:          # x**0 = 1 everywhere, also at x = 0 where x**(p-1) is inf
            return dy * 0
        return dy * (self.p * x ** (self.p - 1))


class Power(Function):
    """y = x ** w  (w a tensor; broadcasting)"""
    formula = "dx = dy * w * x**(w-1);  dw = dy * y * log(x)"

    def forward(self, x, w):
        y = x ** w
        self.save_for_backward(x, w, y)
        return y

    def backward(self, dy):
        xp = self.xp
        x, w, y = self.saved
        need_x, need_w = self.needs_input_grad
        dx = dw = None
        if need_x:   # 0 where w = 0: x**0 = 1 is flat, also at x = 0 (where x**(w-1) is inf)
            flat = w == 0
            x_safe = xp.where(flat, xp.ones((), dtype=x.dtype), x)
            dx = dy * xp.where(flat, xp.zeros((), dtype=y.dtype), w * x_safe ** (w - 1))
        if need_w:
            # y * log(x) -> 0 at x = 0 (as PyTorch: 0**w does not move with w there)
            at_zero = x == 0
            log_x = xp.log(xp.where(at_zero, xp.ones((), dtype=x.dtype), x))
            dw = dy * xp.where(at_zero, xp.zeros((), dtype=y.dtype), y * log_x)
        return dx, dw


class Clip(Function):
    """y = min(max(x, lo), hi)"""
    formula = "dx = dy * (lo <= x <= hi)"

    def forward(self, x, lo, hi):
        xp = self.xp
        inside = xp.ones(x.shape, dtype=xp.bool)
        if lo is not None:
            inside = inside & (x >= lo)
        if hi is not None:
            inside = inside & (x <= hi)
        self.save_for_backward(inside)
        return xp.clip(x, lo, hi)

    def backward(self, dy):
        return dy * self.xp.astype(self.saved[0], dy.dtype)


class Cast(Function):
    """y = x as another dtype"""
    formula = "dx = dy (cast back)"

    def forward(self, x, dtype):
        self.in_dtype = x.dtype
        return self.xp.astype(x, dtype)

    def backward(self, dy):          # only float casts are recorded: ints never require grad
        return self.xp.astype(dy, self.in_dtype)


# ---------------------------------------------------------------- softmax family
class Softmax(Function):
    """y = exp(x - max x) / sum(exp(x - max x)) along axis"""
    formula = "dx = y * (dy - sum(dy * y))"

    def forward(self, x, axis):
        xp = self.xp
        self.axis = axis
        e = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
        y = e / xp.sum(e, axis=axis, keepdims=True)
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        (y,) = self.saved
        return y * (dy - self.xp.sum(dy * y, axis=self.axis, keepdims=True))


class LogSoftmax(Function):
    """y = x - max x - log(sum(exp(x - max x))) along axis: finite for any finite logits"""
    formula = "dx = dy - softmax(x) * sum(dy)"

    def forward(self, x, axis):
        xp = self.xp
        self.axis = axis
        y = x - xp.max(x, axis=axis, keepdims=True)
        y -= xp.log(xp.sum(xp.exp(y), axis=axis, keepdims=True))     # in place: y is ours
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        (y,) = self.saved
        xp = self.xp
        dx = xp.exp(y)                                               # softmax(x)
        dx *= -xp.sum(dy, axis=self.axis, keepdims=True)
        dx += dy
        return dx


# ---------------------------------------------------------------- reductions
def _keepdims_shape(shape, axis):
    """The shape a reduction over ``axis`` has with keepdims=True."""
    if axis is None:
        return (1,) * len(shape)
    return tuple(1 if i in axis else n for i, n in enumerate(shape))


class Sum(Function):
    """y = sum of x over axis"""
    formula = "dx = dy (copied to every summed element)"

    def forward(self, x, axis, keepdims):
        self.in_shape, self.axis = x.shape, axis
        return self.xp.sum(x, axis=axis, keepdims=keepdims)

    def backward(self, dy):
        xp = self.xp
        dy = xp.reshape(dy, _keepdims_shape(self.in_shape, self.axis))
        return xp.broadcast_to(dy, self.in_shape)


class Mean(Function):
    """y = mean of x over axis"""
    formula = "dx = dy / n (n = number of averaged elements)"

    def forward(self, x, axis, keepdims):
        self.in_shape, self.axis = x.shape, axis
        n = 1
        for i, s in enumerate(x.shape):
            if axis is None or i in axis:
                n *= s
        self.n = n
        return self.xp.mean(x, axis=axis, keepdims=keepdims)

    def backward(self, dy):
        xp = self.xp
        dy = xp.reshape(dy / max(self.n, 1), _keepdims_shape(self.in_shape, self.axis))  # n = 0: x is empty
        return xp.broadcast_to(dy, self.in_shape)


class Max(Function):
    """y = max of x over axis (ties share the gradient equally)"""
    formula = "dx = dy * (x == max) / (number of maxima)"

    def forward(self, x, axis, keepdims):
        xp = self.xp
        self.in_shape, self.axis = x.shape, axis
        y_keep = xp.max(x, axis=axis, keepdims=True)
        self.save_for_backward(x, y_keep)
        return y_keep if keepdims else xp.reshape(y_keep, tuple(n for i, n in enumerate(x.shape)
                                                               if axis is not None and i not in axis))

    def backward(self, dy):
        xp = self.xp
        x, y_keep = self.saved
        mask = xp.astype(x == y_keep, dy.dtype)
        share = mask / xp.sum(mask, axis=self.axis, keepdims=True)
        return xp.reshape(dy, _keepdims_shape(self.in_shape, self.axis)) * share


# ---------------------------------------------------------------- shapes
class Reshape(Function):
    """y = x with a new shape"""
    formula = "dx = dy reshaped back"

    def forward(self, x, shape):
        self.in_shape = x.shape
        return self.xp.reshape(x, shape)

    def backward(self, dy):
        return self.xp.reshape(dy, self.in_shape)


class Permute(Function):
    """y = x with its axes permuted (transpose)"""
    formula = "dx = dy with the inverse permutation"

    def forward(self, x, perm):
        self.perm = perm
        return self.xp.permute_dims(x, perm)

    def backward(self, dy):
        inverse = [0] * len(self.perm)
        for i, p in enumerate(self.perm):
            inverse[p] = i
        return self.xp.permute_dims(dy, tuple(inverse))


class GetItem(Function):
    """y = x[key]: basic slicing, or integer arrays (gather)"""
    formula = "dx = zeros like x, with dy added at x[key]"

    def forward(self, x, key):
        xp = self.xp
        self.in_shape, self.dtype = x.shape, x.dtype
        arrays = [i for i, k in enumerate(key) if not isinstance(k, (int, slice, type(None), type(Ellipsis)))]
        if not arrays:                      # basic indexing: a view
            self.kind = "basic"
            self.key = key
            self.set_key = tuple(k for k in key if k is not None)
            self.base_shape = x[self.set_key].shape
            return x[key]
        if len(key) == x.ndim and all(isinstance(k, int) or i in arrays for i, k in enumerate(key)):
            self.kind = "points"            # x[i, j]: one element per index tuple
            self.key = key
            self.save_for_backward(*[k for k in key if not isinstance(k, int)])
            return x[key]
        rest = [k for i, k in enumerate(key) if i not in arrays]
        if len(arrays) == 1 and all(k == slice(None) or k is Ellipsis for k in rest):
            self.kind = "take"              # x[idx], x[:, idx]: gather along one axis
            pos = arrays[0]
            axis = pos if Ellipsis not in key[:pos] else x.ndim - (len(key) - pos)
            idx = key[pos]
            self.axis, self.idx_shape = axis, idx.shape
            n = x.shape[axis]
            if 0 in x.shape and idx.size and bool(xp.any((idx >= n) | (idx < -n))):
                # take() checks the range only where it reads something; an empty x reads nothing
                raise IndexError(f"index out of range for axis {axis} of size {n}")
            flat = xp.reshape(idx, (-1,))
            self.save_for_backward(flat)
            y = xp.take(x, flat, axis=axis)
            return xp.reshape(y, x.shape[:axis] + idx.shape + x.shape[axis + 1:])
        raise IndexError("indexing with an integer array is supported on one axis with ':' elsewhere "
                         "(x[idx], x[:, idx]) or with one array or int per axis (x[rows, cols]); "
                         "index in two steps instead")

    def backward(self, dy):
        xp = self.xp
        if self.kind == "basic":
            dx = xp.zeros(self.in_shape, dtype=dy.dtype)
            dx[self.set_key] = xp.reshape(dy, self.base_shape)
            return dx
        if self.kind == "take":
            (flat,) = self.saved
            axis = self.axis
            values = xp.reshape(dy, self.in_shape[:axis] + (flat.shape[0],) + self.in_shape[axis + 1:])
            return backend_of(xp).index_add(self.in_shape, axis, flat, values)
        # points: turn the index tuple into one flat index and scatter-add
        arrays = list(self.saved)
        parts = [xp.asarray(k, dtype=xp.int64) if isinstance(k, int) else arrays.pop(0) for k in self.key]
        parts = xp.broadcast_arrays(*parts)
        flat = xp.zeros(parts[0].shape, dtype=xp.int64)
        for k, n in zip(parts, self.in_shape):
            flat = flat * n + (k % n)
        size = 1
        for n in self.in_shape:
            size *= n
        dx = backend_of(xp).index_add((size,), 0, xp.reshape(flat, (-1,)), xp.reshape(dy, (-1,)))
        return xp.reshape(dx, self.in_shape)


class Concat(Function):
    """y = concatenation of the inputs along axis"""
    formula = "dx_i = the slice of dy that x_i filled"

    def forward(self, *xs, axis):
        self.axis = axis
        self.sizes = [x.shape[axis] for x in xs]
        return self.xp.concat(xs, axis=axis)

    def backward(self, dy):
        return tuple(_split(self.xp, dy, self.sizes, self.axis))


class Stack(Function):
    """y = the inputs stacked along a new axis"""
    formula = "dx_i = dy[i] (along the new axis)"

    def forward(self, *xs, axis):
        self.axis = axis
        return self.xp.stack(xs, axis=axis)

    def backward(self, dy):
        return tuple(self.xp.unstack(dy, axis=self.axis))


class Split(Function):
    """y_0, y_1, ... = consecutive pieces of x along axis (sizes given)"""
    formula = "dx = concat(dy_0, dy_1, ...) (zeros for unused pieces)"
    multi_output = True

    def forward(self, x, sizes, axis):
        self.sizes, self.axis, self.in_shape = sizes, axis, x.shape
        return tuple(_split(self.xp, x, sizes, axis))

    def backward(self, dys):
        xp = self.xp
        parts = []
        for dy, n in zip(dys, self.sizes):
            if dy is None:
                shape = list(self.in_shape)
                shape[self.axis] = n
                dy = xp.zeros(tuple(shape), dtype=_first(dys).dtype)
            parts.append(dy)
        return xp.concat(parts, axis=self.axis)


class Unbind(Function):
    """y_0, y_1, ... = x[0], x[1], ... along axis, in one node"""
    formula = "dx = stack(dy_0, dy_1, ...) (zeros for unused slices)"
    multi_output = True

    def forward(self, x, axis):
        self.axis, self.in_shape = axis, x.shape
        return self.xp.unstack(x, axis=axis)

    def backward(self, dys):
        xp = self.xp
        if any(dy is None for dy in dys):
            shape = self.in_shape[:self.axis] + self.in_shape[self.axis + 1:]
            zero = xp.zeros(shape, dtype=_first(dys).dtype)
            dys = [zero if dy is None else dy for dy in dys]
        return xp.stack(dys, axis=self.axis)


class Embedding(Function):
    """y = weight[idx] (rows gathered by integer ids)"""
    formula = "dweight = zeros, with each dy row added at its id (scatter-add)"

    def forward(self, weight, idx):
        xp = self.xp
        self.weight_shape, self.idx_shape = weight.shape, idx.shape
        flat = xp.reshape(idx, (-1,))
        self.save_for_backward(flat)
        return xp.reshape(xp.take(weight, flat, axis=0), idx.shape + weight.shape[1:])

    def backward(self, dy):
        (flat,) = self.saved
        values = self.xp.reshape(dy, (flat.shape[0],) + self.weight_shape[1:])
        return backend_of(self.xp).index_add(self.weight_shape, 0, flat, values), None


class Pick(Function):
    """y = x[i, t_i] along ``axis``: each row's entry at its index t_i, that is
    sum_c x[i, c] * [c = t_i] (the lecture's log P(t) * [t = true]); 0 where t_i is ``ignore``
    (None: no id is ignored). x: (N, C, d1, ...) with axis 1 (or (C,) with axis 0), t: x's
    shape without that axis."""
    formula = "dx = dy at [c = t], 0 elsewhere"

    def forward(self, x, t, axis, ignore=None):
        xp = self.xp
        self.axis, self.in_shape = axis, x.shape
        kept = None if ignore is None else t != ignore
        at = x.shape[:axis] + (1,) + x.shape[axis + 1:]            # t's shape with x's axis put back
        index = xp.reshape(t if kept is None else xp.where(kept, t, 0), at)    # an ignored row reads class 0
        self.save_for_backward(index, kept)
        y = xp.reshape(backend_of(xp).take_along_axis(x, index, axis), t.shape)
        return y if kept is None else xp.where(kept, y, 0.0)

    def backward(self, dy):
        xp = self.xp
        index, kept = self.saved
        if kept is not None:
            dy = xp.where(kept, dy, 0.0)
        return backend_of(xp).put_along_axis(self.in_shape, index, xp.reshape(dy, index.shape), self.axis), None


# ---------------------------------------------------------------- helpers
def _split(xp, a, sizes, axis):
    """Consecutive slices of ``a`` along ``axis`` with the given sizes (views where possible)."""
    out, start = [], 0
    lead = (slice(None),) * axis
    for n in sizes:
        out.append(a[lead + (slice(start, start + n), Ellipsis)])
        start += n
    return out


def _rows(xp, a):
    """``a`` as a matrix of rows (..., n) -> (rows, n); spelled out, since -1 is ambiguous for empty arrays."""
    rows = 1
    for size in a.shape[:-1]:
        rows *= size
    return xp.reshape(a, (rows, a.shape[-1]))


def _first(arrays):
    return next(a for a in arrays if a is not None)
