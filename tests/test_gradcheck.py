"""gradcheck's refusals: what fn returns must be tensors (the checks of numbers are in test_autograd.py
and test_ops.py)."""
import numpy as np
import pytest

import tinygrad_rnn as tg


def x64():
    return tg.Tensor([0.5, -1.5], dtype="float64", requires_grad=True)


@pytest.mark.parametrize("fn, error, message", [
    (lambda x: 1.0, TypeError,
     r"^gradcheck: fn must return a Tensor or a tuple/list of Tensors; its result is a float \(1.0\)\. Compute the "
     r"result from the inputs with tensor ops"),
    (lambda x: x.sum().item(), TypeError, r"its result is a float \(-1.0\)"),
    (lambda x: x.numpy(), TypeError, r"its result is a ndarray \(array\(\[ 0.5, -1.5\]\)\)"),
    (lambda x: None, TypeError, r"its result is a NoneType \(None\)"),
    (lambda x: (x * 2, 3.0), TypeError, r"its result holds a float \(3.0\)"),
    (lambda x: [x * 2, (x.exp(), "y")], TypeError, r"its result holds a str \('y'\)"),
    (lambda x: (), ValueError, r"^gradcheck: fn returned no tensors, so there is nothing to check$"),
])
def test_a_result_that_is_not_tensors_is_named(backend, fn, error, message):
    x = x64()
    with pytest.raises(error, match=message):
        tg.gradcheck(fn, [x])
    assert x.grad is None
    np.testing.assert_array_equal(x.numpy(), [0.5, -1.5])


def test_tensors_nested_in_lists_and_tuples_are_checked(backend):
    assert tg.gradcheck(lambda x: [x * 2, (x.exp(), [x.tanh()])], [x64()]) is True
