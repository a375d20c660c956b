"""Module and Parameter: registration, names, traversal order, modes, state dicts, printing."""
import numpy as np
import pytest

import tinygrad_rnn as tg
import tinygrad_rnn.nn as nn
from tinygrad_rnn.nn import Linear, LSTM, Module, ModuleList, Parameter, Sequential
from tinygrad_rnn.nn.module import IncompatibleKeys, StateDictError


class Cell(Module):
    def __init__(self):
        super().__init__()
        self.W_hh = Parameter(tg.randn(3, 3))
        self.b = Parameter(tg.zeros(3))
        self.size = 3                    # plain attributes are not parameters
        self.h0 = tg.zeros(3)            # nor are plain tensors (not registered, as in PyTorch)


class Net(Module):
    """a tree two levels deep: PyTorch orders parameters depth first."""

    def __init__(self):
        super().__init__()
        self.scale = Parameter(tg.ones(1))
        self.encoder = Sequential(Linear(2, 3), nn.Tanh(), Sequential(Linear(3, 3)))
        self.rnn = LSTM(3, 4)
        self.cell = Cell()
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        out, _ = self.rnn(self.encoder(x) * self.scale)
        return self.drop(out)


NET_NAMES = ["scale", "encoder.0.weight", "encoder.0.bias", "encoder.2.0.weight", "encoder.2.0.bias",
             "rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0", "cell.W_hh", "cell.b"]


def test_registration():
    c = Cell()
    assert list(c._parameters) == ["W_hh", "b"]
    assert c.size == 3 and isinstance(c.h0, tg.Tensor)
    assert [n for n, _ in c.named_parameters()] == ["W_hh", "b"]
    del c.b
    assert [n for n, _ in c.named_parameters()] == ["W_hh"] and not hasattr(c, "b")
    c.W_hh = None  # None unregisters, as PyTorch
    assert list(c.parameters()) == [] and c.W_hh is None


def test_named_parameters_are_dotted_and_depth_first(backend):
    net = Net()
    assert [n for n, _ in net.named_parameters()] == NET_NAMES
    assert list(net.state_dict()) == NET_NAMES
    assert [p for p in net.parameters()] == [p for _, p in net.named_parameters()]
    assert net.num_parameters() == 1 + (6 + 3) + (9 + 3) + (48 + 64 + 16 + 16) + 9 + 3


def test_order_matches_torch():
    torch = pytest.importorskip("torch")

    class TorchNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(1))
            self.encoder = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(),
                                               torch.nn.Sequential(torch.nn.Linear(3, 3)))
            self.rnn = torch.nn.LSTM(3, 4)
            self.cell = torch.nn.Module()
            self.cell.W_hh = torch.nn.Parameter(torch.zeros(3, 3))
            self.cell.b = torch.nn.Parameter(torch.zeros(3))
            self.drop = torch.nn.Dropout(0.5)

    tnet = TorchNet()
    assert [n for n, _ in tnet.named_parameters()] == NET_NAMES
    assert [n for n, _ in tnet.named_modules()] == [n for n, _ in Net().named_modules()]


def test_parameters_are_named_after_their_path():
    net = Net()
    assert [p.name for p in net.parameters()] == NET_NAMES
    assert net.rnn.weight_hh_l0.name == "rnn.weight_hh_l0"
    outer = Sequential(net)  # re-parenting renames the whole subtree
    assert outer[0].rnn.weight_hh_l0.name == "0.rnn.weight_hh_l0"
    assert [n for n, _ in outer.named_parameters()] == [p.name for p in outer.parameters()]
    custom = Parameter(tg.zeros(2), name="W_xh")
    holder = Module()
    holder.w = custom
    assert custom.name == "W_xh"  # an explicit name is kept
    # the names reach the graph: the AccumulateGrad node of the leaf is labelled with them
    x = tg.randn(5, 2, 2)
    net(x).sum().backward()
    assert net.rnn.weight_hh_l0._accum.label == "0.rnn.weight_hh_l0"


