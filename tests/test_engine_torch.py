"""The engine against PyTorch: random expression graphs give the same values and gradients.

A seeded generator writes a small program: leaves of shapes that broadcast against each
other ((B, N), (N,), (B, 1), ()), then a dozen ops drawn from the engine's whole vocabulary,
each taking earlier results (so subexpressions are shared and gradients fan out). The same
program runs in tinygrad_rnn and in PyTorch, in float64; every intermediate value and the
gradient of every leaf must agree to 1e-10.
"""
import types

import numpy as np
import pytest

import tinygrad_rnn as tg

torch = pytest.importorskip("torch")
F = torch.nn.functional

B, N = 3, 4
RTOL, ATOL = 1e-10, 1e-12

TG = types.SimpleNamespace(
    cat=lambda xs, dim: tg.concat(xs, dim), stack=lambda xs, dim: tg.stack(xs, dim), where=tg.where,
    linear=tg.linear, index=lambda a: tg.Tensor(a), amax=lambda x, dim, keep: x.max(dim=dim, keepdim=keep),
    embedding=lambda W, ids: tg.embedding(W, tg.Tensor(ids)), flip=lambda x: x[..., ::-1],
    leaf=lambda a: tg.Tensor(a, dtype="float64", requires_grad=True), const=lambda a: tg.Tensor(a, dtype="float64"),
    numpy=lambda t: t.numpy(), grad=lambda t: None if t.grad is None else t.grad.numpy())
TORCH = types.SimpleNamespace(
    cat=lambda xs, dim: torch.cat(xs, dim), stack=lambda xs, dim: torch.stack(xs, dim), where=torch.where,
    linear=F.linear, index=lambda a: torch.as_tensor(a), amax=lambda x, dim, keep: x.amax(dim=dim, keepdim=keep),
    embedding=lambda W, ids: F.embedding(torch.as_tensor(ids), W), flip=lambda x: x.flip(-1),
    leaf=lambda a: torch.tensor(a, dtype=torch.float64, requires_grad=True),
    const=lambda a: torch.tensor(a, dtype=torch.float64),
    numpy=lambda t: t.detach().numpy(), grad=lambda t: None if t.grad is None else t.grad.numpy())


# Each op: (name, arity, can_apply(shapes) -> bool, fn(lib, params, *xs)).
def _last_is_n(*shapes):
    return all(len(s) >= 1 and s[-1] == N for s in shapes)


OPS = [
    ("add", 2, None, lambda L, p, x, y: x + y),
    ("sub", 2, None, lambda L, p, x, y: x - y),
    ("mul", 2, None, lambda L, p, x, y: x * y),
    ("div", 2, None, lambda L, p, x, y: x / (y * y + 1.0)),
    ("rdiv", 1, None, lambda L, p, x: 2.0 / (x * x + 0.5)),
    ("pow_tensor", 2, None, lambda L, p, x, y: x.sigmoid() ** y.tanh()),
    ("pow_const", 1, None, lambda L, p, x: x.tanh() ** 3 + (x * x + 1.0) ** 0.5),
    ("rpow", 1, None, lambda L, p, x: 2.0 ** x.tanh()),
    ("tanh", 1, None, lambda L, p, x: x.tanh()),
    ("sigmoid", 1, None, lambda L, p, x: (x * 2.0).sigmoid()),
    ("exp", 1, None, lambda L, p, x: x.tanh().exp()),
    ("log", 1, None, lambda L, p, x: (x * x + 0.1).log()),
    ("sqrt", 1, None, lambda L, p, x: (x * x + 0.3).sqrt()),
    ("relu_abs", 1, None, lambda L, p, x: x.relu() - x.abs() * 0.5),
    ("neg", 1, None, lambda L, p, x: -x),
    ("clip", 1, None, lambda L, p, x: x.clip(-0.7, 0.4)),
    ("sum", 1, lambda s: len(s) == 2, lambda L, p, x: x.sum(dim=p["axis"], keepdim=True)),
    ("mean", 1, lambda s: len(s) == 2, lambda L, p, x: x.mean(dim=p["axis"], keepdim=True)),
    ("max", 1, lambda s: len(s) == 2, lambda L, p, x: L.amax(x, p["axis"], True)),
    ("sum_all", 1, None, lambda L, p, x: x.sum() * 0.3),
    ("softmax", 1, lambda s: len(s) >= 1, lambda L, p, x: x.softmax(dim=-1)),
    ("log_softmax", 1, lambda s: len(s) >= 1, lambda L, p, x: x.log_softmax(dim=-1)),
    ("softmax_T", 1, lambda s: len(s) == 2, lambda L, p, x: x.T.softmax(dim=-1).T),
    ("permute", 1, lambda s: len(s) == 2, lambda L, p, x: x.permute(1, 0).tanh().permute(1, 0)),
    ("matmul", 1, _last_is_n, lambda L, p, x: x @ L.W),
    ("matmul_vec", 1, _last_is_n, lambda L, p, x: (x @ L.v).reshape(x.shape[:-1] + (1,))),
    ("linear", 1, _last_is_n, lambda L, p, x: L.linear(x, L.W, L.b)),
    ("linear_nobias", 1, _last_is_n, lambda L, p, x: L.linear(x, L.W)),
    ("gather_last", 1, lambda s: len(s) >= 1, lambda L, p, x: x[..., L.index(p["idx"][:x.shape[-1]] % x.shape[-1])]),
    ("gather_rows", 1, lambda s: len(s) == 2, lambda L, p, x: x[L.index(p["rows"] % x.shape[0])]),
    ("pick_points", 1, lambda s: s == (B, N), lambda L, p, x: x[L.index(p["r"]), L.index(p["c"])].reshape(B, N)),
    ("flip", 1, lambda s: len(s) >= 1, lambda L, p, x: L.flip(x) * 0.5),
    ("time_slice", 1, lambda s: s == (B, N), lambda L, p, x: x[:, p["t"]].reshape(B, 1) * x),
    ("cat_split", 2, lambda s, t: s == t and len(s) >= 1,
     lambda L, p, x, y: L.cat([x, y], -1).split(x.shape[-1], dim=-1)[p["piece"]] * 1.5),
    ("cat_chunk", 2, lambda s, t: s == t and len(s) >= 1,
     lambda L, p, x, y: L.cat([x, x * y], -1).chunk(2, dim=-1)[1] - x),
    ("stack", 2, lambda s, t: s == t, lambda L, p, x, y: (lambda z: z[0] * z[1] + z[1])(L.stack([x, y], 0))),
    ("unbind", 1, lambda s: s == (B, N),
     lambda L, p, x: L.stack([r * (i + 1.0) for i, r in enumerate(x.unbind(0)) if i != p["skip"]]
                             + [x.unbind(0)[0]], 0)),
    ("where", 2, None, lambda L, p, x, y: L.where(x > y, x * 2.0, y)),
    ("reshape", 1, lambda s: s == (B, N), lambda L, p, x: x.reshape(N, B).tanh().reshape((B, N))),
    ("embedding", 1, lambda s: s == (B, N), lambda L, p, x: x * L.embedding(L.E, p["ids"]).sum(dim=1)),
]


