"""Optimizers: SGD, Adam, Adagrad, RMSprop, with PyTorch's update rules.

    opt = Adam(model.parameters(), lr=1e-3)      # or model.named_parameters()
    for x, y in batches:
        opt.zero_grad()
        loss = ...; loss.backward()
        opt.step()

``params`` is an iterable of Parameters (tensors) or of ``(name, parameter)``
pairs; the names only make error messages clearer. Parameter groups are not
supported: there is one set of hyperparameters, kept as attributes
(``opt.lr = 1e-4`` changes the learning rate from the next step on). Every
hyperparameter is checked when it is given or assigned: a string, a tensor or an
out-of-range value raises an error naming it, not a failure later in ``step``.

Each update is the one of ``torch.optim`` (single-tensor code path, no
``maximize``/``amsgrad``/``foreach``), written with Array API operations only,
so a step runs on the device that holds the parameters and never waits for the
host: the step counters and bias corrections are Python numbers.

A step is all or nothing. It first checks every gradient (a tensor of the
parameter's shape, dtype and backend), then computes every new parameter and
state array, and only then stores them. So a bad gradient raises an error
naming the parameter and leaves the parameters and the optimizer state as they
were. Storing replaces ``p.data`` with the new array: the Parameter object (its
name, its ``grad``) stays the same, and arrays saved by an older graph keep the
old values.

``state_dict()`` is a plain dict of host NumPy arrays and Python numbers,
ready for ``tinygrad_rnn.save``; ``load_state_dict`` checks it fully before
changing anything.
"""
import numbers

from .backend import host as np
from .tensor import Tensor


