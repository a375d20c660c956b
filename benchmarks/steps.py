"""One float32 training step of the char model, four ways, from the same weights.

The model: one-hot inputs x (T, B, V=65) -> a recurrent layer of H units (RNN, LSTM
or GRU) -> a Linear decoder (H -> V) -> mean cross-entropy against the next
character; then backward through time and a plain SGD update p <- p - lr * dp.

    EngineStep        tg.nn.{RNN,LSTM,GRU} + tg.nn.Linear + F.cross_entropy + tg.optim.SGD
    ByHandStep        tinygrad_rnn.by_hand: the same step with the backward derived on paper
    TorchOpsStep      the same cell written with torch primitive ops, autograd, one op per call
    TorchFusedStep    torch.nn.{RNN,LSTM,GRU} (the fused kernel) + nn.Linear

Every step is a callable ``step()`` that runs forward, backward and the update.
``first_loss()`` is the loss of the untouched weights (checked equal across the
four before timing, so they compute the same thing). Engine and by-hand steps
also keep the seconds of each phase (forward, backward, update) per call.
"""
import numpy as np

import tinygrad_rnn as tg
import tinygrad_rnn.nn as nn
from tinygrad_rnn import by_hand as bh
from tinygrad_rnn.nn import functional as F

from .timing import perf_counter

V = 65                       # tiny-shakespeare's vocabulary
LR = 0.05
CELLS = ("rnn", "lstm", "gru")
SHAPES = {"tiny": dict(B=1, T=25, H=100), "small": dict(B=32, T=50, H=128), "mid": dict(B=64, T=100, H=256)}
LAYERS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def batch(T, B, seed=0):
    """A fixed batch: x (T, B, V) one-hot float32, targets (T, B) int64 (the next character)."""
    ids = np.random.default_rng(seed).integers(0, V, size=(T + 1, B))
    return bh.one_hot(ids[:-1], V, np.float32), ids[1:].astype(np.int64)


def params(cell, H, seed=0):
    """Weights with PyTorch's names (rnn.weight_ih_l0, ..., decoder.weight, decoder.bias)."""
    return bh.init_char_params(V, H, cell, seed=seed, dtype=np.float32)


def copy(p):
    return {k: v.copy() for k, v in p.items()}


# ---------------------------------------------------------------- the engine
class CharModel(nn.Module):
    """one-hot (T, B, V) -> {RNN, LSTM, GRU}(V, H) -> Linear(H, V)."""

    def __init__(self, cell, H):
        super().__init__()
        self.rnn = LAYERS[cell](V, H)
        self.decoder = nn.Linear(H, V)

    def forward(self, x, targets):
        out, _ = self.rnn(x)
        logits = self.decoder(out)
        return F.cross_entropy(logits.reshape(-1, V), targets)


class EngineStep:
    def __init__(self, cell, p, x, targets, lr=LR):
        self.model = CharModel(cell, p["rnn.weight_hh_l0"].shape[1])
        self.model.load_state_dict(copy(p))
        self.opt = tg.optim.SGD(self.model.parameters(), lr=lr)
        self.x = tg.Tensor(x)
        self.targets = tg.Tensor(targets.reshape(-1))
        self.phases = []           # (forward, backward, update) seconds per call

    def loss(self):
        return self.model(self.x, self.targets)

    def first_loss(self):
        return self.loss().item()

    def __call__(self):
        t0 = perf_counter()
        self.opt.zero_grad()
        loss = self.model(self.x, self.targets)
        t1 = perf_counter()
        loss.backward()
        t2 = perf_counter()
        self.opt.step()
        t3 = perf_counter()
        self.phases.append((t1 - t0, t2 - t1, t3 - t2))


# ---------------------------------------------------------------- by hand
class ByHandStep:
    """bh.char_model_step, split into its three calls so the phases can be timed."""

    def __init__(self, cell, p, x, targets, lr=LR):
        self.cell, self.p, self.x, self.targets, self.lr = cell, copy(p), x, targets, lr
        self.phases = []

    def first_loss(self):
        return bh.char_model_forward(self.p, self.x, self.targets, self.cell)[0]

    def __call__(self):
        t0 = perf_counter()
        _, cache = bh.char_model_forward(self.p, self.x, self.targets, self.cell)
        t1 = perf_counter()
        grads = bh.char_model_backward(self.p, cache, self.cell)
        t2 = perf_counter()
        bh.sgd_update(self.p, grads, self.lr)
        t3 = perf_counter()
        self.phases.append((t1 - t0, t2 - t1, t3 - t2))


