"""Bad input to the recurrent layers and cells: a clear error naming what was expected and what
came, and a module left exactly as it was."""
import numpy as np
import pytest

import tinygrad_rnn as tg
import tinygrad_rnn.nn as nn


def make(kind, **kwargs):
    return getattr(nn, kind)(3, 4, **kwargs)


def x(*shape, dtype="float32"):
    return tg.randn(*shape, dtype=dtype)


CASES = [
    # (module, call, error, message)
    ("RNN", lambda m: m(x(5, 2, 6)), ValueError,
     r"RNN: expected input with 3 features in its last axis, got shape \(5, 2, 6\)"),
    ("LSTM", lambda m: m(x(2, 5, 2)), ValueError,
     r"LSTM: expected input with 3 features in its last axis, got shape \(2, 5, 2\)"),
    ("GRUCell", lambda m: m(x(2, 5)), ValueError,
     r"GRUCell: expected input with 3 features in its last axis, got shape \(2, 5\)"),
    ("LSTM", lambda m: m(x(5, 2, 3, 1)), ValueError,
     r"LSTM: expected input with 3 features in its last axis, got shape \(5, 2, 3, 1\)"),
    ("GRU", lambda m: m(x(4, 5, 2, 3)), ValueError,
     r"GRU: expected input of shape \(T, B, 3\), \(B, T, 3\) with batch_first, or \(T, 3\) unbatched; "
     r"got \(4, 5, 2, 3\)"),
    ("RNN", lambda m: m(x(5, 2, 3), x(1, 3, 4)), ValueError,
     r"RNN: expected h_0 of shape \(1, 2, 4\), got \(1, 3, 4\)"),
    ("GRU", lambda m: m(x(5, 2, 3), x(2, 4)), ValueError, r"GRU: expected h_0 of shape \(1, 2, 4\), got \(2, 4\)"),
    ("LSTM", lambda m: m(x(5, 2, 3), (x(1, 2, 4), x(1, 2, 5))), ValueError,
     r"LSTM: expected c_0 of shape \(1, 2, 4\), got \(1, 2, 5\)"),
    ("LSTM", lambda m: m(x(5, 3), (x(1, 4), x(4))), ValueError,
     r"LSTM: expected c_0 of shape \(1, 4\), got \(4,\)"),
    ("RNNCell", lambda m: m(x(2, 3), x(3, 4)), ValueError, r"RNNCell: expected state of shape \(2, 4\), got \(3, 4\)"),
    ("LSTMCell", lambda m: m(x(3), (x(4), x(1, 4))), ValueError,
     r"LSTMCell: expected state of shape \(4,\), got \(1, 4\)"),
    ("LSTM", lambda m: m(tg.randint(0, 3, (5, 2, 3))), TypeError,
     r"LSTM: expected a floating-point input \(float32\), got int64 of shape \(5, 2, 3\); token ids need an "
     r"nn.Embedding"),
    ("LSTMCell", lambda m: m(tg.randint(0, 3, (2, 3))), TypeError,
     r"LSTMCell: expected a floating-point input \(float32\), got int64 of shape \(2, 3\)"),
    ("GRU", lambda m: m(x(5, 2, 3, dtype="float64")), TypeError,
     r"GRU: input is float64 but the parameters are float32; convert one with .float\(\) / .double\(\)"),
    ("LSTM", lambda m: m(x(5, 2, 3), (x(1, 2, 4, dtype="float64"), x(1, 2, 4))), TypeError,
     r"LSTM: h_0 is float64 but the input is float32"),
    ("GRUCell", lambda m: m(x(2, 3), x(2, 4, dtype="float64")), TypeError,
     r"GRUCell: the state is float64 but the input is float32"),
    ("RNN", lambda m: m(x(0, 2, 3)), ValueError, r"RNN: the input sequence is empty \(0 timesteps, shape \(0, 2, 3\)\)"),
    ("LSTM", lambda m: m(x(0, 3)), ValueError, r"LSTM: the input sequence is empty \(0 timesteps, shape \(0, 3\)\)"),
    ("LSTM", lambda m: m(x(5, 2, 3), x(1, 2, 4)), TypeError, r"LSTM: hx must be a pair \(h_0, c_0\), got Tensor"),
    ("LSTM", lambda m: m(x(5, 2, 3), (x(1, 2, 4),)), TypeError, r"LSTM: hx must be a pair \(h_0, c_0\), got tuple"),
    ("LSTMCell", lambda m: m(x(2, 3), x(2, 4)), TypeError,
     r"LSTMCell: hx must be a pair \(h, c\) of tensors, got Tensor of shape \(2, 4\)"),
    ("LSTM", lambda m: m(x(5, 2, 3), (np.zeros((1, 2, 4)), x(1, 2, 4))), TypeError,
     r"LSTM: h_0 must be a Tensor, got ndarray"),
    ("RNN", lambda m: m(np.zeros((5, 2, 3))), TypeError, r"RNN: expected a Tensor input, got ndarray"),
    ("GRUCell", lambda m: m([[0.0, 1.0, 2.0]]), TypeError, r"GRUCell: expected a Tensor input, got list"),
    ("RNN", lambda m: m(tg.tensor(1.0)), ValueError,
     r"RNN: expected input with 3 features in its last axis, got shape \(\)"),
    ("LSTMCell", lambda m: m(x(1, 2, 3)), ValueError,
     r"LSTMCell: expected input of shape \(batch, 3\) or \(3,\), got \(1, 2, 3\)"),
]


