"""Replay: a recurrent layer's time loop run from the tape of one recorded cell step.

An eager layer (the default) builds the graph op by op: eleven nodes per LSTM
step, each a Python object with its edges, walked back one at a time. At small
sizes that bookkeeping costs more than the arithmetic. A layer made with
``replay=True`` (``nn.LSTM(..., replay=True)``) instead

1. records the ops of ONE cell step, its ``Tape``: which op ran, on which
   values, with which attributes (by running the step once on the first
   timestep's inputs, without building a graph);
2. runs every timestep by calling those ops' ``forward`` on new arrays (one op
   object per recorded op serves every step of every forward), and keeps what
   each step's ops saved for backward, but only the arrays they made themselves:
   weights and h(t-1), h(t) are found again in the weights and the layer's
   buffer of h's (``StepLayout``);
3. backpropagates by calling their ``backward`` in reverse, from the last
   timestep to the first, carrying dL/dh (and dL/dc) from step to step and
   summing each weight's per-step gradients (the "+=" of BPTT).

The same primitive ops compute the same numbers; only the per-op graph objects
are gone. The whole loop is one node of the graph (``Loop``), so pictures of
the unrolled graph need the eager layer, and a replay layer runs eagerly under
``detect_anomaly()`` and ``retain_values()`` (which watch every op).

A step can be replayed because a cell step is a fixed sequence of ops: the same
ops on the same shapes at every t, with no Python decision taken on the values.
That holds for the cells in ``cells.py``; it is why replay is an option of the
built-in layers and not a general tracer.
"""
from operator import itemgetter

from ..autograd import OuterProducts, add_gradients, sum_to_shape, value
from ..backend import backend_of
from ..function import STATE, Function, no_grad
from ..ops import Linear
from ..tensor import Tensor

_new = object.__new__
_NEEDED, _NOT_NEEDED = (None, 0), (None, None)   # what Function.needs_input_grad reads from an edge


class TapeOp:
    """One recorded op: its class and attributes, the numbers of the values it read, and the
    number of its first output (a multi-output op's outputs are numbered consecutively).
    ``get(values)`` picks its inputs out of a step's values (None for a one-input op)."""
    __slots__ = ("cls", "attrs", "ins", "out", "n_out", "get")

    def __init__(self, cls, attrs, ins, out, n_out):
        self.cls, self.attrs, self.ins, self.out, self.n_out = cls, attrs, ins, out, n_out
        self.get = itemgetter(*ins) if len(ins) > 1 else None


