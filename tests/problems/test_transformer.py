"""The one-block transformer: equal to PyTorch's own pre-LN encoder layer with the same
weights, a pure function of its flat parameters (FlatModel, vmap), exact gradients through
LocalProblems, seeded initialisation, one-line errors."""
import numpy as np
import pytest
import torch
from torch import nn

from dcnn.errors import ConfigError
from dcnn.problems import FlatModel, LocalProblems, make_regularizer
from dcnn.problems.transformer import is_token_param, transformer

from conftest import error_of


def _net(**kw):
    args = dict(n_inputs=12, n_outputs=3, tokens=4, d_model=8, heads=2, ffn=6, seed=0)
    return transformer(**{**args, **kw})


def _perturbed(net, scale=0.3, seed=1):
    """A copy with every parameter moved (LayerNorm weights off 1, biases off 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return net


def _torch_reference(net, x):
    """The same function built from nn.TransformerEncoderLayer (norm_first, GELU, no dropout)."""
    d = net.d_model
    layer = nn.TransformerEncoderLayer(d, net.heads, dim_feedforward=net.ffn, dropout=0.0,
                                       activation="gelu", batch_first=True, norm_first=True,
                                       dtype=torch.float64)
    with torch.no_grad():
        layer.self_attn.in_proj_weight.copy_(torch.cat([net.q.weight, net.k.weight,
                                                        net.v.weight]))
        layer.self_attn.in_proj_bias.copy_(torch.cat([net.q.bias, torch.zeros_like(net.q.bias),
                                                      net.v.bias]))
        layer.self_attn.out_proj.weight.copy_(net.o.weight)
        layer.self_attn.out_proj.bias.copy_(net.o.bias)
        for mine, theirs in ((net.fc1, layer.linear1), (net.fc2, layer.linear2),
                             (net.ln1, layer.norm1), (net.ln2, layer.norm2)):
            theirs.weight.copy_(mine.weight)
            theirs.bias.copy_(mine.bias)
    layer.eval()
    tok = x.reshape(len(x), net.tokens, net.features)
    h = net.embed(tok) + net.pos
    z = net.lnf(layer(h))
    return net.head(z.mean(dim=1))


def test_equals_pytorch_encoder_layer():
    net = _perturbed(_net())
    x = torch.randn(5, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    x2 = x.clone()
    x2[:, [0, 3]] = x[:, [3, 0]]
    with torch.no_grad():
        out, ref, swapped = net(x), _torch_reference(net, x), net(x2)
    assert out.shape == (5, 3)
    assert float((out - ref).abs().max()) < 1e-12
    # tokens are read row-major: moving a feature to another token changes the output
    assert float((swapped - out).abs().max()) > 1e-6


def test_seeded_initialisation_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b, c = _net(seed=5), _net(seed=5), _net(seed=6)
    assert torch.equal(torch.random.get_rng_state(), state)
    wa, wb, wc = (FlatModel(n).w0 for n in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    f32 = _net(seed=5, dtype=torch.float32)
    assert next(f32.parameters()).dtype == torch.float32
    assert float((FlatModel(f32, dtype=torch.float32).w0.double() - wa).abs().max()) < 1e-6
    names = [n for n, _ in a.named_parameters()]
    assert [n for n in names if not is_token_param(n)] == ["head.weight", "head.bias"]
    d, f, ffn, L, O = 8, 3, 6, 4, 3
    assert FlatModel(a).n_params == (f * d + d) + L * d + 2 * d + 4 * (d * d + d) - d + 2 * d \
        + (d * ffn + ffn) + (ffn * d + d) + 2 * d + (d * O + O)


def test_flat_model_and_vmap():
    net = _perturbed(_net())
    fm = FlatModel(net)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 12, dtype=torch.float64, generator=g)
    W = fm.w0 + 0.2 * torch.randn(3, fm.n_params, dtype=torch.float64, generator=g)
    stacked = torch.func.vmap(fm.apply)(W, x.expand(3, -1, -1))
    for a in range(3):
        loaded = fm.load_into(W[a], _net())
        with torch.no_grad():
            direct = loaded(x)
        assert float((stacked[a] - direct).abs().max()) < 1e-13
        assert float((fm.apply(W[a], x) - direct).abs().max()) < 1e-13
    assert float((stacked[0] - stacked[1]).abs().max()) > 1e-3     # w really is used


def test_local_problems_gradients_are_exact():
    """vmapped gradients of LocalProblems = autograd of the module = finite differences."""
    net = _perturbed(_net(n_outputs=2))
    fm = FlatModel(net)
    rng = np.random.default_rng(0)
    shards = [(rng.normal(size=(m, 12)), rng.normal(size=(m, 2))) for m in (3, 5)]
    prob = LocalProblems(model=fm, shards=shards, loss="squared", task="regression",
                         n_total=8, regularizer=make_regularizer("none"))
    W = torch.stack([fm.w0, fm.w0 + 0.1])
    G = prob.gradients(W)
    for a, (x, t) in enumerate(shards):
        w = W[a].clone().requires_grad_(True)
        xt, tt = torch.as_tensor(x), torch.as_tensor(t)
        cost = lambda v: ((fm.apply(v, xt) - tt) ** 2).sum() / 8   # noqa: E731
        (g,) = torch.autograd.grad(cost(w), w)
        assert float((G[a] - g).abs().max()) < 1e-13
        d = torch.randn(fm.n_params, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(a))
        eps = 1e-5
        with torch.no_grad():
            fd = (cost(W[a] + eps * d) - cost(W[a] - eps * d)) / (2 * eps)
        assert abs(float(fd - G[a] @ d)) < 1e-7 * max(1.0, abs(float(fd)))


@pytest.mark.parametrize("kw,fragments", [
    (dict(n_inputs=10, tokens=4), ["10 input features", "tokens among [1, 2, 5, 10]"]),
    (dict(d_model=9, heads=2), ["d_model 9", "multiple of heads 2"]),
    (dict(tokens=0), ["tokens must be a positive integer", "0"]),
    (dict(ffn=2.5), ["ffn must be a positive integer"]),
])
def test_one_line_errors(kw, fragments):
    error_of(lambda: _net(**kw), *fragments, kind=ConfigError)