def test_children_and_modules():
    net = Net()
    assert [n for n, _ in net.named_children()] == ["encoder", "rnn", "cell", "drop"]
    assert list(net.children()) == [net.encoder, net.rnn, net.cell, net.drop]
    assert [n for n, _ in net.named_modules()] == ["", "encoder", "encoder.0", "encoder.1", "encoder.2",
                                                   "encoder.2.0", "rnn", "cell", "drop"]
    assert len(list(net.modules())) == 9


def test_shared_parameters_and_modules_appear_once():
    shared = Linear(3, 3)
    seq = Sequential(shared, nn.Tanh(), shared)
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias"]
    assert [n for n, _ in seq.named_modules()] == ["", "0", "1"]
    tied = Module()
    tied.a, tied.b = Linear(2, 2), Linear(2, 2)
    tied.b.weight = tied.a.weight
    assert [n for n, _ in tied.named_parameters()] == ["a.weight", "a.bias", "b.bias"]


def test_train_eval_is_recursive():
    net = Net()
    assert net.eval() is net
    assert all(not m.training for m in net.modules())
    x = tg.randn(4, 2, 2)
    np.testing.assert_array_equal(net(x).numpy(), net(x).numpy())  # dropout off: deterministic
    net.encoder.train()
    assert net.encoder[2][0].training and not net.rnn.training and not net.training
    assert net.train() is net and all(m.training for m in net.modules())


def test_zero_grad(backend):
    net = Net()
    net(tg.randn(4, 2, 2)).sum().backward()
    assert all(p.grad is not None for p in net.parameters() if p is not net.cell.W_hh and p is not net.cell.b)
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


# --- state_dict / load_state_dict --------------------------------------------------------------------
def test_state_dict_returns_host_copies(backend):
    net = Net()
    sd = net.state_dict()
    assert all(type(v) is np.ndarray for v in sd.values())
    np.testing.assert_array_equal(sd["cell.W_hh"], net.cell.W_hh.numpy())
    sd["cell.W_hh"][...] = 42.0
    assert not np.any(net.cell.W_hh.numpy() == 42.0)


def test_load_state_dict_round_trip_from_another_model(backend):
    a, b = Net(), Net()
    result = b.load_state_dict(a.state_dict())
    assert result == IncompatibleKeys([], []) and result.missing_keys == [] and result.unexpected_keys == []
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=n)
        assert q.device == backend and q.dtype == "float32"


def test_load_state_dict_accepts_array_likes(backend):
    lin = Linear(2, 3)
    w = np.arange(6.0).reshape(3, 2)  # float64: cast to the parameter's float32
    lin.load_state_dict({"weight": w, "bias": [1, 2, 3]})
    assert lin.weight.dtype == "float32" and lin.bias.dtype == "float32"
    np.testing.assert_array_equal(lin.weight.numpy(), w)
    np.testing.assert_array_equal(lin.bias.numpy(), [1.0, 2.0, 3.0])
    other = "numpy" if backend == "array_api_strict" else "array_api_strict"
    lin.load_state_dict({"weight": tg.ones(3, 2, backend=other), "bias": tg.zeros(3, backend=other)})
    assert lin.weight.device == backend
    np.testing.assert_array_equal(lin.weight.numpy(), np.ones((3, 2)))


def test_load_state_dict_from_torch(backend):
    torch = pytest.importorskip("torch")
    tlstm = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True)
    ours = LSTM(3, 4, num_layers=2, bidirectional=True)
    ours.load_state_dict({k: v.detach().numpy() for k, v in tlstm.state_dict().items()})
    for k, v in tlstm.state_dict().items():
        np.testing.assert_array_equal(ours.state_dict()[k], v.numpy())
    ours.load_state_dict(tlstm.state_dict())  # torch tensors themselves convert too
    assert list(ours.state_dict()) == list(tlstm.state_dict())