class Tape:
    """The ops of one cell step ``step(xw_t, state) -> new state``, in the order they ran.

    Every value the step touches gets a number: first the externals (weights and
    constants it read; their current arrays are read at each replay), then the
    step's inputs (xw_t, then the state), then the outputs of each op as they
    were made. ``outputs`` are the numbers of the new state.
    """

    def __init__(self, step, xw, state):
        probes = [Tensor._wrap(t.data[0, ...], t.backend) for t in (xw,)] + \
                 [Tensor._wrap(s.data, s.backend) for s in state]   # distinct objects, even if h_0 is c_0
        log = []
        old, STATE.tape = STATE.tape, log
        try:
            with no_grad():                          # the log is all we need: no graph
                new_state = step(probes[0], tuple(probes[1:]))
        finally:
            STATE.tape = old

        inputs = {id(p) for p in probes}
        made = {id(o) for _, _, _, outs in log for o in (outs if isinstance(outs, tuple) else (outs,))}
        self.externals = []                          # tensors read but not made by the step
        seen = set()
        for _, args, _, _ in log:
            for t in args:
                if id(t) not in inputs and id(t) not in made and id(t) not in seen:
                    seen.add(id(t))
                    self.externals.append(t)
        number = {id(t): i for i, t in enumerate(self.externals + probes)}
        self.shapes = [t.shape for t in self.externals + probes]
        self.ops = []
        for cls, args, attrs, outs in log:
            outs = outs if isinstance(outs, tuple) else (outs,)
            first = len(self.shapes)
            for o in outs:
                number[id(o)] = len(self.shapes)
                self.shapes.append(o.shape)
            self.ops.append(TapeOp(cls, attrs, tuple(number[id(t)] for t in args), first, len(outs)))
        self.n_values = len(self.shapes)
        self.n_external = len(self.externals)
        self.n_state = len(state)
        # W_hh's gradient is sum_t da(t).T @ h(t-1), with a(t) = linear(h(t-1), W_hh, ...): rather
        # than a product per step, the loop keeps each step's dL/da and multiplies once at the end,
        # by the buffer of h's (as hand-written BPTT does). That holds for every weight that one
        # linear op of the step reads with h(t-1) as its input, and no other op reads:
        # {op position: (weight number, does that op add xw_t as its bias, so dL/da(t) = dL/dxw_t)}
        E = self.n_external
        reads = [i for op in self.ops for i in op.ins]
        self.summed_after = {}
        for k, op in enumerate(self.ops):
            if op.cls is Linear and op.ins[0] == E + 1 and op.ins[1] < E and reads.count(op.ins[1]) == 1:
                self.summed_after[k] = (op.ins[1], op.ins[2:] == (E,) and reads.count(E) == 1)
        self.outputs = tuple(number.get(id(s), -1) for s in new_state)
        first_made = self.n_external + 1 + self.n_state
        if len(set(self.outputs)) != len(self.outputs) or min(self.outputs) < first_made:
            raise ValueError("replay: each part of the new state must be a different tensor computed by the "
                             "cell step's ops (a state passed through unchanged cannot be replayed)")

        self._plans = {}

    def needs(self, xw_rg, state_rg):
        """Which values require grad, given whether xw_t and each state input does:
        a list of bools by value number (an op's output does when one of its inputs does)."""
        rg = [t.requires_grad for t in self.externals] + [xw_rg] + list(state_rg)
        rg += [False] * (self.n_values - len(rg))
        for op in self.ops:
            if any(rg[i] for i in op.ins):
                rg[op.out:op.out + op.n_out] = [True] * op.n_out
        return rg

    def plan(self, xw_rg, state_rg, xp):
        """How to run the steps, for the first step (h_0 may be a constant) and the others:
        ``runs`` (per op: its op object, which serves every step of every forward, paired with
        its class, attributes, first input, input getter, first output, number of outputs, and
        the edges that tell the op which input gradients it must compute), those op objects
        (``fns``), and ``backward`` (per op, last first: its position, first output, number
        of outputs, (argument position, value number, shape) of each input that needs a
        gradient, and whether to keep its dL/da for a weight summed after the loop), and the
        ``StepLayout`` of the first step and of the others (filled in by the first forward).
        Kept per requires-grad pattern."""
        key = (xw_rg, tuple(state_rg), tuple(t.requires_grad for t in self.externals))
        if key not in self._plans:
            first = self.needs(xw_rg, state_rg)
            later = self.needs(xw_rg, [first[i] for i in self.outputs])
            # (op position, input position) of the weights summed after the loop: not per step
            after = {(k, 1) for k, (j, _) in self.summed_after.items() if first[j]}
            forward = tuple([(op.cls, op.attrs, op.ins[0], op.get, op.out, op.n_out,
                              tuple(_NEEDED if r[i] and (k, pos) not in after else _NOT_NEEDED
                                    for pos, i in enumerate(op.ins)))
                             for k, op in enumerate(self.ops)] for r in (first, later))
            fns = tuple([_op(cls, xp, edges) for cls, _, _, _, _, _, edges in plan] for plan in forward)
            runs = tuple(list(zip(ops, plan)) for ops, plan in zip(fns, forward))
            backward = tuple([(k, op.out, op.n_out,
                               tuple((pos, i, self.shapes[i]) for pos, i in enumerate(op.ins)
                                     if r[i] and (k, pos) not in after),
                               (k, 1) in after)
                              for k, op in reversed(list(enumerate(self.ops)))] for r in (first, later))
            layouts = [None, None]           # StepLayouts, filled in by the first forward that runs the plan
            self._plans[key] = (runs, fns, backward, layouts)
        return self._plans[key]


