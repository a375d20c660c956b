"""Optimizers: step for step equal to torch.optim (float64), state round trips, all-or-nothing steps."""
import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import optim
from tinygrad_rnn.nn import Linear, Parameter
from tinygrad_rnn.tensor import Tensor

SHAPES = [(3, 4), (4,), (2, 3, 2)]
N_STEPS = 5

CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)),
    ("Adam", dict()),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("Adam", dict(lr=0.02, betas=(0.3, 0.5))),   # 1 - beta1 >= 0.5: torch.lerp's other formula
    ("Adagrad", dict()),
    ("Adagrad", dict(lr=0.1, lr_decay=0.1, weight_decay=0.05)),
    ("Adagrad", dict(lr=0.1, initial_accumulator_value=0.5, eps=1e-6)),
    ("RMSprop", dict()),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("RMSprop", dict(lr=0.01, momentum=0.9, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, alpha=0.3, centered=True, momentum=0.5, eps=1e-4)),
]
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'defaults'}" for name, kw in CASES]


def make_params(seed=0, backend=None):
    rng = np.random.default_rng(seed)
    values = [rng.standard_normal(s) for s in SHAPES]
    params = [Parameter(Tensor(v, dtype="float64", backend=backend)) for v in values]
    for i, p in enumerate(params):
        p.name = f"w{i}"
    return values, params


def grads_for_step(step, seed=1):
    """Random float64 gradients; at step 2 the second parameter has none (it must be skipped)."""
    rng = np.random.default_rng(seed + 100 * step)
    grads = [rng.standard_normal(s) for s in SHAPES]
    if step == 2:
        grads[1] = None
    return grads


def set_grads(params, grads):
    for p, g in zip(params, grads):
        p.grad = None if g is None else Tensor(g, dtype="float64", backend=p.device)


def torch_optimizer(torch, name, kw, tparams):
    kw = dict(kw)
    if name in ("SGD", "Adam", "Adagrad", "RMSprop"):
        kw["foreach"] = False  # the single-tensor code path, as documented
    return getattr(torch.optim, name)(tparams, **kw)


# --- PyTorch parity -------------------------------------------------------------------
@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_matches_torch_step_for_step(backend, name, kw):
    torch = pytest.importorskip("torch")
    values, params = make_params()
    tparams = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in values]
    opt = getattr(optim, name)(params, **kw)
    topt = torch_optimizer(torch, name, kw, tparams)
    for step in range(N_STEPS):
        grads = grads_for_step(step)
        set_grads(params, grads)
        for tp, g in zip(tparams, grads):
            tp.grad = None if g is None else torch.tensor(g)
        opt.step()
        topt.step()
        for p, tp in zip(params, tparams):
            np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=1e-12, atol=1e-14,
                                       err_msg=f"{name} {kw} step {step} {p.name}")
    # the optimizer state has torch's names and values
    ours = opt.state_dict()["state"]
    for i, tp in enumerate(tparams):
        theirs = topt.state[tp]
        assert set(ours[i]) == set(theirs), (ours[i].keys(), theirs.keys())
        for key, value in theirs.items():
            if key == "step":
                assert ours[i]["step"] == int(value.item())
            else:
                np.testing.assert_allclose(ours[i][key], value.numpy(), rtol=1e-12, atol=1e-14)


def test_param_without_grad_keeps_its_step_count(backend):
    _, params = make_params()
    opt = optim.Adam(params)
    for step in range(3):
        set_grads(params, grads_for_step(step))  # step 2: w1 has no grad
        opt.step()
    assert [s["step"] for s in opt.state] == [3, 2, 3]


def test_sgd_by_hand(backend):
    """p <- p - lr * b with b = g, then b = m * b + g (no torch needed)."""
    p = Parameter(Tensor([1.0, -2.0], dtype="float64"))
    opt = optim.SGD([p], lr=0.5, momentum=0.9)
    p.grad = Tensor([1.0, 1.0], dtype="float64")
    opt.step()
    np.testing.assert_array_equal(p.numpy(), [0.5, -2.5])
    p.grad = Tensor([2.0, 0.0], dtype="float64")
    opt.step()  # b = 0.9 * 1 + 2 = 2.9 and 0.9
    np.testing.assert_allclose(p.numpy(), [0.5 - 0.5 * 2.9, -2.5 - 0.5 * 0.9], rtol=1e-15)