def assert_unchanged(module, before):
    after = module.state_dict()
    assert list(after) == list(before)
    for k in before:
        np.testing.assert_array_equal(after[k], before[k])


def test_strict_load_rejects_missing_unexpected_and_wrong_shapes(backend):
    net = Net()
    before = net.state_dict()
    good = Net().state_dict()

    missing = dict(good)
    del missing["rnn.weight_hh_l0"]
    with pytest.raises(StateDictError, match=r"load_state_dict into Net: missing keys: rnn.weight_hh_l0$"):
        net.load_state_dict(missing)

    unexpected = dict(good, **{"rnn.weight_hh_l1": np.zeros((16, 4))})
    with pytest.raises(StateDictError, match=r"unexpected keys: rnn.weight_hh_l1$"):
        net.load_state_dict(unexpected)

    wrong = dict(good, **{"cell.b": np.zeros(4)})
    with pytest.raises(StateDictError, match=r"cell.b: expected shape \(3,\), got \(4,\)$"):
        net.load_state_dict(wrong)

    everything = dict(missing, **{"extra": 1.0, "cell.b": np.zeros((1, 3)), "scale": np.array(["a"])})
    with pytest.raises(StateDictError) as info:
        net.load_state_dict(everything)
    assert str(info.value) == ("load_state_dict into Net: missing keys: rnn.weight_hh_l0; unexpected keys: extra; "
                               "scale: expected numbers, got dtype <U1; cell.b: expected shape (3,), got (1, 3)")
    assert isinstance(info.value, RuntimeError) and isinstance(info.value, KeyError)  # PyTorch's and ours
    assert_unchanged(net, before)


def test_non_strict_load_returns_the_key_lists(backend):
    net = Net()
    new_scale = np.array([7.0])
    result = net.load_state_dict({"scale": new_scale, "rnn.weight_hh_l1": np.zeros(2)}, strict=False)
    assert result.missing_keys == NET_NAMES[1:]
    assert result.unexpected_keys == ["rnn.weight_hh_l1"]
    np.testing.assert_array_equal(net.scale.numpy(), new_scale)
    before = net.state_dict()
    with pytest.raises(StateDictError, match=r"scale: expected shape \(1,\), got \(2,\)"):  # shapes still count
        net.load_state_dict({"scale": np.zeros(2), "cell.b": np.ones(3)}, strict=False)
    assert_unchanged(net, before)


def test_load_state_dict_bad_values():
    lin = Linear(2, 2)
    with pytest.raises(StateDictError, match="bias: cannot convert a list to an array"):
        lin.load_state_dict({"weight": np.zeros((2, 2)), "bias": [[1.0], [1.0, 2.0]]})
    with pytest.raises(TypeError, match="expected a dict of name -> array, got list"):
        lin.load_state_dict([np.zeros((2, 2))])


# --- Parameter and assignment rules --------------------------------------------------------------------
def test_parameter():
    p = Parameter(tg.randn(2, 2))
    assert p.requires_grad and p.is_leaf and p.dtype == "float32"
    assert repr(p).startswith("Parameter containing:\nTensor(")
    frozen = Parameter(tg.zeros(2), requires_grad=False)
    assert not frozen.requires_grad
    x = tg.randn(2, requires_grad=True)
    y = x * 2
    q = Parameter(y)  # made from an op's output: a fresh leaf
    assert q.is_leaf and q.requires_grad and q.grad_fn is None
    with pytest.raises(TypeError, match="Parameter: expected floating-point data, got int64"):
        Parameter(tg.tensor([1, 2]))


