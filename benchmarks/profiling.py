"""``--profile CELL:SHAPE``: cProfile of the engine's training step, top functions by own time.

Own time (tottime) names the Python functions where the interpreter spends the
step; the NumPy calls show as "{built-in method numpy...}" or "{method ... of
'numpy.ndarray'}". A second list, by cumulative time, shows the phases.
"""
import cProfile
import io
import pstats

from .steps import SHAPES, EngineStep, batch, params


def profile(cell, shape, steps=20, top=25):
    s = SHAPES[shape]
    p = params(cell, s["H"])
    x, y = batch(s["T"], s["B"])
    step = EngineStep(cell, p, x, y)
    for _ in range(3):
        step()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(steps):
        step()
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    out.write(f"cProfile of {steps} engine training steps, {cell} {shape} "
              f"(B={s['B']}, T={s['T']}, H={s['H']}); cProfile itself slows Python calls down\n")
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()