# ---------------------------------------------------------------- PyTorch
def _torch():
    import torch
    return torch


class _TorchStep:
    """What both PyTorch references share: subclasses set self.torch, self.opt and loss()."""

    def first_loss(self):
        with self.torch.no_grad():
            return self.loss().item()

    def __call__(self):
        self.opt.zero_grad()
        self.loss().backward()
        self.opt.step()


class TorchOpsStep(_TorchStep):
    """The cell as a loop of torch primitive ops (what the engine's layers are), with autograd.

    Like the engine: the input projection x @ W_ih.T + b for all t in one op, unbound
    into T slices, then per step a matmul with W_hh and the gate arithmetic (add,
    sigmoid, tanh, mul), and a stack of the hidden states."""

    def __init__(self, cell, p, x, targets, lr=LR):
        torch = _torch()
        self.torch, self.cell = torch, cell
        self.w = {k: torch.tensor(v, requires_grad=True) for k, v in p.items()}
        self.opt = torch.optim.SGD(list(self.w.values()), lr=lr)
        self.x = torch.from_numpy(x)
        self.targets = torch.from_numpy(targets.reshape(-1))

    def loss(self):
        torch, w, x = self.torch, self.w, self.x
        T, B, _ = x.shape
        W_hh = w["rnn.weight_hh_l0"]
        H = W_hh.shape[1]
        b = w["rnn.bias_ih_l0"] if self.cell == "gru" else w["rnn.bias_ih_l0"] + w["rnn.bias_hh_l0"]
        # unbind, as the engine's layers: indexing xw[t] would make torch's backward zero-fill
        # a (T, B, G*H) buffer per step
        xw = (torch.matmul(x, w["rnn.weight_ih_l0"].t()) + b).unbind(0)
        W_hh_T = W_hh.t()
        h = torch.zeros(B, H)
        c = torch.zeros(B, H)
        hs = []
        for t in range(T):
            if self.cell == "rnn":
                h = torch.tanh(xw[t] + torch.matmul(h, W_hh_T))
            elif self.cell == "lstm":
                a = xw[t] + torch.matmul(h, W_hh_T)
                i, f, g, o = a.chunk(4, dim=1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
            else:
                x_r, x_z, x_n = xw[t].chunk(3, dim=1)
                h_r, h_z, h_n = (torch.matmul(h, W_hh_T) + w["rnn.bias_hh_l0"]).chunk(3, dim=1)
                r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
                n = torch.tanh(x_n + r * h_n)
                h = n + z * (h - n)
            hs.append(h)
        out = torch.stack(hs)
        logits = torch.matmul(out, w["decoder.weight"].t()) + w["decoder.bias"]
        return torch.nn.functional.cross_entropy(logits.reshape(-1, V), self.targets)



class TorchFusedStep(_TorchStep):
    """torch.nn.RNN/LSTM/GRU (one fused kernel per layer) + torch.nn.Linear."""

    def __init__(self, cell, p, x, targets, lr=LR):
        torch = _torch()
        self.torch = torch
        H = p["rnn.weight_hh_l0"].shape[1]
        layer = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
        self.model = torch.nn.ModuleDict({"rnn": layer(V, H), "decoder": torch.nn.Linear(H, V)})
        self.model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in p.items()})
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr)
        self.x = torch.from_numpy(x)
        self.targets = torch.from_numpy(targets.reshape(-1))

    def loss(self):
        out, _ = self.model["rnn"](self.x)
        logits = self.model["decoder"](out)
        return self.torch.nn.functional.cross_entropy(logits.reshape(-1, V), self.targets)



def count_nodes(loss):
    """(op nodes, leaf sinks) of the engine graph behind ``loss``: walked through ``parents``."""
    ops = sinks = 0
    seen, stack = set(), [loss.grad_fn]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.parents:
            ops += 1
        else:
            sinks += 1
        for parent, index in node.parents:
            if index is not None:
                stack.append(parent)
    return ops, sinks