@pytest.mark.parametrize("value, typename", [
    (tg.zeros(2, 2), "tinygrad_rnn.tensor.Tensor"),
    (np.zeros((2, 2)), "numpy.ndarray"),
    ([[0.0, 0.0], [0.0, 0.0]], "list"),
    (3, "int"),
])
def test_assigning_a_non_parameter_over_a_parameter_is_refused(value, typename):
    """As PyTorch ("cannot assign 'numpy.ndarray' as parameter 'weight' (torch.nn.Parameter or None
    expected)"): accepted, it would unregister the weight and fail later, inside forward."""
    lin = Linear(2, 2)
    before = lin.state_dict()
    with pytest.raises(TypeError, match=rf"^cannot assign '{typename}' as parameter 'weight' of Linear \(Parameter "
                                        rf"or None expected; to change the values, assign a Parameter, set \.data"):
        lin.weight = value
    assert isinstance(lin.weight, Parameter) and list(dict(lin.named_parameters())) == ["weight", "bias"]
    assert_unchanged(lin, before)
    assert lin(tg.ones(1, 2)).shape == (1, 2)
    lin.weight = Parameter(tg.zeros(2, 2))  # replacing by another Parameter is fine
    np.testing.assert_array_equal(lin.weight.numpy(), np.zeros((2, 2)))
    lin.bias = None                          # and so is None (no bias), as in PyTorch
    assert list(dict(lin.named_parameters())) == ["weight"]
    np.testing.assert_array_equal(lin(tg.ones(1, 2)).numpy(), np.zeros((1, 2)))


def test_assigning_a_non_module_over_a_child_module_is_refused():
    net = Net()
    with pytest.raises(TypeError, match=r"^cannot assign 'int' as child module 'rnn' of Net \(Module or None "
                                        r"expected\)$"):
        net.rnn = 5
    assert isinstance(net.rnn, LSTM) and [k for k, _ in net.named_parameters()] == NET_NAMES


def test_forgetting_super_init():
    class Bad(Module):
        def __init__(self):
            self.w = Parameter(tg.zeros(1))

    with pytest.raises(AttributeError, match=r"Bad.__init__ must call super\(\).__init__\(\) before assigning 'w'"):
        Bad()


def test_to_moves_every_parameter():
    net = Net()
    values = net.state_dict()
    net.to("array_api_strict")
    assert all(p.device == "array_api_strict" and p.grad is None for p in net.parameters())
    assert_unchanged(net, values)
    out = net(tg.randn(3, 2, 2, backend="array_api_strict"))
    assert out.device == "array_api_strict"


def test_double_casts_every_parameter_in_place_and_computes_as_a_float64_layer(backend):
    """An LSTM made in float32 and converted with .double() gives exactly the numbers (outputs,
    final states, every gradient) of an LSTM built in float64 with the same weights."""
    converted = nn.LSTM(3, 4, num_layers=2)
    built = nn.LSTM(3, 4, num_layers=2, dtype="float64")
    built.load_state_dict(converted.state_dict())     # float32 values, exactly representable in float64
    params = list(converted.parameters())
    assert converted.double() is converted
    assert [id(p) for p in converted.parameters()] == [id(p) for p in params]  # the same Parameter objects
    assert all(p.dtype == "float64" and p.device == backend for p in converted.parameters())
    x = tg.randn(5, 2, 3, dtype="float64")
    results = []
    for m in (converted, built):
        out, (h, c) = m(x)
        (out.sum() + h.sum() * 2 + (c * c).sum()).backward()
        results.append([out.numpy(), h.numpy(), c.numpy()] + [p.grad.numpy() for p in m.parameters()])
    assert all(r.dtype == np.float64 for r in results[0])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_float_double_and_to_dtype_round_trip_and_cast_gradients():
    net = Net()
    before = net.state_dict()
    net(tg.randn(3, 2, 2)).sum().backward()
    grads = [None if p.grad is None else p.grad.numpy() for p in net.parameters()]
    assert [g is None for g in grads] == [n.startswith("cell.") for n in NET_NAMES]  # (cell is not in forward)
    assert net.to("float64") is net and net.to(np.float64) is net
    for p, g in zip(net.parameters(), grads):
        assert p.dtype == "float64"
        if g is None:
            assert p.grad is None
        else:                                                   # as torch: .grad is cast too
            assert p.grad.dtype == "float64"
            np.testing.assert_array_equal(p.grad.numpy(), g.astype(np.float64))
    assert net.float() is net                                   # float32 -> float64 -> float32 is exact
    assert all(p.dtype == "float32" and (p.grad is None or p.grad.dtype == "float32") for p in net.parameters())
    assert_unchanged(net, before)
    with pytest.raises(TypeError, match=r"^Net.to: parameters are floating point, so expected a dtype of float32 or "
                                        r"float64, got int64$"):
        net.to("int64")
    with pytest.raises(TypeError, match="float16 is not supported"):
        net.to(np.float16)
    assert_unchanged(net, before)


