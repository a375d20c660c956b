"""What a run measured on: CPU model, cores, load, NumPy and its BLAS, torch, thread settings.

BLAS threads: OpenBLAS reads its thread count from the environment when it is
loaded, so ``limit_threads_env`` must run before NumPy is imported; after that
``blas_threads``/``set_blas_threads`` talk to the loaded OpenBLAS through ctypes
(the library NumPy wheels ship, found in /proc/self/maps). On a machine without
it they answer None and the environment variables are all we report.
"""
import ctypes
import os
import platform
import sys
import warnings

THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")

# (get, set) symbol names of OpenBLAS builds: NumPy's scipy-openblas wheels, ILP64 and plain
_OPENBLAS_SYMBOLS = (("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
                     ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
                     ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
                     ("openblas_get_num_threads", "openblas_set_num_threads"))


def limit_threads_env(n):
    """Ask every BLAS/OpenMP runtime for ``n`` threads. Effective only before NumPy is imported."""
    for var in THREAD_VARS:
        os.environ[var] = str(n)


def _openblas():
    """(get_num_threads, set_num_threads) of the OpenBLAS NumPy loaded, or None."""
    import numpy  # noqa: F401  (loads the library)
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line})
    except OSError:
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for get, set_ in _OPENBLAS_SYMBOLS:
            if hasattr(lib, get) and hasattr(lib, set_):
                getter, setter = getattr(lib, get), getattr(lib, set_)
                getter.restype = ctypes.c_int
                setter.argtypes = [ctypes.c_int]
                return getter, setter
    return None


def blas_threads():
    """Threads the loaded OpenBLAS uses, or None when it cannot be asked."""
    lib = _openblas()
    return int(lib[0]()) if lib else None


def set_blas_threads(n):
    """Set OpenBLAS's thread count at run time; True when it worked."""
    lib = _openblas()
    if not lib:
        return False
    lib[1](int(n))
    return True


# glibc's malloc: mallopt() parameters, and the largest mmap threshold it accepts on 64-bit
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_MAX = 32 << 20


def steady_heap():
    """Ask glibc's malloc to keep freed memory for reuse: arrays up to 32 MB come from the heap
    (not mmap) and the heap is never trimmed. True when set, False when this is not glibc.

    By default glibc hands a freed array of more than ~128 KB (its threshold moves with what
    was freed) back to the OS, and the next step page-faults it in again, about 1 µs per 4 KB.
    Whether a contender pays that depends on what ran before it in the process: measured here,
    the RNN's small step was 0.94x by-hand in rounds without the torch contenders and 1.16x
    with them, for the same code. With the heap kept, neither pays, and the ratio measures the
    code (PyTorch users get the same effect from jemalloc or tcmalloc)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1 and mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def numpy_blas():
    """'scipy-openblas 0.3.31 (OpenBLAS ... Haswell MAX_THREADS=64)' from numpy.show_config."""
    import numpy as np
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")          # "install pyyaml for better output"
            config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        text = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
        extra = blas.get("openblas configuration")
        return f"{text} ({extra})" if extra else text
    except Exception as e:  # an old NumPy without mode="dicts": say so rather than fail
        return f"unknown ({type(e).__name__})"


def torch_version():
    import importlib.util
    if importlib.util.find_spec("torch") is None:
        return None
    import torch
    return torch.__version__


def describe(threads_requested, torch_threads):
    """A dict for the JSON and the table header."""
    import numpy as np
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": affinity,
        "load_average": load,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "blas": numpy_blas(),
        "blas_threads": blas_threads(),
        "threads_requested": threads_requested,
        "thread_env": {v: os.environ[v] for v in THREAD_VARS if v in os.environ},
        "torch": torch_version(),
        "torch_threads": torch_threads,
    }
