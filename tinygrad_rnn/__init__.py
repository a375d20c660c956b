"""tinygrad_rnn: a small reverse-mode autodiff engine for recurrent networks.

Read in this order: ``backend`` (arrays), ``function`` (graph nodes),
``ops`` (each op's forward and backward), ``tensor``, ``autograd`` (the
backward pass), then ``nn`` (layers built from the ops).
"""
from .autograd import GraphFreedError, GradientEdge, record_gradients, sum_to_shape
from .backend import get_backend, manual_seed, set_backend
from .creation import (arange, eye, full, full_like, ones, ones_like, rand, rand_like, randint, randn,
                       randn_like, tensor, uniform, zeros, zeros_like)
from .function import (AnomalyError, Function, current_scope, detect_anomaly, enable_grad, is_grad_enabled, no_grad,
                       retain_values, scope)
from .nn.functional import cat, concat, lerp, linear, stack, where
from .gradcheck import GradcheckError, gradcheck
from .tensor import Tensor
from . import data, nn, optim
from .serialization import CheckpointError, load, save



def embedding(weight, input):
    """Rows of ``weight`` picked by the integer ids ``input``: torch.embedding's argument order
    (``nn.functional.embedding(input, weight)`` is the same with PyTorch's F order)."""
    return nn.functional.embedding(input, weight)


float32, float64, int64, int32 = "float32", "float64", "int64", "int32"
bool_ = "bool"

__version__ = "0.1.0"