def test_adagrad_by_hand(backend):
    """min-char-rnn: mem += g**2; p -= lr * g / sqrt(mem + 1e-8) (here with eps outside the sqrt)."""
    p = Parameter(Tensor([1.0], dtype="float64"))
    opt = optim.Adagrad([p], lr=0.1, eps=0.0)
    for g in (3.0, 4.0):
        p.grad = Tensor([g], dtype="float64")
        opt.step()
    np.testing.assert_allclose(p.numpy(), [1.0 - 0.1 * 3 / 3 - 0.1 * 4 / 5], rtol=1e-15)


# --- state_dict ---------------------------------------------------------------------
@pytest.mark.parametrize("name,kw", CASES[1::2], ids=IDS[1::2])
def test_state_dict_round_trip_continues_identically(backend, name, kw, tmp_path):
    _, params = make_params()
    opt = getattr(optim, name)(params, **kw)
    for step in range(3):
        set_grads(params, grads_for_step(step))
        opt.step()
    tg.save({"params": [p.numpy() for p in params], "optim": opt.state_dict()}, tmp_path / "o.npz")

    _, params2 = make_params(seed=7)  # different values, a fresh optimizer with other settings
    opt2 = getattr(optim, name)(params2, lr=123.0)
    ckpt = tg.load(tmp_path / "o.npz")
    for p, v in zip(params2, ckpt["params"]):
        p.data = p.backend.asarray(v, "float64")
    opt2.load_state_dict(ckpt["optim"])
    assert opt2.lr == kw.get("lr", opt.lr)
    for step in range(3, 6):
        for ps in (params, params2):
            set_grads(ps, grads_for_step(step))
        opt.step()
        opt2.step()
        for p, p2 in zip(params, params2):
            np.testing.assert_array_equal(p.numpy(), p2.numpy())


def test_state_dict_is_plain_host_data(backend):
    _, params = make_params()
    opt = optim.RMSprop(params, momentum=0.5, centered=True)
    set_grads(params, grads_for_step(0))
    opt.step()
    sd = opt.state_dict()
    assert sd["optimizer"] == "RMSprop" and sd["param_names"] == ["w0", "w1", "w2"]
    assert sd["hyperparameters"] == {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "weight_decay": 0,
                                     "momentum": 0.5, "centered": True}
    for s in sd["state"]:
        assert type(s["step"]) is int
        for k in ("square_avg", "grad_avg", "momentum_buffer"):
            assert type(s[k]) is np.ndarray and s[k].dtype == np.float64
    # a copy: changing it does not touch the optimizer
    sd["state"][0]["square_avg"][...] = 99.0
    assert not np.any(opt.state_dict()["state"][0]["square_avg"] == 99.0)


def test_load_state_dict_checks_everything_first(backend):
    _, params = make_params()
    opt = optim.Adam(params)
    set_grads(params, grads_for_step(0))
    opt.step()
    good = opt.state_dict()
    before = opt.state_dict()

    bad = opt.state_dict()
    bad["state"][2]["exp_avg"] = np.zeros((5, 5))
    bad["hyperparameters"]["lr"] = 0.5
    with pytest.raises(ValueError, match=r"parameter 'w2': state 'exp_avg' has shape \(5, 5\), expected \(2, 3, 2\)"):
        opt.load_state_dict(bad)
    with pytest.raises(ValueError, match="the state is of a SGD optimizer, not Adam"):
        opt.load_state_dict(optim.SGD(params, lr=0.1).state_dict())
    with pytest.raises(ValueError, match="the state has 2 parameters, this optimizer 3"):
        opt.load_state_dict(dict(good, state=good["state"][:2]))
    with pytest.raises(ValueError, match=r"unexpected state keys \['momentum_buffer'\]"):
        opt.load_state_dict(dict(good, state=[dict(s, momentum_buffer=s["exp_avg"]) for s in good["state"]]))
    with pytest.raises(ValueError, match="invalid lr value: -1"):
        opt.load_state_dict(dict(good, hyperparameters=dict(good["hyperparameters"], lr=-1)))
    with pytest.raises(ValueError, match="expected a dict with keys 'optimizer', 'hyperparameters', 'state'"):
        opt.load_state_dict({"state": []})
    after = opt.state_dict()
    assert after["hyperparameters"] == before["hyperparameters"]
    for s0, s1 in zip(before["state"], after["state"]):
        assert s0.keys() == s1.keys()
        for k in s0:
            np.testing.assert_array_equal(s0[k], s1[k])