class Optimizer:
    """Base class: the parameters, one state dict per parameter, and the step machinery.

    Subclasses list their ``hyperparameters`` and ``state_keys`` (the arrays
    kept per parameter besides the int ``step``) and write ``update``."""

    hyperparameters = ()
    state_keys = ()

    def __init__(self, params):
        self.params, self.param_names = _collect(params, type(self).__name__)
        # per parameter: {} until its first step, then e.g. {"step": 3, "exp_avg": array}
        self.state = [{} for _ in self.params]
        # the backend each state lives on, to catch a model moved with .to() after creation
        self._state_devices = [None for _ in self.params]

    def __setattr__(self, name, value):
        """``opt.lr = 1e-4``: a hyperparameter is checked (with the others) before it is changed."""
        if name in self.hyperparameters:
            value = _plain(value)
            others = {k: self.__dict__[k] for k in self.hyperparameters if k in self.__dict__}
            if len(others | {name: value}) == len(self.hyperparameters):  # (not while __init__ sets them)
                self._check_hyperparameters(**(others | {name: value}))
        object.__setattr__(self, name, value)

    def __repr__(self):
        hyper = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.hyperparameters)
        return f"{type(self).__name__}({hyper})"

    def zero_grad(self, set_to_none=True):
        """Forget the gradients (``set_to_none=False``: fill them with zeros instead)."""
        for p in self.params:
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad = Tensor._wrap(p.backend.xp.zeros_like(p.data), p.backend)

    def step(self, closure=None):
        """One update of every parameter that has a gradient (params whose grad is None are skipped).

        ``closure``, as in PyTorch: a function that recomputes the loss (and its gradients);
        it is called first and its result returned."""
        loss = closure() if closure is not None else None
        todo = [i for i, p in enumerate(self.params) if p.grad is not None]
        for i in todo:                      # 1. check everything
            self._check_grad(i)
        updates = []                        # 2. compute everything
        for i in todo:
            p = self.params[i]
            new_p, new_state = self.update(p.data, p.grad.data, self.state[i], p.backend.xp)
            updates.append((i, new_p, new_state))
        for i, new_p, new_state in updates:  # 3. store (nothing here can fail)
            self.params[i].data = new_p
            self.state[i] = new_state
            self._state_devices[i] = self.params[i].device
        return loss

    def update(self, p, g, state, xp):
        """New (parameter array, state dict) from the old ones; must not modify its inputs."""
        raise NotImplementedError

    def _check_grad(self, i):
        p = self.params[i]
        g = p.grad
        if not isinstance(g, Tensor):
            raise TypeError(f"{self._who(i)}: expected a Tensor gradient, got {type(g).__name__}")
        # the arrays' own attributes: these checks run for every parameter at every step
        if g.data.shape != p.data.shape:
            raise ValueError(f"{self._who(i)}: gradient has shape {g.shape}, expected the parameter's shape {p.shape}")
        if g._backend is not p._backend and g.device != p.device:
            raise ValueError(f"{self._who(i)}: gradient is on backend {g.device!r}, the parameter on {p.device!r}")
        if g.data.dtype != p.data.dtype:
            raise TypeError(f"{self._who(i)}: gradient has dtype {g.dtype}, expected the parameter's dtype {p.dtype}")
        if self._state_devices[i] is not None and self._state_devices[i] != p.device:
            raise ValueError(f"{self._who(i)}: the parameter moved to backend {p.device!r} but its optimizer state is "
                             f"on {self._state_devices[i]!r}; create the optimizer after moving the model")
        for k, v in self.state[i].items():
            if k != "step" and v.dtype != p.data.dtype:  # e.g. model.double() after some steps
                raise TypeError(f"{self._who(i)}: the parameter is {p.dtype} but its optimizer state {k!r} is "
                                f"{p.backend.dtype_name(v.dtype)}; create the optimizer after converting the model "
                                f"(.double(), .float(), .to(dtype))")

    def _who(self, i):
        """The start of an error message about parameter i (built only when there is an error)."""
        return f"{type(self).__name__}.step: parameter {self.param_names[i]!r}"

    # --- checkpoints -----------------------------------------------------------
    def state_dict(self):
        """{"optimizer": class name, "hyperparameters": {...}, "param_names": [...],
        "state": [per parameter {"step": int, name: host NumPy array}]}."""
        state = []
        for i, s in enumerate(self.state):
            b = self.params[i].backend
            state.append({k: (v if k == "step" else b.to_numpy(v)) for k, v in s.items()})
        return {"optimizer": type(self).__name__,
                "hyperparameters": {k: getattr(self, k) for k in self.hyperparameters},
                "param_names": list(self.param_names),
                "state": state}

    def load_state_dict(self, state_dict):
        """Restore hyperparameters and per-parameter state (arrays are copied to the parameters'
        backend and dtype). Everything is checked first: an error changes nothing."""
        who = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, dict) or not {"optimizer", "hyperparameters", "state"} <= state_dict.keys():
            raise ValueError(f"{who}: expected a dict with keys 'optimizer', 'hyperparameters', 'state' "
                             f"(from state_dict()), got {_describe(state_dict)}")
        if state_dict["optimizer"] != type(self).__name__:
            raise ValueError(f"{who}: the state is of a {state_dict['optimizer']} optimizer, not {type(self).__name__}")
        if not isinstance(state_dict["hyperparameters"], dict):
            raise ValueError(f"{who}: expected 'hyperparameters' to be a dict, got "
                             f"{_describe(state_dict['hyperparameters'])}")
        hyper = {k: _plain(v) for k, v in state_dict["hyperparameters"].items()}
        if set(hyper) != set(self.hyperparameters):
            raise ValueError(f"{who}: expected hyperparameters {sorted(self.hyperparameters)}, "
                             f"got {sorted(map(str, hyper))}")
        self._check_hyperparameters(**hyper)
        if not isinstance(state_dict["state"], (list, tuple)):
            raise ValueError(f"{who}: expected 'state' to be a list (one dict per parameter), got "
                             f"{_describe(state_dict['state'])}")
        states = list(state_dict["state"])
        if len(states) != len(self.params):
            raise ValueError(f"{who}: the state has {len(states)} parameters, this optimizer {len(self.params)}")
        names = state_dict.get("param_names")
        if names is not None and not isinstance(names, (list, tuple)):
            raise ValueError(f"{who}: expected 'param_names' to be a list of names, got {_describe(names)}")
        if names is not None and list(names) != list(self.param_names):
            wrong = [(a, b) for a, b in zip(names, self.param_names) if a != b]
            raise ValueError(f"{who}: the state was saved for parameters in another order or with other names: "
                             f"first mismatch {wrong[0][0]!r} (saved) vs {wrong[0][1]!r} (here)")
        new_states = []
        for p, name, s in zip(self.params, self.param_names, states):
            if not isinstance(s, dict):
                raise ValueError(f"{who}: parameter {name!r}: expected its state to be a dict, got {_describe(s)}")
            unknown = set(s) - set(self.state_keys) - {"step"}
            if unknown:
                raise ValueError(f"{who}: parameter {name!r}: unexpected state keys {sorted(unknown)}; "
                                 f"expected some of {['step', *self.state_keys]}")
            new = {}
            for k, v in s.items():
                if k == "step":  # the number of steps taken: Adam's bias corrections divide by 1 - beta**step
                    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
                        raise TypeError(f"{who}: parameter {name!r}: state 'step' must be an int (the number of "
                                        f"steps taken), got {type(v).__name__} {v!r}")
                    if v < 1:
                        raise ValueError(f"{who}: parameter {name!r}: state 'step' must be at least 1 (the number "
                                         f"of steps taken), got {v}")
                    new[k] = int(v)
                    continue
                a = v.numpy() if isinstance(v, Tensor) else np.asarray(v)
                if tuple(a.shape) != p.shape:
                    raise ValueError(f"{who}: parameter {name!r}: state {k!r} has shape {tuple(a.shape)}, "
                                     f"expected {p.shape}")
                if a.dtype.kind not in "fiu":
                    raise TypeError(f"{who}: parameter {name!r}: state {k!r} has dtype {a.dtype}, expected numbers")
                new[k] = p.backend.asarray(a, p.dtype)
            new_states.append(new)
        self.__dict__.update(hyper)   # checked together above (one by one, setattr would check halfway states)
        self.state = new_states
        self._state_devices = [p.device if s else None for p, s in zip(self.params, new_states)]

    def _check_hyperparameters(self, **hyper):
        raise NotImplementedError