class Loop(Function):
    """out, *final_state = the cell step of ``tape`` run for t = 0..T-1 (T-1..0 when ``reverse``).

    Inputs: xw (T, B, G*H) (the input's contribution to every step), the initial
    state (h_0, and c_0 for an LSTM), then the tape's externals (weights).
    Outputs: the new h of every step stacked (T, B, H), then the final state."""
    formula = "each step's ops backward in reverse, t = T-1 ... 0; dh, dc carried to t-1; dW summed over t"
    multi_output = True

    def forward(self, xw, *arrays, tape, reverse, xw_grad, state_grad):
        xp = self.xp
        T, S, E = xw.shape[0], tape.n_state, tape.n_external
        state, externals = list(arrays[:S]), list(arrays[S:])
        self.tape, self.reverse, self.dtype, self.externals = tape, reverse, xw.dtype, externals
        # One object per op serves every step (its attributes depend on shapes only). Two sets:
        # the first step's ops may need fewer input gradients (h_0 may be a constant).
        runs, self.fns, self.backward_plans, layouts = tape.plan(xw_grad, state_grad, xp)
        values = externals + [None] * (tape.n_values - E)     # one step's values, reused step after step
        # h_0 and every h(t) in one buffer, h(t-1) next to h(t) as in hand-written BPTT: row 0 is
        # h_0 and row t+1 is h(t) (reverse: row T is h_0, row t is h(t)); the output is a view
        hs = xp.empty((T + 1,) + tuple(state[0].shape), dtype=state[0].dtype)
        hs[T if reverse else 0, ...] = state[0]
        state[0] = hs[T if reverse else 0, ...]
        steps = [None] * T
        for k, t in enumerate(range(T - 1, -1, -1) if reverse else range(T)):
            values[E] = xw[t, ...]
            values[E + 1:E + 1 + S] = state
            saved = []
            for fn, (_, attrs, first_in, get, out, n_out, _) in runs[k > 0]:
                fn.saved = ()
                args = get(values) if get else (values[first_in],)
                y = fn.forward(*args, **attrs) if attrs else fn.forward(*args)
                if n_out == 1:
                    values[out] = y
                else:
                    values[out:out + n_out] = y
                saved.append(fn.saved)
            state = [values[i] for i in tape.outputs]
            hs[t if reverse else t + 1, ...] = state[0]    # h(t) goes into the buffer
            layout = layouts[k > 0]
            if layout is None:                         # the same ops save the same things at every step of every forward
                layout = layouts[k > 0] = StepLayout(saved, externals, values[E + 1], state[0],
                                                     values[E + 1 + S:], backend_of(xp))
            if layout.own:
                steps[t] = layout.keep(saved, xp)
            state[0] = hs[t if reverse else t + 1, ...]   # the next step reads h(t) from the buffer
        for fn in self.fns[0] + self.fns[1]:
            fn.saved = ()
        # what each step kept of its own (no list when no step has anything: the RNN)
        self.steps = None if all(own is None for own in steps) else steps
        self.layouts, self.hs = layouts, hs
        # the final h as an array of its own: a view would keep the whole buffer alive in a state
        # carried to the next chunk of truncated BPTT
        return (hs[:T, ...] if reverse else hs[1:, ...], xp.asarray(state[0], copy=True), *state[1:])

    def backward(self, dys):
        xp, tape = self.xp, self.tape
        d_out, carry = dys[0], list(dys[1:])        # carry: dL/d(state) arriving from later steps
        T, E, S = self.hs.shape[0] - 1, tape.n_external, tape.n_state
        grads = [None] * tape.n_values              # one step's gradients; the weights' sums stay
        blank = [None] * (tape.n_values - E)
        # What leaves the loop stacked over t is written into its row as soon as it is made
        # (zeros where no gradient arrives): dL/dxw(t), and dL/da(t) of each linear op whose
        # weight is summed after the loop (unless that is dL/dxw(t) itself).
        dxw = xp.zeros((T,) + tape.shapes[E], dtype=self.dtype) if self.needs_input_grad[0] else None
        d_a = {}
        for position, (j, a_is_xw) in tape.summed_after.items():
            if self.needs_input_grad[1 + S + j] and not (a_is_xw and dxw is not None):
                d_a[position] = xp.zeros((T,) + tape.shapes[tape.ops[position].out], dtype=self.dtype)
        free = not STATE.retain_graph
        hs, back = self.hs, 0 if self.reverse else 1   # h(t) is row t + back of hs, h(t-1) the other
        rows = xp.unstack(hs, axis=0)                  # (read only, so views or copies alike)
        for k, t in enumerate(range(T) if self.reverse else range(T - 1, -1, -1)):
            grads[E:] = blank
            for number, g in zip(tape.outputs, carry):   # the new state: made by the step's ops, once each
                grads[number] = g
            if d_out is not None:                        # h(t) is also the layer's output at t
                h = tape.outputs[0]
                grads[h] = d_out[t, ...] if grads[h] is None else grads[h] + d_out[t, ...]
            first = k == T - 1                           # the last step done is the first one run
            fns, layout = self.fns[not first], self.layouts[not first]
            own = None if self.steps is None else self.steps[t]
            pool = layout.pool(self.externals, rows[t + 1 - back], rows[t + back], own)
            for position, out, n_out, targets, keep_dy in self.backward_plans[not first]:
                if n_out == 1:
                    dy = grads[out]
                    if dy is None:
                        continue
                else:
                    dy = grads[out:out + n_out]
                    if all(g is None for g in dy):
                        continue
                    dy = [value(g) for g in dy]
                if keep_dy and position in d_a:
                    d_a[position][t, ...] = dy
                if not targets:
                    continue
                fn = fns[position]
                fn.saved = layout.saved[position](pool)
                dxs = fn.backward(dy)
                if type(dxs) is not tuple:
                    dxs = (dxs,)
                for pos, i, shape in targets:
                    dx = dxs[pos]
                    if dx is None:
                        continue
                    if dx.shape != shape:
                        dx = sum_to_shape(dx, shape, xp)
                    grads[i] = dx if grads[i] is None else add_gradients(grads[i], dx)
            if dxw is not None and grads[E] is not None:
                dxw[t, ...] = value(grads[E])
            carry = grads[E + 1:E + 1 + S]
            if free and own is not None:             # as eager backward frees each node after its backward
                self.steps[t] = None
        for fn in self.fns[0] + self.fns[1]:
            fn.saved = ()
        d_external = grads[:E]
        # the weights summed after the loop: sum_t dL/da(t).T @ h(t-1) as one product, the rows of
        # h(t-1) straight from the buffer (row t for step t; reverse: row t+1)
        h_prev = hs[1:, ...] if self.reverse else hs[:T, ...]
        for position, (j, a_is_xw) in tape.summed_after.items():
            if not self.needs_input_grad[1 + S + j]:
                continue
            da = dxw if a_is_xw and dxw is not None else d_a[position]
            n = T * h_prev.shape[1]
            d_external[j] = OuterProducts(xp, xp.reshape(da, (n, da.shape[-1])),
                                          xp.reshape(h_prev, (n, h_prev.shape[-1])))
        if free:
            self.hs = None
        return (dxw, *[None if g is None else value(g) for g in carry], *d_external)

    def release(self):
        self.saved = None
        self.steps = self.layouts = self.fns = self.hs = self.externals = None


