"""The feed-forward layers of nn/layers.py: sizes checked by name, PyTorch's empty Linear, and a clear
TypeError when a list or NumPy array is passed where a Tensor belongs."""
import warnings

import numpy as np
import pytest

import tinygrad_rnn as tg
import tinygrad_rnn.nn as nn


@pytest.mark.parametrize("make, error, message", [
    (lambda: nn.Embedding(-1, 3), ValueError, r"^Embedding: num_embeddings cannot be negative, got -1$"),
    (lambda: nn.Embedding(10, -3), ValueError, r"^Embedding: embedding_dim cannot be negative, got -3$"),
    (lambda: nn.Embedding(10.0, 3), TypeError, r"^Embedding: num_embeddings must be an int, got float 10.0$"),
    (lambda: nn.Linear(-1, 3), ValueError, r"^Linear: in_features cannot be negative, got -1$"),
    (lambda: nn.Linear(3, -4), ValueError, r"^Linear: out_features cannot be negative, got -4$"),
    (lambda: nn.Linear(3, "4"), TypeError, r"^Linear: out_features must be an int, got str '4'$"),
])
def test_bad_sizes_are_named(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_linear_with_no_inputs_builds_as_in_pytorch(backend):
    """in_features = 0: an empty (3, 0) weight and a zero bias (PyTorch's bound 1/sqrt(fan_in) is
    taken as 0 when fan_in is 0), so y = b = 0 for every row."""
    lin = nn.Linear(0, 3)
    assert lin.weight.shape == (3, 0)
    np.testing.assert_array_equal(lin.bias.numpy(), np.zeros(3, np.float32))
    y = lin(tg.zeros(2, 0))
    assert y.shape == (2, 3)
    np.testing.assert_array_equal(y.numpy(), np.zeros((2, 3), np.float32))
    assert nn.Linear(3, 0)(tg.randn(2, 3)).shape == (2, 0) and nn.Embedding(0, 3).weight.shape == (0, 3)


def test_linear_with_no_inputs_matches_torch():
    torch = pytest.importorskip("torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # "Initializing zero-element tensors is a no-op"
        theirs = torch.nn.Linear(0, 3)
    ours = nn.Linear(0, 3)
    assert tuple(theirs.weight.shape) == ours.weight.shape
    np.testing.assert_array_equal(theirs.bias.detach().numpy(), ours.bias.numpy())


@pytest.mark.parametrize("call, message", [
    (lambda: nn.Linear(3, 4)([[1.0, 2.0, 3.0]]),
     r"^Linear: expected a Tensor input, got list; make one with tinygrad_rnn.Tensor\(...\)$"),
    (lambda: nn.Linear(3, 4)(np.ones((2, 3), np.float32)), r"^Linear: expected a Tensor input, got ndarray"),
    (lambda: nn.Embedding(10, 3)([1, 2]), r"^Embedding: expected a Tensor of integer token ids, got list"),
    (lambda: nn.Embedding(10, 3)(np.array([1, 2])), r"^Embedding: expected a Tensor of integer token ids, got ndarray"),
    (lambda: nn.Dropout(0.5)([1.0, 2.0]), r"^Dropout: expected a Tensor input, got list"),
])
def test_a_list_or_array_input_is_a_type_error_not_an_attribute_error(call, message):
    with pytest.raises(TypeError, match=message):
        call()