# --- all-or-nothing steps -------------------------------------------------------------
def snapshot(params, opt):
    return [p.numpy() for p in params], opt.state_dict()


def assert_unchanged(params, opt, snap):
    values, sd = snap
    for p, v in zip(params, values):
        np.testing.assert_array_equal(p.numpy(), v)
    for s0, s1 in zip(sd["state"], opt.state_dict()["state"]):
        assert s0.keys() == s1.keys()
        for k in s0:
            np.testing.assert_array_equal(s0[k], s1[k])


@pytest.mark.parametrize("name", ["SGD", "Adam", "Adagrad", "RMSprop"])
def test_bad_gradient_changes_nothing(backend, name):
    _, params = make_params()
    kw = {"lr": 0.1, "momentum": 0.9} if name in ("SGD", "RMSprop") else {}
    opt = getattr(optim, name)(params, **kw)
    set_grads(params, grads_for_step(0))
    opt.step()
    other = "numpy" if backend == "array_api_strict" else "array_api_strict"
    bad_grads = [
        (Tensor(np.ones((4, 3))), ValueError,
         r"'w0': gradient has shape \(4, 3\), expected the parameter's shape \(3, 4\)"),
        (Tensor(np.ones((3, 4)), dtype="float32"), TypeError,
         "'w0': gradient has dtype float32, expected the parameter's dtype float64"),
        (Tensor(np.ones((3, 4)), backend=other), ValueError,
         f"'w0': gradient is on backend '{other}', the parameter on '{backend}'"),
        (np.ones((3, 4)), TypeError, "'w0': expected a Tensor gradient, got ndarray"),
    ]
    for bad, error, message in bad_grads:
        set_grads(params, grads_for_step(1))
        snap = snapshot(params, opt)
        params[0].grad = bad
        with pytest.raises(error, match=message):
            opt.step()
        assert_unchanged(params, opt, snap)


def test_bad_gradient_on_a_later_parameter_changes_nothing(backend):
    """The first parameters have good gradients; the last one's is bad: nothing may move."""
    _, params = make_params()
    opt = optim.Adam(params)
    set_grads(params, grads_for_step(0))
    params[2].grad = Tensor(np.ones((2, 3)), dtype="float64")
    snap = snapshot(params, opt)
    with pytest.raises(ValueError, match=r"parameter 'w2': gradient has shape \(2, 3\)"):
        opt.step()
    assert_unchanged(params, opt, snap)
    assert all(s == {} for s in opt.state)


def test_failure_while_computing_changes_nothing(backend, monkeypatch):
    """Even an unexpected error in the middle of the updates leaves every parameter as it was."""
    _, params = make_params()
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    set_grads(params, grads_for_step(0))
    snap = snapshot(params, opt)
    real_update, calls = optim.SGD.update, []

    def failing_update(self, p, g, state, xp):
        calls.append(1)
        if len(calls) == 3:
            raise MemoryError("out of device memory")
        return real_update(self, p, g, state, xp)

    monkeypatch.setattr(optim.SGD, "update", failing_update)
    with pytest.raises(MemoryError):
        opt.step()
    assert len(calls) == 3
    assert_unchanged(params, opt, snap)


def test_model_moved_after_creating_the_optimizer(backend):
    other = "numpy" if backend == "array_api_strict" else "array_api_strict"
    model = Linear(3, 2, dtype="float64")
    opt = optim.Adam(model.named_parameters())
    for p in model.parameters():
        p.grad = tg.ones(*p.shape, dtype="float64")
    opt.step()
    model.to(other)
    for p in model.parameters():
        p.grad = tg.ones(*p.shape, dtype="float64", backend=other)
    with pytest.raises(ValueError, match=f"'weight': the parameter moved to backend '{other}' but its optimizer "
                                         f"state is on '{backend}'"):
        opt.step()