def _op(cls, xp, edges):
    """An op object as Function.apply makes one, with ``edges`` telling it which inputs need a gradient
    (and that answer stored once: it is asked at every step)."""
    fn = _new(cls)
    fn.xp, fn.saved, fn.parents = xp, (), edges
    fn.needs_input_grad = tuple([index is not None for _, index in edges])
    return fn


class StepLayout:
    """What one step's ops saved, sorted by where backward can find it again.

    A step's ops save weights (the same arrays at every step), h(t-1) and h(t)
    (rows of the loop's buffer of h's, which backward reads anyway), and arrays of
    their own (gates, c(t), ...). Only the last kind is kept per step, as one
    tuple; backward rebuilds each op's saved tuple from a pool
    [weights..., h(t-1), h(t), the step's own arrays...]. A slice of a bigger array
    made in the step (a GRU's W_hn h is a third of the product W_hh h) would keep the
    whole array alive: the step keeps a copy of the slice instead.
    """

    def __init__(self, saved, externals, h_prev, h, made, backend):
        E = len(externals)
        where = {id(a): e for e, a in enumerate(externals)}
        where.setdefault(id(h_prev), E)
        where.setdefault(id(h), E + 1)
        made_ids = {id(v) for v in made}
        self.own = []                        # (op, position, copy?) of each array kept per step
        slots = []                           # per op: the pool numbers of what it saved
        for j, arrays in enumerate(saved):
            numbers = []
            for m, a in enumerate(arrays):
                if id(a) not in where:       # the step's own (kept once when several ops saved it)
                    base = backend.base_of(a) if a is not None else None
                    copy = base is not None and id(base) in made_ids and base.size > a.size
                    where[id(a)] = E + 2 + len(self.own)
                    self.own.append((j, m, copy))
                numbers.append(where[id(a)])
            slots.append(numbers)
        self.saved = [_getter(numbers) for numbers in slots]

    def keep(self, saved, xp):
        """The step's own saved arrays (called only when ``own`` is not empty)."""
        return tuple([xp.asarray(saved[j][m], copy=True) if copy else saved[j][m] for j, m, copy in self.own])

    def pool(self, externals, h_prev, h, own):
        return externals + [h_prev, h] if own is None else externals + [h_prev, h, *own]


def _getter(numbers):
    """pool -> the tuple of pool[n] for n in numbers."""
    if not numbers:
        return lambda pool: ()
    if len(numbers) == 1:
        n = numbers[0]
        return lambda pool: (pool[n],)
    return itemgetter(*numbers)


def can_replay():
    """False under the tools that watch every op (they need the eager graph)."""
    return not (STATE.anomaly or STATE.retain_values)


def run(step, xw, state, reverse, tapes, key, params):
    """The time loop of one layer and direction as one Loop node: (output (T, B, H), final state).

    ``tapes`` keeps recorded steps by ``key`` for the next forward: a tape is reused while
    every tensor it reads is still one of the layer's ``params`` (a replaced Parameter, or a
    tensor made anew at each forward, means recording again)."""
    current = {id(p) for p in params}
    tape = tapes.get(key)
    if tape is None or not all(id(t) in current for t in tape.externals):
        tape = Tape(step, xw, state)
        if all(id(t) in current for t in tape.externals):
            if len(tapes) >= 16:      # new shapes keep coming (e.g. varying batch sizes): start over
                tapes.clear()
            tapes[key] = tape
    outs = Loop.apply(xw, *state, *tape.externals, tape=tape, reverse=reverse,
                      xw_grad=xw.requires_grad, state_grad=[s.requires_grad for s in state])
    return outs[0], tuple(outs[1:])
