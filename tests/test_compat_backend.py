"""The CuPy backend computes through ``array_api_compat.cupy``. No GPU exists here, so these tests run
the engine through the same wrapper over NumPy (``array_api_compat.numpy``): a function the engine
calls that the wrapper spells differently from NumPy (``unstack``, ``concat``, ``astype``, ``isdtype``,
``matrix_transpose``...) fails here exactly as it would on a GPU."""
import inspect

import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import backend as backends
from tinygrad_rnn import nn

compat_numpy = pytest.importorskip("array_api_compat.numpy")


class CompatNumpyBackend(backends.NumpyBackend):
    """NumPy arrays, computed with the array_api_compat namespace (as CuPy arrays are)."""
    name = "compat_numpy"

    def __init__(self, seed=0):
        super().__init__(seed)
        self.xp = compat_numpy


@pytest.fixture
def compat(monkeypatch):
    monkeypatch.setitem(backends._CLASSES, "compat_numpy", CompatNumpyBackend)
    monkeypatch.delitem(backends._instances, "compat_numpy", raising=False)
    b = backends.get_backend("compat_numpy")
    assert b.xp is compat_numpy
    yield b
    backends._instances.pop("compat_numpy", None)


def test_cupy_backend_computes_through_array_api_compat():
    source = inspect.getsource(backends.CupyBackend)
    assert "import array_api_compat.cupy as xp" in source and "super().__init__(xp, seed)" in source


@pytest.mark.parametrize("cls, kw", [(nn.RNN, {}), (nn.LSTM, {"peephole": True}), (nn.GRU, {"reset_after": False}),
                                     (nn.GRU, {"bidirectional": True, "num_layers": 2})])
def test_layers_give_the_numpy_backends_numbers(compat, cls, kw):
    tg.manual_seed(3)
    ref = cls(3, 4, dtype="float64", **kw)
    model = cls(3, 4, dtype="float64", **kw).to("compat_numpy")
    model.load_state_dict(ref.state_dict())
    x_np = np.random.default_rng(0).standard_normal((5, 2, 3))
    results = []
    for m, device in ((ref, "numpy"), (model, "compat_numpy")):
        x = tg.Tensor(x_np, requires_grad=True, backend=device)
        out, _ = m(x)
        loss = (out * out).sum() + tg.nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]),
                                                                  tg.Tensor(np.arange(10) % 4, backend=device))
        loss.backward()
        results.append([loss.numpy(), x.grad.numpy()] + [p.grad.numpy() for p in m.parameters()])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_ops_and_gradcheck_through_compat(compat):
    x = tg.Tensor(np.random.default_rng(1).standard_normal((3, 4)), requires_grad=True, backend="compat_numpy")
    w = tg.Tensor(np.random.default_rng(2).standard_normal((4, 2)), requires_grad=True, backend="compat_numpy")

    def f(x, w):
        parts = (x @ w).chunk(2, axis=1)
        y = tg.concat([parts[1].sigmoid(), parts[0].tanh()], axis=1).log_softmax(axis=1)
        return tg.stack(list(y.unbind(0)), axis=1)[:, tg.Tensor([0, 2], backend="compat_numpy")].max(axis=0)

    assert tg.gradcheck(f, [x, w])


def test_embedding_and_optimizer_through_compat(compat):
    emb = nn.Embedding(5, 3).to("compat_numpy")
    opt = tg.optim.Adam(emb.parameters(), lr=0.1)
    ids = tg.Tensor([[0, 4], [4, 4]], backend="compat_numpy")
    before = emb.weight.numpy()
    emb(ids).sum().backward()
    np.testing.assert_array_equal(emb.weight.grad.numpy()[[0, 4]], [[1, 1, 1], [3, 3, 3]])
    opt.step()
    assert not np.allclose(emb.weight.numpy()[4], before[4]) and np.allclose(emb.weight.numpy()[1], before[1])
