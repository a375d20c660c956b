"""Shared fixtures.

``backend``: a test that takes it runs twice, on NumPy and on array_api_strict
(the Array API and nothing more: a failure there is a CuPy bug waiting to happen).
Inside, ``tg.get_backend()`` is that backend and the random generator is seeded.
"""
import os
import pathlib

import pytest
from hypothesis import settings

import tinygrad_rnn as tg

# The same examples on every run (CI included): a failure is reproducible, not a roll of the dice.
# HYPOTHESIS_PROFILE=explore draws new ones, to hunt for bugs.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

BACKENDS = ["numpy", "array_api_strict"]
ROOT = pathlib.Path(__file__).resolve().parents[1]
SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"


@pytest.fixture(params=BACKENDS)
def backend(request):
    old = tg.get_backend()
    tg.set_backend(request.param)
    tg.manual_seed(0)
    try:
        yield request.param
    finally:
        tg.set_backend(old)


@pytest.fixture(autouse=True)
def _seed_and_restore_backend():
    """Every test starts from the same seed and leaves the default backend as it found it."""
    old = tg.get_backend()
    tg.manual_seed(0)
    yield
    tg.set_backend(old)


@pytest.fixture
def shakespeare_path():
    """The 1.1 MB tinyshakespeare text, present on development machines only."""
    path = pathlib.Path(os.environ.get("TINYSHAKESPEARE", SHAKESPEARE))
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


@pytest.fixture
def hello():
    """The lecture's hello RNN (visualize/examples.py): (loss, model, h_0), the model kept alive."""
    from visualize.examples import hello_rnn
    loss, model, h_0 = hello_rnn()
    return loss, model, h_0
