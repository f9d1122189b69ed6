"""The 1-D CNN: its flat view is the module (forward and gradient), its Jacobians match finite
differences, bad sizes are one-line ConfigErrors, and NEXT runs it on MNIST-1D."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dcnn
from dcnn.config import load_config
from dcnn.errors import ConfigError
from dcnn.problems import FlatModel, LocalProblems, cnn, make_regularizer

from conftest import error_of

D, O = 12, 3


def _shards(rng, sizes, loss):
    shards = []
    for m in sizes:
        X = rng.normal(size=(m, D))
        T = rng.normal(size=(m, O)) if loss == "squared" else \
            np.eye(O)[rng.integers(0, O, size=m)]
        shards.append((X, T))
    return shards


def _problem(loss, sizes=(5, 3), activation="tanh", **arch):
    net = cnn(n_inputs=D, n_outputs=O, activation=activation, seed=3,
              **{"channels": [2, 3], "kernel": [3, 3], **arch})
    flat = FlatModel(net)
    task = "regression" if loss == "squared" else "multiclass"
    problem = LocalProblems(model=flat, shards=_shards(np.random.default_rng(0), sizes, loss),
                            loss=loss, task=task, n_total=sum(sizes),
                            regularizer=make_regularizer("none"))
    return net, problem


def test_default_is_the_mnist1d_paper_cnn():
    """Greydanus & Kobak's CNN: 3 conv layers of 25 channels, kernels 5/3/3, stride 2,
    padding 1, on 40 features (lengths 19, 10, 5): 5,210 parameters."""
    net = cnn(n_inputs=40, n_outputs=10, activation="relu")
    assert sum(p.numel() for p in net.parameters()) == 150 + 1900 + 1900 + 1260
    assert net(torch.zeros(7, 40, dtype=torch.float64)).shape == (7, 10)
    one_kernel = cnn(n_inputs=40, n_outputs=10, kernel=5)   # lengths 19, 9, 4
    assert sum(p.numel() for p in one_kernel.parameters()) == 150 + 3150 + 3150 + 1010


def test_seeded_and_cast_like_the_mlp():
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    a, b = cnn(n_inputs=D, n_outputs=O, seed=5), cnn(n_inputs=D, n_outputs=O, seed=5)
    assert torch.equal(before, torch.random.get_rng_state())
    c32 = cnn(n_inputs=D, n_outputs=O, seed=5, dtype=torch.float32)
    for p, q, r in zip(a.parameters(), b.parameters(), c32.parameters()):
        assert torch.equal(p, q) and r.dtype == torch.float32 and torch.equal(r, p.float())
    assert not torch.equal(next(cnn(n_inputs=D, n_outputs=O, seed=6).parameters()),
                           next(a.parameters()))


@pytest.mark.parametrize("loss", ["squared", "cross_entropy"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_flat_model_is_the_module(loss, activation):
    """Forward and gradient of every agent (vmapped over agents) equal the module's own,
    with the loss written here with torch.nn.functional, to 1e-12."""
    net, problem = _problem(loss, activation=activation, stride=1, padding=0)
    flat = problem.model
    W = flat.w0 + 0.2 * torch.randn(problem.n_agents, flat.n_params, dtype=torch.float64,
                                    generator=torch.Generator().manual_seed(1))
    outs, grads = problem.outputs(W), problem.gradients(W)
    for a, (X, T) in enumerate(_shards(np.random.default_rng(0), (5, 3), loss)):
        module = flat.load_into(W[a], cnn(n_inputs=D, n_outputs=O, activation=activation,
                                          channels=[2, 3], kernel=[3, 3], stride=1,
                                          padding=0))
        x, t = torch.as_tensor(X), torch.as_tensor(T)
        out = module(x)
        torch.testing.assert_close(outs[a, :len(x)], out, atol=1e-12, rtol=0)
        total = F.mse_loss(out, t, reduction="sum") if loss == "squared" else \
            F.cross_entropy(out, t.argmax(1), reduction="sum")
        (total / problem.n_total).backward()
        g = torch.cat([p.grad.reshape(-1) for p in module.parameters()])
        torch.testing.assert_close(grads[a], g, atol=1e-12, rtol=0)


def test_jacobians_match_finite_differences_and_products():
    _, p = _problem("squared", sizes=(4, 2))
    W = p.model.w0 + 0.3 * torch.randn(p.n_agents, p.n_params, dtype=torch.float64,
                                       generator=torch.Generator().manual_seed(2))
    J, h = p.jacobians(W), 1e-6
    fd = torch.empty_like(J)
    for k in range(p.n_params):
        e = torch.zeros(p.n_params, dtype=torch.float64)
        e[k] = h
        # residual e = T - f, so d e / d w = -J
        fd[:, :, k] = -(p.residuals(W + e) - p.residuals(W - e)) / (2 * h)
    assert float((J - fd).abs().max() / J.abs().max()) < 1e-6
    assert float(J[1, 2 * O:].abs().max()) == 0.0          # padded rows of the short shard
    Dir = torch.randn(W.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    E = torch.randn(p.n_agents, J.shape[1], dtype=torch.float64,
                    generator=torch.Generator().manual_seed(4)) * p.mask.repeat_interleave(O, 1)
    torch.testing.assert_close(p.jvp(W, Dir), torch.einsum("amp,ap->am", J, Dir), atol=1e-12,
                               rtol=1e-10)
    torch.testing.assert_close(p.vjp(W, E), torch.einsum("amp,am->ap", J, E), atol=1e-12,
                               rtol=1e-10)


@pytest.mark.parametrize("arch, fragments", [
    (dict(channels=[]), ["model.channels", "[]"]),
    (dict(channels=[2, 0]), ["model.channels", "[2, 0]"]),
    (dict(channels="25"), ["model.channels", "'25'"]),
    (dict(kernel=0), ["model.kernel", "0"]),
    (dict(kernel=[3, 0]), ["model.kernel", "[3, 0]"]),
    (dict(kernel=[5, 3, 3]), ["3 kernel sizes", "2 conv layers", "one per layer"]),
    (dict(stride=0), ["model.stride", "0"]),
    (dict(padding=-1), ["model.padding", "-1"]),
    (dict(activation="gelu"), ["'gelu'", "tanh"]),
    (dict(channels=[2, 2, 2], kernel=5), ["12 input features", "12 -> 5 -> 2 -> 0",
                                          "fewer layers"]),
])
def test_bad_sizes_are_one_line_config_errors(arch, fragments):
    kw = {"n_inputs": D, "n_outputs": O, "channels": [2, 3], "kernel": 3, **arch}
    error_of(lambda: cnn(**kw), *fragments, kind=ConfigError)


def _mnist1d_cnn(*extra):
    return load_config(None, ["data.name='mnist1d'", "data.samples=200", "model.name='cnn'",
                              "model.channels=[4, 4]", "model.kernel=[5, 3]", "run.agents=4",
                              "run.iterations=4", "run.eval_every=2", "run.progress=false",
                              "run.reference=false", *extra])


def test_config_reaches_the_builder():
    error_of(lambda: dcnn.run_experiment(_mnist1d_cnn("model.channels=[4, 4, 4]"), out=None,
                                         verbose=False),
             "model.kernel = [5, 3]", "3 conv layers", kind=ConfigError)
    cfg = load_config(None, ["data.name='iris'", "model.name='cnn'", "model.kernel=7",
                             "run.progress=false", "run.reference=false"])
    error_of(lambda: dcnn.run_experiment(cfg, out=None, verbose=False),
             "4 input features are too short", "4 -> 0", kind=ConfigError)


@pytest.mark.parametrize("surrogate", ["pl", "fl"])
@pytest.mark.parametrize("loss", ["squared", "cross_entropy"])
def test_next_trains_the_cnn_on_mnist1d(surrogate, loss):
    res = dcnn.run_experiment(_mnist1d_cnn(f"algorithm.surrogate='{surrogate}'",
                                           f"model.loss='{loss}'"), out=None, verbose=False)
    U = res.history.column("objective")
    assert res.summary["dataset"] == "mnist1d" and res.summary["parameters"] == 486
    assert all(math.isfinite(u) for u in U) and U[-1] < U[0], U


def test_docstring_examples():
    import doctest
    import dcnn.problems.models as models
    assert doctest.testmod(models).failed == 0
