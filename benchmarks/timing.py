"""Alternating runs, medians and paired ratios.

A shared machine drifts: another process starts, the CPU clock changes. Timing
A for a minute and then B for a minute lets such drift land on one side only. So
each round runs every contender once, one after the other (A, B, C, A, B, C, ...),
and a ratio is the median over rounds of A_i / B_i: both halves of each pair
saw the same machine. Medians, not means: one descheduled run must not move them.
The garbage collector stays on, as in a real training loop (the engine's share
of collections is part of its cost).
"""
import statistics
import time

perf_counter = time.perf_counter


def alternate(contenders, warmup=2, min_rounds=5, max_rounds=500, budget=10.0):
    """Time each of ``contenders`` ({name: fn()}) once per round, in the dict's order.

    ``warmup`` untimed rounds first (caches, BLAS buffers, first-call allocations),
    then rounds until ``max_rounds`` or until ``budget`` seconds have passed
    (but at least ``min_rounds``). Returns {name: [seconds per call, one per round]}."""
    names = list(contenders)
    for _ in range(warmup):
        for name in names:
            contenders[name]()
    times = {name: [] for name in names}
    start = perf_counter()
    rounds = 0
    while rounds < max_rounds and (rounds < min_rounds or perf_counter() - start < budget):
        for name in names:
            fn = contenders[name]
            t0 = perf_counter()
            fn()
            times[name].append(perf_counter() - t0)
        rounds += 1
    return times


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