def _lerp(a, b, w):
    """a + w * (b - a), evaluated as torch.lerp does (the form depends on w, a Python float)."""
    return a + w * (b - a) if w < 0.5 else b - (b - a) * (1 - w)


def _plain(value):
    """A NumPy scalar as the Python number (array_api_strict and CuPy arrays combine only with Python
    scalars); a list of them (Adam's betas) as a tuple."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    return value


def _numbers(who, **values):
    for k, v in values.items():
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
            raise TypeError(f"{who}: {k} must be a number, got {type(v).__name__} {v!r}")


def _non_negative(who, **values):
    _numbers(who, **values)
    for k, v in values.items():
        if not v >= 0:
            raise ValueError(f"{who}: invalid {k} value: {v} (expected >= 0)")


def _flags(who, **values):
    for k, v in values.items():
        if not (isinstance(v, (bool, np.bool_)) or (isinstance(v, numbers.Integral) and v in (0, 1))):
            raise TypeError(f"{who}: {k} must be True or False, got {type(v).__name__} {v!r}")


class SGD(Optimizer):
    """Stochastic gradient descent, with optional momentum (heavy ball or Nesterov) and L2 weight decay.

        g = grad + weight_decay * p
        b = g  (first step),  b = momentum * b + (1 - dampening) * g  (later)
        g = g + momentum * b  (nesterov)   or   g = b
        p = p - lr * g
    """

    hyperparameters = ("lr", "momentum", "dampening", "nesterov", "weight_decay")
    state_keys = ("momentum_buffer",)

    def __init__(self, params, lr, momentum=0, dampening=0, nesterov=False, weight_decay=0):
        self._check_hyperparameters(lr, momentum, dampening, nesterov, weight_decay)
        super().__init__(params)
        self.lr, self.momentum, self.dampening = lr, momentum, dampening
        self.nesterov, self.weight_decay = nesterov, weight_decay

    def _check_hyperparameters(self, lr, momentum, dampening, nesterov, weight_decay):
        _non_negative("SGD", lr=lr, momentum=momentum, weight_decay=weight_decay)
        _numbers("SGD", dampening=dampening)
        _flags("SGD", nesterov=nesterov)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(f"SGD: Nesterov momentum requires a momentum > 0 and zero dampening, "
                             f"got momentum={momentum}, dampening={dampening}")

    def update(self, p, g, state, xp):
        if self.weight_decay != 0:
            g = g + self.weight_decay * p
        if self.momentum == 0:
            return p - self.lr * g, {}
        b = state.get("momentum_buffer")
        if b is None:
            b = xp.asarray(g, copy=True)  # a copy: the gradient array belongs to the user
        else:
            b = self.momentum * b + (1 - self.dampening) * g
        g = g + self.momentum * b if self.nesterov else b
        return p - self.lr * g, {"momentum_buffer": b}


class Adam(Optimizer):
    """Adam (Kingma & Ba), with L2 weight decay added to the gradient (not AdamW).

        g = grad + weight_decay * p
        m = beta1 * m + (1 - beta1) * g          v = beta2 * v + (1 - beta2) * g**2
        p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)
    """

    hyperparameters = ("lr", "betas", "eps", "weight_decay")
    state_keys = ("exp_avg", "exp_avg_sq")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0):
        self._check_hyperparameters(lr, betas, eps, weight_decay)
        super().__init__(params)
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay

    def _check_hyperparameters(self, lr, betas, eps, weight_decay):
        _non_negative("Adam", lr=lr, eps=eps, weight_decay=weight_decay)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"Adam: betas must be two numbers in [0, 1), got {betas!r}")
        _numbers("Adam", beta1=betas[0], beta2=betas[1])
        if not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Adam: betas must be two numbers in [0, 1), got {tuple(betas)}")

    def update(self, p, g, state, xp):
        beta1, beta2 = self.betas
        t = state.get("step", 0) + 1
        if self.weight_decay != 0:
            g = g + self.weight_decay * p
        m = state.get("exp_avg")
        v = state.get("exp_avg_sq")
        if m is None:
            m, v = xp.zeros_like(p), xp.zeros_like(p)
        m = _lerp(m, g, 1 - beta1)
        v = beta2 * v + (1 - beta2) * g * g
        step_size = self.lr / (1 - beta1 ** t)
        denom = xp.sqrt(v) / (1 - beta2 ** t) ** 0.5 + self.eps
        return p - step_size * m / denom, {"step": t, "exp_avg": m, "exp_avg_sq": v}


class Adagrad(Optimizer):
    """Adagrad (Duchi et al.), the optimizer of Karpathy's min-char-rnn: each weight's step
    shrinks with the sum of its squared gradients.

        g = grad + weight_decay * p
        s = s + g**2                      (s starts at initial_accumulator_value)
        p = p - lr / (1 + (t - 1) * lr_decay) * g / (sqrt(s) + eps)
    """

    hyperparameters = ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps")
    state_keys = ("sum",)

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10):
        self._check_hyperparameters(lr, lr_decay, weight_decay, initial_accumulator_value, eps)
        super().__init__(params)
        self.lr, self.lr_decay, self.weight_decay = lr, lr_decay, weight_decay
        self.initial_accumulator_value, self.eps = initial_accumulator_value, eps

    def _check_hyperparameters(self, lr, lr_decay, weight_decay, initial_accumulator_value, eps):
        _non_negative("Adagrad", lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                      initial_accumulator_value=initial_accumulator_value, eps=eps)

    def update(self, p, g, state, xp):
        t = state.get("step", 0) + 1
        if self.weight_decay != 0:
            g = g + self.weight_decay * p
        s = state.get("sum")
        if s is None:
            s = xp.full_like(p, self.initial_accumulator_value)
        clr = self.lr / (1 + (t - 1) * self.lr_decay)
        s = s + g * g
        return p - clr * g / (xp.sqrt(s) + self.eps), {"step": t, "sum": s}


class RMSprop(Optimizer):
    """RMSprop (Hinton): divide the gradient by a running RMS of recent gradients.

        g = grad + weight_decay * p
        v = alpha * v + (1 - alpha) * g**2
        centered:  a = alpha * a + (1 - alpha) * g,   d = sqrt(v - a**2) + eps   else  d = sqrt(v) + eps
        momentum:  b = momentum * b + g / d,  p = p - lr * b      else  p = p - lr * g / d
    """

    hyperparameters = ("lr", "alpha", "eps", "weight_decay", "momentum", "centered")
    state_keys = ("square_avg", "momentum_buffer", "grad_avg")

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False):
        self._check_hyperparameters(lr, alpha, eps, weight_decay, momentum, centered)
        super().__init__(params)
        self.lr, self.alpha, self.eps, self.weight_decay = lr, alpha, eps, weight_decay
        self.momentum, self.centered = momentum, centered

    def _check_hyperparameters(self, lr, alpha, eps, weight_decay, momentum, centered):
        _non_negative("RMSprop", lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum)
        _flags("RMSprop", centered=centered)

    def update(self, p, g, state, xp):
        alpha = self.alpha
        t = state.get("step", 0) + 1
        if self.weight_decay != 0:
            g = g + self.weight_decay * p
        v = state.get("square_avg")
        if v is None:
            v = xp.zeros_like(p)
        v = alpha * v + (1 - alpha) * g * g
        new_state = {"step": t, "square_avg": v}
        if self.centered:
            a = state.get("grad_avg")
            a = _lerp(xp.zeros_like(p) if a is None else a, g, 1 - alpha)
            new_state["grad_avg"] = a
            d = xp.sqrt(v - a * a) + self.eps
        else:
            d = xp.sqrt(v) + self.eps
        if self.momentum > 0:
            b = state.get("momentum_buffer")
            b = self.momentum * (xp.zeros_like(p) if b is None else b) + g / d
            new_state["momentum_buffer"] = b
            return p - self.lr * b, new_state
        return p - self.lr * g / d, new_state


# --- helpers ---------------------------------------------------------------------
def _collect(params, who):
    """(parameters, names) from an iterable of Tensors or of (name, Tensor) pairs."""
    if isinstance(params, Tensor):
        raise TypeError(f"{who}: params must be an iterable of tensors or (name, tensor) pairs, got a single "
                        f"Tensor; wrap it in a list")
    if isinstance(params, dict):
        raise TypeError(f"{who}: params must be an iterable of tensors or (name, tensor) pairs, got a dict "
                        f"(parameter groups are not supported)")
    tensors, names, seen = [], [], set()
    for i, item in enumerate(params):
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            name, p = item
        elif isinstance(item, dict):
            raise TypeError(f"{who}: parameter groups (dicts) are not supported; pass model.parameters() "
                            f"or model.named_parameters()")
        else:
            name, p = None, item
        if not isinstance(p, Tensor):
            raise TypeError(f"{who}: expected tensors or (name, tensor) pairs, got {type(p).__name__} at position {i}")
        name = name or p.name or f"params[{i}]"
        if not p.is_leaf:
            raise ValueError(f"{who}: can't optimize {name!r}: it is not a leaf tensor (it has a grad_fn)")
        if not p.is_floating_point:
            raise TypeError(f"{who}: can't optimize {name!r}: expected a floating-point tensor, got {p.dtype}")
        if id(p) in seen:
            raise ValueError(f"{who}: parameter {name!r} appears twice in the list")
        seen.add(id(p))
        tensors.append(p)
        names.append(name)
    if not tensors:
        raise ValueError(f"{who}: got an empty parameter list")
    return tensors, names


def _describe(x):
    return f"a dict with keys {sorted(map(str, x))}" if isinstance(x, dict) else type(x).__name__


__all__ = ["Optimizer", "SGD", "Adam", "Adagrad", "RMSprop"]