def make_program(seed, n_ops=12):
    """A random program: a list of (op index, input indices, params) over a pool of shapes."""
    rng = np.random.default_rng(seed)
    shapes = [(B, N), (N,), (B, 1), ()]
    shapes = shapes[:1] + [s for s in shapes[1:] if rng.random() < 0.7]
    leaves = [rng.standard_normal(s) for s in shapes]
    program = []
    while len(program) < n_ops:
        k = int(rng.integers(len(OPS)))
        name, arity, ok, _ = OPS[k]
        # prefer recent results, so the graph gets deep, but reuse older ones too (fan-out)
        weights = np.arange(1, len(shapes) + 1, dtype=float) ** 2
        picks = [int(i) for i in rng.choice(len(shapes), size=arity, p=weights / weights.sum())]
        in_shapes = [shapes[i] for i in picks]
        if ok is not None and not ok(*in_shapes):
            continue
        params = {"axis": int(rng.integers(2)), "idx": rng.integers(0, N, N), "rows": rng.integers(0, B, B),
                  "r": rng.integers(-B, B, B * N), "c": rng.integers(0, N, B * N), "t": int(rng.integers(N)),
                  "piece": int(rng.integers(2)), "skip": int(rng.integers(B)), "ids": rng.integers(0, 5, (B, 2))}
        out_shape = np.broadcast_shapes(*in_shapes) if arity == 2 else None
        program.append((k, picks, params))
        shapes.append(out_shape if out_shape is not None else _shape_of(k, in_shapes[0], params))
    weights = [rng.standard_normal(s) for s in shapes]
    return leaves, program, weights


def _shape_of(k, shape, params):
    """Output shape of a one-input op: all keep their input's shape but the reductions."""
    name = OPS[k][0]
    if name in ("sum", "mean", "max"):
        return tuple(1 if i == params["axis"] else n for i, n in enumerate(shape))
    if name == "sum_all":
        return ()
    return shape


def run(lib, leaves, program, weights, extra):
    L = types.SimpleNamespace(**vars(lib), W=lib.leaf(extra["W"]), b=lib.leaf(extra["b"]), v=lib.leaf(extra["v"]),
                              E=lib.leaf(extra["E"]))
    values = [lib.leaf(a) for a in leaves]
    inputs = list(values)
    for k, picks, params in program:
        values.append(OPS[k][3](L, params, *[values[i] for i in picks]))
    loss = sum((v * lib.const(w)).sum() for v, w in zip(values[len(leaves):], weights[len(leaves):]))
    loss.backward()
    grads = [lib.grad(t) for t in inputs + [L.W, L.b, L.v, L.E]]
    return [lib.numpy(v) for v in values] + [lib.numpy(loss)], grads


