"""The closed-form stacked MLP (dcnn.problems.stacked) gives what the general vmap path gives:
outputs, values and gradients to rounding, for every activation, loss, output width, bias
setting, dtype, uneven shards and mini-batch views; modules it does not cover fall back."""
import copy

import numpy as np
import pytest
import torch
from torch import nn

from dcnn.problems import FlatModel, LocalProblems, make_regularizer
from dcnn.problems.stacked import mlp_layout

ACT = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "relu": nn.ReLU}


def _problem(hidden, act, loss, outputs, bias, dtype=torch.float64, counts=(7, 4, 9)):
    g = torch.Generator().manual_seed(1)
    d, layers, w = 3, [], 3
    for h in hidden:
        layers += [nn.Linear(w, h, bias=bias, dtype=torch.float64), ACT[act]()]
        w = h
    layers.append(nn.Linear(w, outputs, bias=bias, dtype=torch.float64))
    torch.manual_seed(0)
    model = FlatModel(nn.Sequential(*layers), dtype=dtype)
    shards = []
    for m in counts:
        x = torch.randn(m, d, generator=g, dtype=torch.float64)
        if loss == "squared":
            t = torch.randn(m, outputs, generator=g, dtype=torch.float64)
            task = "regression"
        else:
            k = 2 if outputs == 1 else outputs
            c = torch.randint(0, k, (m,), generator=g)
            t = c[:, None].double() if outputs == 1 else nn.functional.one_hot(c, k).double()
            task = "binary" if outputs == 1 else "multiclass"
        shards.append((x, t))
    return LocalProblems(model=model, shards=shards, loss=loss, task=task,
                         n_total=sum(counts) + 5, regularizer=make_regularizer("l2", lam=0.0))


def _general(prob):
    """The same problem on the vmap path."""
    other = copy.copy(prob)
    other._mlp = None
    return other


CASES = [(hidden, act, loss, outputs, bias)
         for hidden in ([], [5], [4, 3])
         for act in ("tanh", "sigmoid", "relu")
         for loss, outputs in (("squared", 1), ("squared", 2), ("cross_entropy", 1),
                               ("cross_entropy", 3))
         for bias in (True, False)
         if not (hidden == [] and act != "tanh")]       # no activation in a linear model


