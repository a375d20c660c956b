"""Neural-network layers built from the engine's primitive ops (PyTorch's torch.nn API)."""
from . import init
from .cells import GRUCell, LSTMCell, RNNCell, gru_step, lstm_step, rnn_step
from .layers import Dropout, Embedding, Linear, ModuleList, ReLU, Sequential, Sigmoid, Tanh
from .module import Module, Parameter
from .rnn import GRU, LSTM, RNN, RNNBase
from .residual import (GatedResidualRNN, GatedResidualRNNCell, Highway, ResidualRNN, ResidualRNNCell,
                       gated_residual_step, residual_step)
from .skip import SkipConnectedRNN
from . import utils
from . import functional
F = functional  # tg.nn.F, as torch.nn.functional is usually imported as F
