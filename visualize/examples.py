"""Small fixed programs for the gallery, the tests and the lecture: each returns its loss.

``hello_rnn`` is the lecture's character-level "hello" example written from
primitive ops, as in the torchviz reference picture: vocabulary [h, e, l, o],
3 hidden units, the four steps h->e, e->l, l->l, l->o, a cross-entropy loss per
step, PyTorch's parameter names. Steps are numbered t = 1..4 as in the notes
(h_t = tanh(W_hh h_{t-1} + W_ih x_t + b)), and the initial state h_0 is a leaf
that requires grad, so its gradient can be drawn.
"""
import numpy as np

import tinygrad_rnn as tg
from tinygrad_rnn import nn

VOCAB = "helo"


def one_hot(ch, dtype="float64", name=None):
    v = np.zeros((1, len(VOCAB)))
    v[0, VOCAB.index(ch)] = 1.0
    return tg.Tensor(v, dtype=dtype, name=name)


class HelloRNN(nn.Module):
    """rnn: the recurrent weights (weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0); fc: the decoder."""

    def __init__(self, hidden_size=3, dtype="float64"):
        super().__init__()
        self.rnn = nn.RNN(len(VOCAB), hidden_size, dtype=dtype)
        self.fc = nn.Linear(hidden_size, len(VOCAB), dtype=dtype)


def hello_rnn(text="hello", hidden_size=3, seed=0, w_hh_scale=None, dtype="float64"):
    """Run the "hello" RNN over ``text`` (input text[:-1], target text[1:]).

    Returns ``(loss, model, h_0)``: ``loss = L_1 + ... + L_T`` (named "L"), each
    ``L_t = -log softmax(W h_t + b)[target]``. ``w_hh_scale`` rescales W_hh to make the
    recurrence contractive (< 1, gradients vanish) or expansive (> 1, they explode)."""
    tg.manual_seed(seed)
    model = HelloRNN(hidden_size, dtype)
    rnn, fc = model.rnn, model.fc
    if w_hh_scale is not None:
        W = rnn.weight_hh_l0.numpy()
        W = W / np.linalg.norm(W, 2) * w_hh_scale
        rnn.weight_hh_l0.data = rnn.weight_hh_l0.backend.asarray(W, dtype)
    h = tg.zeros(1, hidden_size, dtype=dtype, requires_grad=True, name="h_0")
    h_0 = h
    losses = []
    for t, (a, b) in enumerate(zip(text[:-1], text[1:]), start=1):
        with tg.scope(f"t={t}"):
            x = one_hot(a, dtype, name=f"x_{t} = '{a}'")
            y = one_hot(b, dtype, name=f"target '{b}'")
            h = (tg.linear(x, rnn.weight_ih_l0, rnn.bias_ih_l0) + tg.linear(h, rnn.weight_hh_l0, rnn.bias_hh_l0)).tanh()
            h.name = f"h_{t}"
            logits = tg.linear(h, fc.weight, fc.bias)
            loss_t = -(logits.log_softmax(axis=-1) * y).sum()
            loss_t.name = f"L_{t}"
        losses.append(loss_t)
    loss = tg.stack(losses).sum()
    loss.name = "L"
    return loss, model, h_0


def vanilla_chain(T=8, hidden_size=4, scale=0.5, seed=0, dtype="float64", last_loss_only=True, input_scale=1.0,
                  init="default", bias=True):
    """A vanilla tanh RNN (nn.RNN) over T random inputs, with a linear readout of the last output
    only (L = w . h_T),
    so the gradient reaching h_t is carried by the recurrence alone: with W_hh rescaled to
    spectral norm ``scale`` < 1 it shrinks with every step back (vanishing), > 1 it can grow.
    ``input_scale`` shrinks the inputs (small activations keep tanh' near 1, so an expansive W_hh
    makes the gradient grow). Returns ``(loss, rnn, x)``."""
    tg.manual_seed(seed)
    rnn = nn.RNN(3, hidden_size, init=init, bias=bias, dtype=dtype)
    W = rnn.weight_hh_l0.numpy()
    W = W / np.linalg.norm(W, 2) * scale
    rnn.weight_hh_l0.data = rnn.weight_hh_l0.backend.asarray(W, dtype)
    x = tg.Tensor(tg.randn(T, 1, 3, dtype=dtype).numpy() * input_scale, dtype=dtype, name="x")
    out, _ = rnn(x)
    w = tg.Tensor(np.linspace(-1.0, 1.0, hidden_size), dtype=dtype, name="readout w")
    loss = (out[T - 1] * w).sum() if last_loss_only else (out * w).sum()
    loss.name = "L"
    return loss, rnn, x