def test_model_converted_to_another_dtype_after_creating_the_optimizer(backend):
    model = Linear(3, 2)
    opt = optim.Adam(model.parameters())
    model(tg.randn(4, 3)).sum().backward()
    opt.step()
    model.double()
    model(tg.randn(4, 3, dtype="float64")).sum().backward()
    snap = snapshot(list(model.parameters()), opt)
    with pytest.raises(TypeError, match=r"Adam.step: parameter 'weight': the parameter is float64 but its optimizer "
                                        r"state 'exp_avg' is float32; create the optimizer after converting the model"):
        opt.step()
    assert_unchanged(list(model.parameters()), opt, snap)
    fresh = optim.Adam(model.parameters())
    fresh.step()
    assert all(p.dtype == "float64" for p in model.parameters())


def test_step_does_not_touch_the_host(monkeypatch):
    """As on a GPU: parameters on a non-CPU array_api_strict device refuse conversion to NumPy,
    and bool()/float()/int() of an array (each a device->host sync) raise."""
    xp = pytest.importorskip("array_api_strict")
    b = tg.get_backend("array_api_strict")
    device = xp.Device("device1")
    rng = np.random.default_rng(0)
    params = []
    for i, s in enumerate(SHAPES):
        p = Parameter(Tensor(rng.standard_normal(s), backend=b))
        p.data = xp.asarray(rng.standard_normal(s), device=device)
        params.append(p)
    Array = type(params[0].data)
    for dunder in ("__bool__", "__float__", "__int__", "__index__", "__complex__", "__array__"):
        monkeypatch.setattr(Array, dunder, lambda self, *a, **k: pytest.fail("synced with the host"), raising=False)
    for opt in (optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1),
                optim.Adam(params, weight_decay=0.1), optim.Adagrad(params, lr_decay=0.1, weight_decay=0.1),
                optim.RMSprop(params, momentum=0.9, centered=True, weight_decay=0.1)):
        for step in range(2):
            for p in params:
                p.grad = Tensor._wrap(xp.asarray(rng.standard_normal(p.shape), device=device), b)
            tg.nn.utils.clip_grad_norm_(params, 0.5)
            tg.nn.utils.clip_grad_value_(params, 0.1)
            opt.step()
        assert all(p.data.device == device for p in params)
        opt.zero_grad()


# --- construction -----------------------------------------------------------------------
def test_accepts_parameters_or_named_pairs(backend):
    model = Linear(3, 2)
    named = optim.SGD(model.named_parameters(), lr=0.1)
    plain = optim.SGD(model.parameters(), lr=0.1)
    assert named.param_names == ["weight", "bias"] == plain.param_names  # plain: from p.name
    custom = optim.SGD([("W", model.weight), model.bias], lr=0.1)
    assert custom.param_names == ["W", "bias"]
    anonymous = optim.SGD([Tensor([1.0], requires_grad=True)], lr=0.1)
    assert anonymous.param_names == ["params[0]"]


@pytest.mark.parametrize("make,error,message", [
    (lambda ps: optim.SGD([], lr=0.1), ValueError, "SGD: got an empty parameter list"),
    (lambda ps: optim.SGD(ps[0], lr=0.1), TypeError, "got a single Tensor; wrap it in a list"),
    (lambda ps: optim.SGD([ps[0], ps[0]], lr=0.1), ValueError, "parameter 'w0' appears twice"),
    (lambda ps: optim.Adam([{"params": ps}]), TypeError, "parameter groups .dicts. are not supported"),
    (lambda ps: optim.Adam([np.ones(3)]), TypeError,
     "expected tensors or .name, tensor. pairs, got ndarray at position 0"),
    (lambda ps: optim.Adam([ps[0] * 2]), ValueError, "can't optimize 'params\\[0\\]': it is not a leaf tensor"),
    (lambda ps: optim.Adam([Tensor([1, 2])]), TypeError, "expected a floating-point tensor, got int64"),
    (lambda ps: optim.SGD(ps, lr=-0.1), ValueError, "SGD: invalid lr value: -0.1"),
    (lambda ps: optim.SGD(ps, lr=0.1, nesterov=True), ValueError, "Nesterov momentum requires a momentum > 0"),
    (lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), ValueError, "zero dampening"),
    (lambda ps: optim.Adam(ps, betas=(0.9, 1.0)), ValueError,
     r"betas must be two numbers in \[0, 1\), got \(0.9, 1.0\)"),
    (lambda ps: optim.Adam(ps, eps=-1), ValueError, "Adam: invalid eps value: -1"),
    (lambda ps: optim.Adagrad(ps, lr_decay=-1), ValueError, "Adagrad: invalid lr_decay value: -1"),
    (lambda ps: optim.RMSprop(ps, alpha=-0.5), ValueError, "RMSprop: invalid alpha value: -0.5"),
])
def test_construction_errors(make, error, message):
    _, params = make_params()
    with pytest.raises(error, match=message):
        make(params)