@pytest.mark.parametrize("kind, call, error, message", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_input_raises_a_clear_error_and_changes_nothing(backend, kind, call, error, message):
    m = make(kind)
    before = m.state_dict()
    with pytest.raises(error, match=message):
        call(m)
    after = m.state_dict()
    assert list(after) == list(before)
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])
    assert all(p.grad is None for p in m.parameters())
    # and the module still works
    good = x(5, 2, 3) if not kind.endswith("Cell") else x(2, 3)
    out = m(good)
    h = out[0] if isinstance(out, tuple) else out
    assert np.isfinite(h.numpy()).all()


@pytest.mark.parametrize("kind, kwargs, error, message", [
    ("RNN", {"nonlinearity": "sigmoid"}, ValueError, r"RNN: nonlinearity must be 'tanh' or 'relu', got 'sigmoid'"),
    ("RNNCell", {"nonlinearity": "gelu"}, ValueError, r"RNNCell: nonlinearity must be 'tanh' or 'relu', got 'gelu'"),
    ("LSTM", {"num_layers": 0}, ValueError, r"LSTM: num_layers must be at least 1, got 0"),
    ("GRU", {"dropout": 1.0}, ValueError, r"GRU: dropout must be in \[0, 1\), got 1.0"),
])
def test_bad_constructor_arguments(kind, kwargs, error, message):
    with pytest.raises(error, match=message):
        make(kind, **kwargs)


def test_load_state_dict_with_a_wrong_shape_leaves_the_layer_unchanged(backend):
    m = nn.LSTM(3, 4)
    before = m.state_dict()
    bad = dict(before, weight_hh_l0=np.zeros((16, 5)), bias_ih_l0=np.ones(16))
    with pytest.raises(KeyError, match=r"weight_hh_l0: expected shape \(16, 4\), got \(16, 5\)"):
        m.load_state_dict(bad)
    for name, value in m.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


# --- layer sizes: refused by name before any parameter is made (PyTorch: "hidden_size must be greater
# than zero"); an input size of 0 builds, as in PyTorch ----------------------------------------------------
SIZED = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "ResidualRNN", "GatedResidualRNN",
         "ResidualRNNCell", "GatedResidualRNNCell"]


@pytest.mark.parametrize("kind", SIZED)
@pytest.mark.parametrize("args, error, message", [
    ((3, 0), ValueError, "hidden_size must be at least 1, got 0"),
    ((3, -2), ValueError, "hidden_size must be at least 1, got -2"),
    ((3, 2.0), TypeError, "hidden_size must be an int, got float 2.0"),
    ((3, "4"), TypeError, "hidden_size must be an int, got str '4'"),
    ((3, True), TypeError, "hidden_size must be an int, got bool True"),
    ((-1, 4), ValueError, "input_size cannot be negative, got -1"),
    ((3.5, 4), TypeError, "input_size must be an int, got float 3.5"),
])
def test_bad_sizes_are_named(kind, args, error, message):
    with pytest.raises(error, match=rf"^{kind}: {message}$"):
        getattr(nn, kind)(*args)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU", "ResidualRNN"])
@pytest.mark.parametrize("num_layers, error, message", [
    (0, ValueError, "num_layers must be at least 1, got 0"),
    (1.5, TypeError, "num_layers must be an int, got float 1.5"),
])
def test_bad_num_layers_is_named(kind, num_layers, error, message):
    with pytest.raises(error, match=rf"^{kind}: {message}$"):
        getattr(nn, kind)(3, 4, num_layers=num_layers)


@pytest.mark.parametrize("kind, gates", [("RNN", 1), ("LSTM", 4), ("GRU", 3), ("LSTMCell", 4)])
def test_numpy_integer_sizes_and_input_size_zero_build(kind, gates):
    m = getattr(nn, kind)(np.int64(0), np.int64(4))
    W_ih = m.weight_ih if kind.endswith("Cell") else m.weight_ih_l0
    assert W_ih.shape == (gates * 4, 0)
