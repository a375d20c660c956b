"""Feed-forward layers: Linear, Embedding, Dropout, Sequential, ModuleList."""
import math

from .. import ops
from ..tensor import Tensor
from .functional import _check_ids, linear
from .init import check_sizes, normal, uniform
from .module import Module, Parameter


def _check_tensor(who, x, what="a Tensor input"):
    """A list or NumPy array where a Tensor belongs: say so, instead of an AttributeError later."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{who}: expected {what}, got {type(x).__name__}; make one with tinygrad_rnn.Tensor(...)")


class Linear(Module):
    """y = x @ W.T + b.  x: (..., in_features) -> (..., out_features).

    weight: (out_features, in_features), bias: (out_features,), both U(-1/sqrt(in), 1/sqrt(in))
    (with in_features = 0, as in PyTorch: an empty weight and a zero bias, so y = b = 0)."""

    def __init__(self, in_features, out_features, bias=True, dtype="float32"):
        super().__init__()
        check_sizes("Linear", in_features=(in_features, 0), out_features=(out_features, 0))
        self.in_features, self.out_features = in_features, out_features
        k = 1 / math.sqrt(in_features) if in_features > 0 else 0.0
        self.weight = Parameter(uniform((out_features, in_features), k, dtype))
        self.bias = Parameter(uniform((out_features,), k, dtype)) if bias else None

    def forward(self, x):
        _check_tensor("Linear", x)
        if x.shape[-1:] != (self.in_features,):
            raise ValueError(f"Linear: expected input (..., {self.in_features}), got shape {x.shape}")
        return linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """Rows of a (num_embeddings, embedding_dim) table looked up by integer ids: ids (...) -> (..., dim)."""

    def __init__(self, num_embeddings, embedding_dim, dtype="float32"):
        super().__init__()
        check_sizes("Embedding", num_embeddings=(num_embeddings, 0), embedding_dim=(embedding_dim, 0))
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = Parameter(normal((num_embeddings, embedding_dim), 1.0, dtype))

    def forward(self, ids):
        _check_tensor("Embedding", ids, "a Tensor of integer token ids")
        if ids.dtype not in ("int64", "int32"):
            raise TypeError(f"Embedding: expected integer token ids, got dtype {ids.dtype}")
        _check_ids("Embedding", ids, 0, self.num_embeddings, noun="token id")
        return ops.Embedding.apply(self.weight, ids)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"


class Dropout(Module):
    """Zero each element with probability p while training (scaling the rest by 1/(1-p))."""

    def __init__(self, p=0.5):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x):
        _check_tensor("Dropout", x)
        return x.dropout(self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class Sequential(Module):
    """Modules applied in order: Sequential(Linear(4, 8), Tanh(), Linear(8, 2))."""

    def __init__(self, *modules):
        super().__init__()
        for i, m in enumerate(modules):
            setattr(self, str(i), m)

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)


class ModuleList(Module):
    """A list of sub-modules, registered so their parameters are found."""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module):
        setattr(self, str(len(self._modules)), module)
        return self

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __iter__(self):
        return iter(self._modules.values())

    def __len__(self):
        return len(self._modules)


class Tanh(Module):
    def forward(self, x):
        return x.tanh()


class Sigmoid(Module):
    def forward(self, x):
        return x.sigmoid()


class ReLU(Module):
    def forward(self, x):
        return x.relu()


__all__ = ["Linear", "Embedding", "Dropout", "Sequential", "ModuleList", "Tanh", "Sigmoid", "ReLU"]