FLAGS = {"nesterov", "centered"}
DEFAULTS = {"SGD": dict(lr=0.1), "Adam": {}, "Adagrad": {}, "RMSprop": {}}
HYPER_CASES = [(name, k) for name in DEFAULTS for k in getattr(optim, name).hyperparameters]


@pytest.mark.parametrize("name, key", HYPER_CASES, ids=[f"{n}-{k}" for n, k in HYPER_CASES])
def test_every_hyperparameter_of_the_wrong_type_is_named(name, key):
    """SGD(lr="0.1") and friends: a TypeError naming the hyperparameter, not a failure inside step()."""
    _, params = make_params()
    if key in FLAGS:
        bad, message = "yes", rf"^{name}: {key} must be True or False, got str 'yes'$"
    elif key == "betas":
        bad, message = (0.9, "0.999"), r"^Adam: beta2 must be a number, got str '0.999'$"
    else:
        bad, message = "0.1", rf"^{name}: {key} must be a number, got str '0.1'$"
    with pytest.raises(TypeError, match=message):
        getattr(optim, name)(params, **{**DEFAULTS[name], key: bad})
    opt = getattr(optim, name)(params, **DEFAULTS[name])
    before = getattr(opt, key)
    with pytest.raises(TypeError, match=message):      # and assigned later, as opt.lr = ...
        setattr(opt, key, bad)
    assert getattr(opt, key) == before


@pytest.mark.parametrize("make, error, message", [
    (lambda ps: optim.SGD(ps, lr=tg.tensor(0.1)), TypeError, r"^SGD: lr must be a number, got Tensor"),
    (lambda ps: optim.SGD(ps, lr=True), TypeError, r"^SGD: lr must be a number, got bool True$"),
    (lambda ps: optim.SGD(ps, lr=None), TypeError, r"^SGD: lr must be a number, got NoneType None$"),
    (lambda ps: optim.Adam(ps, betas=0.9), TypeError, r"^Adam: betas must be two numbers in \[0, 1\), got 0.9$"),
    (lambda ps: optim.Adam(ps, betas=(0.9, 0.99, 0.999)), TypeError, r"^Adam: betas must be two numbers"),
    (lambda ps: optim.RMSprop(ps, centered=2), TypeError, r"^RMSprop: centered must be True or False, got int 2$"),
])
def test_more_bad_hyperparameters(make, error, message):
    _, params = make_params()
    with pytest.raises(error, match=message):
        make(params)


def test_assigned_hyperparameters_are_checked_together_and_numpy_scalars_become_python_numbers(backend):
    _, params = make_params()
    opt = optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True)
    with pytest.raises(ValueError, match="Nesterov momentum requires a momentum > 0"):
        opt.momentum = 0
    assert opt.momentum == 0.9
    opt.lr = np.float32(0.5)      # array_api_strict (like CuPy) combines arrays with Python scalars only
    opt.momentum = np.float64(0.25)
    assert type(opt.lr) is float and type(opt.momentum) is float
    adam = optim.Adam(params, betas=[np.float64(0.5), 0.75])
    assert adam.betas == (0.5, 0.75) and all(type(b) is float for b in adam.betas)
    set_grads(params, grads_for_step(0))
    before = [p.numpy() for p in params]
    opt.step()
    adam.step()
    assert all(p.device == backend and not np.array_equal(p.numpy(), b) for p, b in zip(params, before))


