"""Module and Parameter, as PyTorch users know them.

A Module registers the Parameters and sub-Modules assigned to its attributes,
so ``named_parameters()`` can walk the tree with dotted names
("rnn.weight_hh_l0"). Parameters are named after that path automatically, so
pictures of the graph show the same names as ``state_dict()``.
"""
from collections import OrderedDict, namedtuple

from ..backend import DTYPE_NAMES, FLOAT_DTYPES, get_backend, host as np
from ..dtypes import dtype_name
from ..tensor import Tensor


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def _typename(value):
    """'numpy.ndarray', 'int', 'tinygrad_rnn.tensor.Tensor': the type as PyTorch's messages name it."""
    cls = type(value)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


class StateDictError(RuntimeError, KeyError):
    """A state dict that does not fit the module (PyTorch raises RuntimeError; earlier versions
    of this module raised KeyError, so it is both)."""

    def __str__(self):  # KeyError would print the message quoted, with its newlines escaped
        return str(self.args[0]) if self.args else ""


class Parameter(Tensor):
    """A tensor that is a module's learnable state: requires grad, float.

    ``Parameter(data, requires_grad=True, name=None)``; ``data`` may be a Tensor."""

    __slots__ = ("_auto_named",)

    def __init__(self, data, requires_grad=True, name=None):
        if isinstance(data, Tensor):
            data = data.detach()
        super().__init__(data, backend=data.backend if isinstance(data, Tensor) else None)
        if not self.is_floating_point:
            raise TypeError(f"Parameter: expected floating-point data, got {self.dtype}")
        self.requires_grad_(requires_grad)
        self._auto_named = name is None
        self._name = name

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of layers. Subclasses set parameters and sub-modules in ``__init__``
    and compute in ``forward``; calling the module calls ``forward``."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            if isinstance(value, (Parameter, Module)):
                raise AttributeError(f"{type(self).__name__}.__init__ must call super().__init__() "
                                     f"before assigning {name!r}")
            object.__setattr__(self, name, value)
            return
        # as PyTorch: silently unregistering a parameter (or sub-module) would drop it from optimizers
        # and checkpoints, and forward would fail later on a value that is not a tensor
        if name in self._parameters and value is not None and not isinstance(value, Parameter):
            raise TypeError(f"cannot assign {_typename(value)!r} as parameter {name!r} of {type(self).__name__} "
                            f"(Parameter or None expected; to change the values, assign a Parameter, set "
                            f".data or use load_state_dict)")
        if name in self._modules and value is not None and not isinstance(value, Module):
            raise TypeError(f"cannot assign {_typename(value)!r} as child module {name!r} of {type(self).__name__} "
                            f"(Module or None expected)")
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
            if value._auto_named:
                value.name = name
        elif isinstance(value, Module):
            self._modules[name] = value
            for sub_name, p in value.named_parameters():
                if p._auto_named:
                    p.name = f"{name}.{sub_name}"
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        object.__delattr__(self, name)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    # --- the tree -----------------------------------------------------------
    def named_parameters(self, prefix=""):
        """(dotted name, parameter) for every parameter in the tree, each once."""
        seen = set()
        for mod_prefix, module in self.named_modules(prefix):
            for name, p in module._parameters.items():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mod_prefix}.{name}" if mod_prefix else name), p

    def parameters(self):
        for _, p in self.named_parameters():
            yield p

    def named_modules(self, prefix=""):
        """(dotted name, module) for this module and every descendant, each once, depth first
        in registration order (PyTorch's order, which fixes the order of state_dict keys)."""
        seen = set()
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [((f"{name}.{child_name}" if name else child_name), child)
                        for child_name, child in module._modules.items() if child is not None]
            stack.extend(reversed(children))  # popped from the end: first child first

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        return iter(self._modules.items())

    def children(self):
        return iter(self._modules.values())

    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def to(self, target):
        """Move every parameter to another backend ('numpy'/'cpu', 'cupy'/'cuda', 'array_api_strict'),
        or cast it to a floating-point dtype ('float32', 'float64', np.float64...), in place; returns
        self. The Parameter objects stay the same (an optimizer made before still holds them). A move
        drops the gradients; a cast casts them too, as PyTorch's ``module.to(dtype)``."""
        if not isinstance(target, str) or target in DTYPE_NAMES or target == "float16":
            return self._cast(target)
        for p in self.parameters():
            moved = p.to(target)
            p.data, p._backend, p.grad = moved.data, moved._backend, None
            p._accum = p._sink = None
        return self

    def float(self):
        """Every parameter (and gradient) cast to float32, in place; returns self."""
        return self._cast("float32")

    def double(self):
        """Every parameter (and gradient) cast to float64, in place; returns self. Recurrent layers
        then take float64 input: ``nn.LSTM(3, 4).double()`` computes as ``nn.LSTM(3, 4, dtype="float64")``."""
        return self._cast("float64")

    def _cast(self, dtype):
        params = list(self.parameters())
        name = dtype_name(dtype, params[0].backend if params else get_backend())
        if name not in FLOAT_DTYPES:
            raise TypeError(f"{type(self).__name__}.to: parameters are floating point, so expected a dtype of "
                            f"{' or '.join(FLOAT_DTYPES)}, got {name}")
        for p in params:
            if p.dtype == name:
                continue
            xp, target = p.backend.xp, p.backend.dtypes[name]
            p.data = xp.astype(p.data, target)
            if p.grad is not None:
                p.grad = Tensor._wrap(xp.astype(p.grad.data, target), p.backend)
            p._accum = p._sink = None   # graphs built before the cast do not feed the cast parameter
        return self

    def num_parameters(self):
        return sum(p.numel() for p in self.parameters())

    # --- state -------------------------------------------------------------
    def state_dict(self):
        """{dotted name: host NumPy copy} of every parameter."""
        return OrderedDict((name, p.numpy()) for name, p in self.named_parameters())

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays (NumPy, lists, ``torch_tensor.numpy()``, Tensors) into the parameters.

        Every key and shape is checked before anything is copied, so a bad dict
        leaves the module unchanged. With ``strict``, missing and unexpected keys are
        errors; a wrong shape always is. The error (``StateDictError``, a RuntimeError
        as in PyTorch and a KeyError) names every problem. Returns
        ``IncompatibleKeys(missing_keys, unexpected_keys)``."""
        if not hasattr(state_dict, "items"):
            raise TypeError(f"load_state_dict: expected a dict of name -> array, got {type(state_dict).__name__}")
        own = dict(self.named_parameters())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        problems = []
        if strict and missing:
            problems.append(f"missing keys: {', '.join(missing)}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {', '.join(map(str, unexpected))}")
        new_values = {}
        for name, value in state_dict.items():
            if name not in own:
                continue
            p = own[name]
            try:
                array = value.numpy() if isinstance(value, Tensor) else np.asarray(value)
            except Exception as e:  # e.g. a ragged list
                problems.append(f"{name}: cannot convert a {type(value).__name__} to an array ({e})")
                continue
            if tuple(array.shape) != p.shape:
                problems.append(f"{name}: expected shape {p.shape}, got {tuple(array.shape)}")
                continue
            if array.dtype.kind not in "fiu":
                problems.append(f"{name}: expected numbers, got dtype {array.dtype}")
                continue
            new_values[name] = array
        if problems:
            raise StateDictError(f"load_state_dict into {type(self).__name__}: " + "; ".join(problems))
        for name, array in new_values.items():
            p = own[name]
            p.data = p.backend.asarray(array, p.dtype)
        return IncompatibleKeys(missing, unexpected)

    # --- printing --------------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        if self._modules:
            for name, child in self._modules.items():
                child_lines = repr(child).split("\n")
                lines.append(f"  ({name}): " + child_lines[0])
                lines.extend("  " + line for line in child_lines[1:])
            lines.append(")")
            return "\n".join(lines)
        return lines[0] + ")"