def test_the_dtype_mismatch_advice_works():
    """The recurrent layers' message says to convert one side with .float() / .double(); both exist."""
    gru = nn.GRU(3, 4)
    x = tg.randn(5, 2, 3, dtype="float64")
    with pytest.raises(TypeError, match=r"GRU: input is float64 but the parameters are float32; convert one with "
                                        r"\.float\(\) / \.double\(\)"):
        gru(x)
    assert gru(x.float())[0].dtype == "float32"
    assert gru.double()(x)[0].dtype == "float64"


# --- printing and containers ------------------------------------------------------------------------------
def test_repr_prints_the_tree():
    net = Net()
    assert repr(net) == (
        "Net(\n"
        "  (encoder): Sequential(\n"
        "    (0): Linear(in_features=2, out_features=3, bias=True)\n"
        "    (1): Tanh()\n"
        "    (2): Sequential(\n"
        "      (0): Linear(in_features=3, out_features=3, bias=True)\n"
        "    )\n"
        "  )\n"
        "  (rnn): LSTM(3, 4)\n"
        "  (cell): Cell()\n"
        "  (drop): Dropout(p=0.5)\n"
        ")")


def test_repr_matches_torch():
    torch = pytest.importorskip("torch")
    ours = Sequential(Linear(2, 3), nn.Tanh(), Sequential(Linear(3, 1, bias=False), nn.Sigmoid()),
                      nn.GRU(3, 4, num_layers=2, bidirectional=True), nn.Embedding(5, 2), nn.ReLU())
    theirs = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(),
                                 torch.nn.Sequential(torch.nn.Linear(3, 1, bias=False), torch.nn.Sigmoid()),
                                 torch.nn.GRU(3, 4, num_layers=2, bidirectional=True), torch.nn.Embedding(5, 2),
                                 torch.nn.ReLU())
    assert repr(ours) == repr(theirs)


def test_sequential(backend):
    seq = Sequential(Linear(2, 3), nn.Tanh(), Linear(3, 1))
    assert len(seq) == 3 and isinstance(seq[1], nn.Tanh) and seq[-1] is seq[2]
    x = tg.randn(4, 2)
    expected = seq[2](seq[1](seq[0](x)))
    np.testing.assert_array_equal(seq(x).numpy(), expected.numpy())
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_module_list(backend):
    class Stack(Module):
        def __init__(self):
            super().__init__()
            self.layers = ModuleList([Linear(2, 2) for _ in range(2)])
            self.layers.append(Linear(2, 1))

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return x

    s = Stack()
    assert len(s.layers) == 3 and s.layers[2].out_features == 1 and s.layers[-1] is s.layers[2]
    assert [n for n, _ in s.named_parameters()] == [f"layers.{i}.{w}" for i in range(3) for w in ("weight", "bias")]
    assert s.layers[1].weight.name == "layers.1.weight"
    assert s(tg.randn(5, 2)).shape == (5, 1)
    assert repr(s).startswith("Stack(\n  (layers): ModuleList(\n    (0): Linear(in_features=2")