@pytest.mark.parametrize("step, error, message", [
    (-1, ValueError, r"state 'step' must be at least 1 \(the number of steps taken\), got -1$"),
    (0, ValueError, r"state 'step' must be at least 1 \(the number of steps taken\), got 0$"),
    ("abc", TypeError, r"state 'step' must be an int \(the number of steps taken\), got str 'abc'$"),
    (2.7, TypeError, r"state 'step' must be an int \(the number of steps taken\), got float 2.7$"),
    (True, TypeError, r"state 'step' must be an int \(the number of steps taken\), got bool True$"),
    (None, TypeError, r"state 'step' must be an int \(the number of steps taken\), got NoneType None$"),
])
@pytest.mark.parametrize("name", ["Adam", "Adagrad", "RMSprop"])
def test_load_state_dict_refuses_a_bad_step_count(backend, name, step, error, message):
    """Accepted, step = -1 made Adam divide by 1 - beta1**0 = 0 at the next step."""
    _, params = make_params()
    opt = getattr(optim, name)(params)
    set_grads(params, grads_for_step(0))
    opt.step()
    snap = snapshot(params, opt)
    bad = opt.state_dict()
    bad["state"][1]["step"] = step
    with pytest.raises(error, match=rf"^{name}.load_state_dict: parameter 'w1': {message}"):
        opt.load_state_dict(bad)
    assert_unchanged(params, opt, snap)
    good = opt.state_dict()
    good["state"][1]["step"] = np.int64(7)  # a NumPy integer is a fine count
    opt.load_state_dict(good)
    assert opt.state[1]["step"] == 7 and type(opt.state[1]["step"]) is int
    opt.step()
    assert all(np.isfinite(p.numpy()).all() for p in params)


@pytest.mark.parametrize("change, message", [
    (lambda sd: sd.update(hyperparameters=5), "expected 'hyperparameters' to be a dict, got int"),
    (lambda sd: sd.update(state=5), r"expected 'state' to be a list \(one dict per parameter\), got int"),
    (lambda sd: sd["state"].__setitem__(0, [1, 2]), "parameter 'w0': expected its state to be a dict, got list"),
    (lambda sd: sd.update(param_names=5), "expected 'param_names' to be a list of names, got int"),
    (lambda sd: sd["hyperparameters"].update(betas=0.9), r"betas must be two numbers in \[0, 1\), got 0.9"),
])
def test_load_state_dict_refuses_malformed_containers(change, message):
    _, params = make_params()
    opt = optim.Adam(params)
    set_grads(params, grads_for_step(0))
    opt.step()
    snap = snapshot(params, opt)
    bad = opt.state_dict()
    change(bad)
    with pytest.raises((TypeError, ValueError), match=message):
        opt.load_state_dict(bad)
    assert_unchanged(params, opt, snap)


def test_zero_grad(backend):
    _, params = make_params()
    opt = optim.SGD(params, lr=0.1)
    set_grads(params, grads_for_step(2))  # w1 has no grad
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(params[0].grad.numpy(), np.zeros(SHAPES[0]))
    assert params[1].grad is None
    opt.zero_grad()
    assert all(p.grad is None for p in params)


def test_lr_change_applies_from_next_step(backend):
    p = Parameter(Tensor([1.0], dtype="float64"))
    opt = optim.SGD([p], lr=0.1)
    assert repr(opt) == "SGD(lr=0.1, momentum=0, dampening=0, nesterov=False, weight_decay=0)"
    p.grad = Tensor([1.0], dtype="float64")
    opt.lr = 0.25
    opt.step()
    np.testing.assert_array_equal(p.numpy(), [0.75])


def test_step_with_closure(backend):
    p = Parameter(Tensor([3.0], dtype="float64"))
    opt = optim.SGD([p], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == 9.0
    np.testing.assert_array_equal(p.numpy(), [3.0 - 0.25 * 6.0])
    assert opt.step() is None


def test_training_reduces_a_loss(backend):
    """An end-to-end use: Adam fits a linear map (the loss falls by orders of magnitude)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 3))
    Y = Tensor(X @ np.diag([1.0, -2.0, 0.5]), dtype="float32")
    X = Tensor(X, dtype="float32")
    model = Linear(3, 3)
    opt = optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(150):
        opt.zero_grad()
        loss = ((model(X) - Y) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 1e-3 * losses[0]