@pytest.mark.parametrize("hidden,act,loss,outputs,bias", CASES)
def test_stacked_equals_the_general_path(hidden, act, loss, outputs, bias):
    prob = _problem(hidden, act, loss, outputs, bias)
    assert prob._mlp is not None
    W = prob.model.w0.expand(3, -1) + 0.3 * torch.randn(3, prob.n_params, dtype=torch.float64,
                                                        generator=torch.Generator().manual_seed(2))
    ref = _general(prob)
    v, g = prob.value_and_grad(W)
    v0, g0 = ref.value_and_grad(W)
    torch.testing.assert_close(v, v0, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(g, g0, rtol=1e-11, atol=1e-13)
    out, out0 = prob.outputs(W), ref.outputs(W)
    torch.testing.assert_close(out * prob.mask[..., None], out0 * prob.mask[..., None],
                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_batch_views_and_dtypes(dtype):
    prob = _problem([4], "tanh", "cross_entropy", 3, True, dtype=dtype, counts=(6, 6, 6))
    W = prob.model.w0.expand(3, -1).clone()
    view = prob.batch(torch.tensor([[0, 2, 5], [1, 3, 4], [5, 0, 4]]), torch.tensor([3, 3, 3]))
    assert view._mlp is not None
    v, g = view.value_and_grad(W)
    v0, g0 = _general(view).value_and_grad(W)
    tol = dict(rtol=1e-12, atol=1e-14) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(v, v0, **tol)
    torch.testing.assert_close(g, g0, **tol)
    assert g.dtype == dtype


def test_gradient_against_finite_differences():
    prob = _problem([5, 4], "sigmoid", "squared", 2, True)
    W = prob.model.w0.expand(3, -1).clone()
    _, G = prob.value_and_grad(W)
    rng = np.random.default_rng(0)
    for _ in range(5):
        D = torch.from_numpy(rng.normal(size=W.shape))
        h = 1e-6
        fd = (prob.value_and_grad(W + h * D)[0] - prob.value_and_grad(W - h * D)[0]) / (2 * h)
        torch.testing.assert_close(fd, (G * D).sum(1), rtol=1e-7, atol=1e-10)


class _TwoBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 2), nn.Linear(3, 2)

    def forward(self, x):
        return self.a(x) + self.b(x)


@pytest.mark.parametrize("module", [
    _TwoBranch(),
    nn.Sequential(nn.Linear(3, 4), nn.GELU(), nn.Linear(4, 1)),       # another activation
    nn.Sequential(nn.Linear(3, 4), nn.Sequential(nn.Tanh(), nn.Linear(4, 1))),   # nested
    nn.Sequential(nn.Tanh(), nn.Linear(3, 1)),                        # not a Linear first
    nn.Sequential(nn.Unflatten(1, (1, 3)), nn.Conv1d(1, 1, 2), nn.Flatten(), nn.Linear(2, 1)),
], ids=["two-branch", "gelu", "nested", "act-first", "cnn"])
def test_other_modules_take_the_general_path(module):
    model = FlatModel(module)
    assert mlp_layout(model.module, model.names, model.sizes) is None


@pytest.mark.parametrize("act,loss,outputs", [("tanh", "squared", 2), ("sigmoid", "cross_entropy", 1),
                                              ("relu", "cross_entropy", 3)])
def test_hessian_vector_products_equal_the_general_path(act, loss, outputs):
    prob = _problem([4, 3], act, loss, outputs, True)
    g = torch.Generator().manual_seed(3)
    W = prob.model.w0.expand(3, -1) + 0.2 * torch.randn(3, prob.n_params, generator=g,
                                                        dtype=torch.float64)
    V = torch.randn(W.shape, generator=g, dtype=torch.float64)
    torch.testing.assert_close(prob.hvp(W, V), _general(prob).hvp(W, V), rtol=1e-10,
                               atol=1e-12)
    # and a difference of gradients along V (second order accurate)
    h = 1e-5
    fd = (prob.gradients(W + h * V) - prob.gradients(W - h * V)) / (2 * h)
    torch.testing.assert_close(prob.hvp(W, V), fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("hidden,act,loss,outputs,bias", [
    ([], "tanh", "squared", 1, True), ([4, 3], "tanh", "squared", 2, True),
    ([5], "sigmoid", "cross_entropy", 1, False), ([4, 3], "relu", "cross_entropy", 3, True)])
def test_jacobians_jvp_vjp_and_scores_equal_the_general_path(hidden, act, loss, outputs, bias):
    prob = _problem(hidden, act, loss, outputs, bias)
    ref = _general(prob)
    g = torch.Generator().manual_seed(4)
    W = prob.model.w0.expand(3, -1) + 0.2 * torch.randn(3, prob.n_params, generator=g,
                                                        dtype=torch.float64)
    D = torch.randn(W.shape, generator=g, dtype=torch.float64)
    E = torch.randn(3, prob.X.shape[1] * outputs, generator=g, dtype=torch.float64)
    tol = dict(rtol=1e-11, atol=1e-13)
    J = prob.jacobians(W)
    torch.testing.assert_close(J, ref.jacobians(W), **tol)
    torch.testing.assert_close(prob.jvp(W, D), ref.jvp(W, D), **tol)
    torch.testing.assert_close(prob.vjp(W, E), ref.vjp(W, E), **tol)
    # the products are the Jacobian's (padded rows are zero in both)
    torch.testing.assert_close(prob.jvp(W, D), torch.einsum("arp,ap->ar", J, D), **tol)
    Xt, Tt = prob.X[0, :5], prob.T[0, :5]
    torch.testing.assert_close(prob.scores_on(W, Xt, Tt), ref.scores_on(W, Xt, Tt), **tol)


def test_shared_layers_and_hooks():
    """A shared activation instance is walked at each of its places (named_children would skip
    it); a reused Linear and a module with a forward hook take the general path."""
    act = nn.Tanh()
    torch.manual_seed(0)
    shared = nn.Sequential(nn.Linear(3, 4, dtype=torch.float64), act,
                           nn.Linear(4, 4, dtype=torch.float64), act,
                           nn.Linear(4, 1, dtype=torch.float64))
    model = FlatModel(shared)
    layout = mlp_layout(model.module, model.names, model.sizes)
    assert [s[0] for s in layout.layers] == ["linear", "tanh", "linear", "tanh", "linear"]
    g = torch.Generator().manual_seed(5)
    x, t = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randn(6, 1, generator=g,
                                                                             dtype=torch.float64)
    prob = LocalProblems(model=model, shards=[(x, t)], loss="squared", task="regression",
                         n_total=6, regularizer=make_regularizer("l2", lam=0.0))
    W = model.w0[None]
    torch.testing.assert_close(prob.value_and_grad(W)[1], _general(prob).value_and_grad(W)[1],
                               rtol=1e-12, atol=1e-14)
    lin = nn.Linear(3, 3)
    reused = FlatModel(nn.Sequential(lin, nn.Tanh(), lin))
    assert mlp_layout(reused.module, reused.names, reused.sizes) is None
    hooked = nn.Sequential(nn.Linear(3, 2), nn.Tanh(), nn.Linear(2, 1))
    hooked[1].register_forward_hook(lambda m, i, o: o * 2)
    fm = FlatModel(hooked)
    assert mlp_layout(fm.module, fm.names, fm.sizes) is None
