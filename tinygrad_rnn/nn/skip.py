"""Skip connections in a stack of recurrent layers (notes: "Multiple recurrent layer
RNN ... We can also have skips"; Graves 2013, "Generating sequences with RNNs").

The notes' two-layer equations with skips. Their layers are 1 and 2, ours are
layer0 and layer1; f1, f2 = tanh for an Elman RNN:

    h^(1)(t) = f1(W^(0,1) X(t) + W^(1,1) h^(1)(t-1) + b^(1))
    h^(2)(t) = f2(W^(1,2) h^(1)(t) + W^(0,2) X(t) + W^(2,2) h^(2)(t-1) + b^(2))   <- input skip
    Y(t)     = f3(W^(2) h^(2)(t) + W^(1,3) h^(1)(t) + b^(3))                      <- output skip

``SkipConnectedRNN`` computes this for L layers k = 0..L-1. Each layer is a
one-layer ``RNN``, ``LSTM`` or ``GRU``, so it has that layer's cell and
parameters:

    input_skip:   in^(0)_t = x_t,   in^(k)_t = concat(h^(k-1)_t, x_t)   for k > 0
                  (without it, in^(k)_t = h^(k-1)_t: a plain stack)
    output_skip:  output_t = concat(h^(0)_t, h^(1)_t, ..., h^(L-1)_t)
                  (without it, output_t = h^(L-1)_t)

Layer k's ``weight_ih_l0`` has shape (G*H, H + I). It is the notes' two matrices
side by side, [W^(k-1,k) | W^(0,k)], in the order of the concat. The notes'
Y(t) is the user's output layer on top: a ``Linear(L*H, M)`` on the output
holds [W^(1,3) | W^(2)] side by side, and f3 is its softmax. With
``bidirectional=True``, each h^(k)_t is the two directions concatenated
(2H features).
"""
from ..function import scope
from .functional import concat
from .init import check_sizes
from .layers import ModuleList
from .module import Module
from .rnn import GRU, LSTM, RNN, RNNBase, as_given, time_major

LAYERS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


class SkipConnectedRNN(Module):
    """A stack of recurrent layers with skip connections from the input to every layer and
    from every layer to the output.

    SkipConnectedRNN(cell_type "rnn" | "lstm" | "gru", input_size, hidden_size, num_layers=2,
    input_skip=True, output_skip=True, bias=True, batch_first=False, dropout=0.0,
    bidirectional=False, **layer_options). The layer options go to each layer, e.g.
    nonlinearity= (rnn), peephole= (lstm), reset_after= (gru), init=, init_gain=, dtype=.

    forward(input (T, B, I), hx (L*D, B, H) or, for LSTM, (h_0, c_0) = None)
      -> output (T, B, F), h_n (L*D, B, H) or (h_n, c_n),
    with F = L*D*H under output_skip, else D*H (D = 2 if bidirectional). batch_first and
    unbatched (T, I) input work as in ``RNN``. Layer k is ``self.layers[k]``, a one-layer
    RNN/LSTM/GRU (parameters "layers.<k>.weight_ih_l0", ...). Its steps run in scope
    ("SkipConnectedRNN", "layer<k>", "t=<t>", "<Cell>"), like those of a multi-layer ``RNN``.
    ``dropout`` applies to what a layer passes up to the next layer, never to x or to the output.
    """

    def __init__(self, cell_type, input_size, hidden_size, num_layers=2, input_skip=True, output_skip=True,
                 bias=True, batch_first=False, dropout=0.0, bidirectional=False, **layer_options):
        super().__init__()
        if cell_type not in LAYERS:
            raise ValueError(f"SkipConnectedRNN: cell_type must be 'rnn', 'lstm' or 'gru', got {cell_type!r}")
        check_sizes("SkipConnectedRNN", input_size=(input_size, 0), hidden_size=(hidden_size, 1),
                    num_layers=(num_layers, 1))
        if not 0 <= dropout < 1:
            raise ValueError(f"SkipConnectedRNN: dropout must be in [0, 1), got {dropout}")
        self.cell_type, self.input_size, self.hidden_size, self.num_layers = cell_type, input_size, hidden_size, num_layers
        self.input_skip, self.output_skip = input_skip, output_skip
        self.batch_first, self.dropout, self.bidirectional = batch_first, dropout, bidirectional
        self.num_directions = D = 2 if bidirectional else 1
        Layer = LAYERS[cell_type]
        self.n_states = Layer.n_states
        layers = []
        for k in range(num_layers):
            n_in = input_size if k == 0 else D * hidden_size + (input_size if input_skip else 0)
            layers.append(Layer(n_in, hidden_size, 1, bias=bias, bidirectional=bidirectional, **layer_options))
        self.layers = ModuleList(layers)

    @property
    def output_size(self):
        """Features of each output_t: L*D*H with output_skip, else D*H."""
        D, H = self.num_directions, self.hidden_size
        return (self.num_layers if self.output_skip else 1) * D * H

    def forward(self, input, hx=None):
        name = type(self).__name__
        x, batched = time_major(name, input, self.input_size, self.layers[0].weight_ih_l0, self.batch_first)
        B = x.shape[1]
        # the checks and messages of the standard layers (they read num_layers, num_directions,
        # hidden_size and n_states, which this module has too)
        states = RNNBase._initial_states(self, hx, B, batched, x)

        D = self.num_directions
        finals = [[] for _ in range(self.n_states)]
        outputs = []
        with scope(name):
            below = x                      # what layer k sees from the layer under it
            for k, layer in enumerate(self.layers):
                layer_input = below
                if k > 0 and self.input_skip:
                    with scope(f"layer{k}"):
                        layer_input = concat([below, x], axis=2)      # [h^(k-1)_t, x_t]
                directions = []
                for d, suffix in enumerate(layer._suffixes()):
                    with scope(f"layer{k}{suffix}"):
                        out, last = layer._run_direction(layer_input, tuple(s[k * D + d] for s in states),
                                                         f"l0{suffix}", reverse=d == 1)
                    directions.append(out)
                    for lst, s in zip(finals, last):
                        lst.append(s)
                h_k = directions[0] if D == 1 else concat(directions, axis=2)
                outputs.append(h_k)
                below = h_k
                if self.dropout and self.training and k < self.num_layers - 1:
                    below = below.dropout(self.dropout, True)
            output = concat(outputs, axis=2) if self.output_skip and len(outputs) > 1 else outputs[-1]
        return as_given(output, finals, batched, self.batch_first)

    def extra_repr(self):
        s = f"{self.cell_type!r}, {self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        s += f", input_skip={self.input_skip}, output_skip={self.output_skip}"
        for attr, default in (("batch_first", False), ("dropout", 0.0), ("bidirectional", False)):
            if getattr(self, attr) != default:
                s += f", {attr}={getattr(self, attr)!r}"
        return s
