"""Alternating runs, medians and paired ratios.

A shared machine drifts: another process starts, the CPU clock changes. Timing
A for a minute and then B for a minute lets such drift land on one side only. So
each round runs every contender, one after the other (A, B, C, then B, C, A: the
order rotates, so that each follows each other equally often), and a ratio is the
median over rounds of A_i / B_i: both halves of each pair saw the same machine.
Medians, not means: one descheduled run must not move them.
The garbage collector stays on, as in a real training loop (the engine's share
of collections is part of its cost).

Within a round each contender runs ``calls`` times in a row (default 2), and two of
its times are kept. The last call is "warm": it follows a call of the same step, as
every step of a training loop does. The first is "cold": it follows the other
contenders, whose code and data have pushed its own out of the CPU's caches. A
training loop never meets that, and it costs most where a step runs the most Python
(PyTorch's autograd loop, the engine) and least for a few NumPy calls (by hand):
measured on one RNN tiny step, the engine's forward took 0.36 ms warm and 0.50 ms
cold, right after PyTorch's fused step. The ratios read against the targets are the
warm ones; the cold ones are reported beside them.
"""
import statistics
import time

perf_counter = time.perf_counter


def alternate(contenders, warmup=2, min_rounds=5, max_rounds=500, budget=10.0, calls=2):
    """Time each of ``contenders`` ({name: fn()}) ``calls`` times in a row per round, in the
    dict's order rotated by one each round.

    ``warmup`` untimed rounds first (caches, BLAS buffers, first-call allocations),
    then rounds until ``max_rounds`` or until ``budget`` seconds have passed
    (but at least ``min_rounds``). Returns (warm, cold): {name: [seconds, one per round]}
    of the last and of the first call in each round (the same call when ``calls`` is 1)."""
    names = list(contenders)

    def order(r):                       # round r starts with contender r (mod their number)
        k = r % len(names)
        return names[k:] + names[:k]

    for r in range(warmup):
        for name in order(r):
            for _ in range(calls):
                contenders[name]()
    warm = {name: [] for name in names}
    cold = {name: [] for name in names}
    start = perf_counter()
    rounds = 0
    while rounds < max_rounds and (rounds < min_rounds or perf_counter() - start < budget):
        for name in order(warmup + rounds):
            fn = contenders[name]
            for call in range(calls):
                t0 = perf_counter()
                fn()
                seconds = perf_counter() - t0
                if call == 0:
                    cold[name].append(seconds)
                if call == calls - 1:
                    warm[name].append(seconds)
        rounds += 1
    return warm, cold


def median(xs):
    return statistics.median(xs)


def quantiles(xs):
    """(25th, 50th, 75th) percentiles; with fewer than 2 values all three are the value."""
    if len(xs) < 2:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], statistics.median(xs), q[2]


def paired_ratio(a, b):
    """Median of a_i / b_i over rounds, with its interquartile range: {"ratio", "p25", "p75"}."""
    p25, p50, p75 = quantiles([x / y for x, y in zip(a, b)])
    return {"ratio": p50, "p25": p25, "p75": p75}


def time_loop(fn, n):
    """Seconds for ``fn(n)``, a function that runs its own loop of n calls."""
    t0 = perf_counter()
    fn(n)
    return perf_counter() - t0