# ---------------------------------------------------------------- copy.deepcopy
class CharNet(Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(3, 4, num_layers=2)
        self.out = Linear(4, 3)

    def forward(self, x):
        return self.out(self.rnn(x)[0]).sum()


def test_deepcopy_of_a_model_is_independent_and_computes_the_same(backend):
    """copy.deepcopy, as PyTorch users keep their best model: the same weights, gradients, names and
    Parameter types in arrays of their own; the copy computes what the original computes; training
    the copy leaves the original as it was."""
    import copy
    model = CharNet()
    x = tg.randn(5, 2, 3)
    model(x).backward()                       # params have grads
    twin = copy.deepcopy(model)
    assert [n for n, _ in twin.named_parameters()] == [n for n, _ in model.named_parameters()]
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        assert type(q) is Parameter and q.name == p.name and q.requires_grad and q is not p
        np.testing.assert_array_equal(q.numpy(), p.numpy())
        np.testing.assert_array_equal(q.grad.numpy(), p.grad.numpy())
        assert q.data is not p.data and q.grad.data is not p.grad.data
    before = {n: p.numpy().copy() for n, p in model.named_parameters()}
    grads = {n: p.grad.numpy().copy() for n, p in model.named_parameters()}
    assert twin(x).item() == pytest.approx(model(x).item(), rel=1e-6)
    opt = tg.optim.SGD(twin.parameters(), lr=0.5)
    opt.zero_grad()
    twin(x).backward()
    opt.step()
    for name, p in model.named_parameters():
        np.testing.assert_array_equal(p.numpy(), before[name])
        np.testing.assert_array_equal(p.grad.numpy(), grads[name])
    assert twin(x).item() != pytest.approx(model(x).item(), rel=1e-6)


def test_deepcopy_of_a_tensor_made_by_an_op_is_refused_as_in_pytorch(backend):
    import copy
    x = tg.randn(2, 3, requires_grad=True)
    y = (x * 2).tanh()
    with pytest.raises(RuntimeError, match=r"deepcopy: only tensors made by the user \(graph leaves\) can be "
                                           r"deep-copied; this one was made by tanh"):
        copy.deepcopy(y)
    z = copy.deepcopy(y.detach())
    np.testing.assert_array_equal(z.numpy(), y.numpy())
    assert z.backend is y.backend and not z.requires_grad


def test_pickle_of_a_model_round_trips(backend):
    """pickle (as torch.save uses it): weights, gradients, names and types come back, on the same
    backend, and the loaded model computes what the original computes."""
    import pickle
    model = CharNet()
    x = tg.randn(5, 2, 3)
    model(x).backward()
    loaded = pickle.loads(pickle.dumps(model))
    for (name, p), (name2, q) in zip(model.named_parameters(), loaded.named_parameters()):
        assert name2 == name and type(q) is Parameter and q.name == p.name and q.device == p.device
        np.testing.assert_array_equal(q.numpy(), p.numpy())
        np.testing.assert_array_equal(q.grad.numpy(), p.grad.numpy())
    assert loaded(x).item() == pytest.approx(model(x).item(), rel=1e-6)
    net = pickle.loads(pickle.dumps(Net()))           # Sequential, Dropout, a plain tensor attribute
    assert [n for n, _ in net.named_parameters()] == [n for n, _ in Net().named_parameters()]


def test_pickle_of_a_tensor_made_by_an_op_gives_a_leaf_as_in_pytorch(backend):
    import pickle
    x = tg.randn(2, 3, requires_grad=True)
    y = (x * 2).tanh()
    z = pickle.loads(pickle.dumps(y))
    assert z.is_leaf and z.requires_grad and z.dtype == "float32" and z.device == y.device
    np.testing.assert_array_equal(z.numpy(), y.numpy())
    ids = pickle.loads(pickle.dumps(tg.Tensor([1, 2, 3])))
    assert ids.dtype == "int64" and ids.tolist() == [1, 2, 3]