@pytest.mark.parametrize("seed", range(30))
def test_random_expression_graphs_match_pytorch(backend, seed):
    leaves, program, weights = make_program(seed)
    rng = np.random.default_rng(1000 + seed)
    extra = {"W": rng.standard_normal((N, N)) * 0.5, "b": rng.standard_normal(N), "v": rng.standard_normal(N),
             "E": rng.standard_normal((5, N))}
    ours, our_grads = run(TG, leaves, program, weights, extra)
    theirs, their_grads = run(TORCH, leaves, program, weights, extra)
    names = [f"leaf{i}" for i in range(len(leaves))] + [OPS[k][0] for k, _, _ in program] + ["loss"]
    for name, a, b in zip(names, ours, theirs):
        assert a.shape == b.shape, name
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=f"value of {name}")
    for i, (a, b) in enumerate(zip(our_grads, their_grads)):
        if a is None or b is None:       # a leaf no op used: neither side has a gradient
            assert a is None and b is None, f"gradient {i}: {a} vs {b}"
            continue
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=f"gradient of leaf {i}")


def test_programs_cover_the_vocabulary():
    """The 30 seeds above exercise every op of the list at least once."""
    used = {OPS[k][0] for seed in range(30) for k, _, _ in make_program(seed)[1]}
    assert used == {name for name, *_ in OPS}


# ------------------------------------------------------------------ single ops with torch's conventions
def _pair(a, dtype="float64"):
    return (tg.Tensor(a, dtype=dtype, requires_grad=True),
            torch.tensor(a, dtype=getattr(torch, dtype), requires_grad=True))


def test_lerp_like_torch(backend):
    """torch.lerp(x, e, w) with a tensor weight (broadcast) and with a number: values and gradients."""
    rng = np.random.default_rng(5)
    xa, ea, wa = rng.standard_normal((3, 4)), rng.standard_normal((4,)), rng.standard_normal((3, 1))
    (x, tx), (e, te), (w, tw) = _pair(xa), _pair(ea), _pair(wa)
    for ours, theirs in ((x.lerp(e, w), tx.lerp(te, tw)), (x.lerp(e, 0.3), tx.lerp(te, 0.3))):
        np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=RTOL, atol=ATOL)
        ours.sum().backward()
        theirs.sum().backward()
    for ours, theirs in ((x, tx), (e, te), (w, tw)):
        np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=RTOL, atol=ATOL)


def test_max_ties_split_like_torch_amax(backend):
    a = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    x, xt = _pair(a)
    x.max(axis=1).sum().backward()
    xt.amax(dim=1).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-15)


def test_kinks_follow_torch(backend):
    """relu, abs and clip at their kinks: the same (sub)gradient as PyTorch."""
    a = np.array([-1.0, 0.0, 0.5, 1.0])
    x, xt = _pair(a)
    (x.relu() + x.abs() + x.clip(0.0, 0.5)).sum().backward()
    (xt.relu() + xt.abs() + xt.clamp(0.0, 0.5)).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), xt.grad.numpy())


def test_pow_at_zero_like_torch(backend):
    a, e = np.array([0.0, 0.0, 2.0]), np.array([0.0, 2.0, 0.0])
    x, xt = _pair(a)
    w, wt = _pair(e)
    (x ** w).sum().backward()
    (xt ** wt).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), xt.grad.numpy())
    np.testing.assert_array_equal(w.grad.numpy(), wt.grad.numpy())


@pytest.mark.parametrize("sx, sw", [((4,), (4, 2)), ((3, 4), (4,)), ((4,), (4,)), ((2, 3, 4), (4,)),
                                    ((4,), (2, 4, 3)), ((2, 1, 3, 4), (3, 4, 2))])
def test_matmul_shapes_like_torch(backend, sx, sw):
    rng = np.random.default_rng(0)
    (x, xt), (w, wt) = _pair(rng.standard_normal(sx)), _pair(rng.standard_normal(sw))
    y, yt = x @ w, xt @ wt
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-12)
    g = rng.standard_normal(yt.shape)
    y.backward(g)
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(w.grad.numpy(), wt.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_huge_logits_like_torch(backend, dtype):
    a = np.array([[1e4, -1e4, 0.0, 3.0]])
    for op in ("log_softmax", "softmax", "sigmoid", "tanh"):
        x, xt = _pair(a, dtype)
        y = getattr(x, op)(-1) if "softmax" in op else getattr(x, op)()
        yt = getattr(xt, op)(-1) if "softmax" in op else getattr(xt, op)()
        np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-6, atol=1e-30)
        g = np.array([[0.5, -1.0, 2.0, 1.0]])
        y.backward(g)
        yt.backward(torch.tensor(g, dtype=getattr(torch, dtype)))
        np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-5, atol=1e-30)
