"""A one-block transformer encoder over a sample's features read as a sequence of tokens.

A sample ``x`` of ``n_inputs = L f`` features is read row-major as ``L`` tokens of ``f``
features (token ``j`` = ``x[j f:(j+1) f]``). With ``d`` = ``d_model``, ``H`` heads of width
``d_h = d / H`` and ``LN`` a LayerNorm over the ``d`` features of one token (pre-LN block,
Xiong et al., ICML 2020, arXiv 2002.04745; attention of Vaswani et al., NeurIPS 2017):

    h_j = W_e x_j + b_e + p_j                                  (embedding + learned position)
    u_j = LN_1(h_j);  q_j, k_j, v_j = W_q u_j + b_q, W_k u_j, W_v u_j + b_v  (no key bias)
    a_j = concat_heads( sum_i softmax_i(q_j . k_i / sqrt(d_h)) v_i )
    h'_j = h_j + W_o a_j + b_o                                 (residual)
    z_j = LN_f(h'_j + W_2 gelu(W_1 LN_2(h'_j) + b_1) + b_2)   (MLP, residual, final LN)
    f(x) = W_h (1/L) sum_j z_j + b_h                           (mean-pool, linear head)

Everything but the attention sum and the mean-pool acts on each token alone. The pieces are
pure functions of the parameter dict (``named_parameters`` names) and a slice of tokens
(:func:`embed`, :func:`project_qkv`, :func:`attention`, :func:`finish_block`,
:func:`pool_head`), so :mod:`dcnn.baselines.schemes.sequence_parallel` can run them on one rank's
tokens and replace :func:`attention` by ring attention. The module's ``forward`` composes them
on all tokens; it works with :class:`dcnn.problems.FlatModel` (``functional_call``) and under
``torch.func.vmap`` like the MLP.

For pipeline parallelism the block is also a sequence of four parts (:func:`transformer_parts`,
sharing the model's parameters): the embedding (``pos``, ``embed``), the attention sub-layer
(``ln1``, ``q``, ``k``, ``v``, ``o``, residual), the MLP sub-layer (``ln2``, ``fc1``, ``fc2``,
residual) and the head (``lnf``, mean-pool, ``head``). Their parameters, in order, are the
model's in ``named_parameters`` order, so a run of consecutive parts is a contiguous slice of
the flat vector. The sub-layers call their Linear modules (not the parameter dict), so
``parallelize_module`` can shard them; the number of heads is read from the projection's
width, so a part holding some of the heads computes exactly their attention.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

__all__ = ["TokenTransformer", "transformer", "split_tokens", "embed", "project_qkv",
           "attention", "finish_block", "pool_head", "is_token_param", "TransformerPart",
           "transformer_parts", "attention_sublayer", "mlp_sublayer"]

Params = dict[str, torch.Tensor]


def split_tokens(x: torch.Tensor, tokens: int) -> torch.Tensor:
    """``(M, L f)`` -> ``(M, L, f)``, token ``j`` = ``x[:, j f:(j+1) f]`` (row-major)."""
    return x.reshape(x.shape[0], tokens, x.shape[-1] // tokens)


def _ln(p: Params, name: str, h: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(h, h.shape[-1:], p[f"{name}.weight"], p[f"{name}.bias"])


def _linear(p: Params, name: str, h: torch.Tensor) -> torch.Tensor:
    return F.linear(h, p[f"{name}.weight"], p.get(f"{name}.bias"))


def embed(p: Params, x_tokens: torch.Tensor, *, start: int = 0) -> torch.Tensor:
    """``h_j = W_e x_j + b_e + p_j`` for tokens ``start .. start + l - 1``: ``(M, l, d)``."""
    n = x_tokens.shape[-2]
    return _linear(p, "embed", x_tokens) + p["pos"][start:start + n]


def project_qkv(p: Params, h: torch.Tensor, *, heads: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``q, k, v`` of ``LN_1(h)``, each ``(M, H, l, d_h)``."""
    u = _ln(p, "ln1", h)

    def split(t: torch.Tensor) -> torch.Tensor:
        m, n, d = t.shape
        return t.reshape(m, n, heads, d // heads).transpose(1, 2)

    return split(_linear(p, "q", u)), split(_linear(p, "k", u)), split(_linear(p, "v", u))


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Full softmax attention ``softmax(q k^T / sqrt(d_h)) v`` over the last two axes."""
    s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    return torch.softmax(s, dim=-1) @ v


def finish_block(p: Params, h: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Output projection, residual, MLP, residual and final LayerNorm, token by token:
    ``h (M, l, d)`` and the heads' attention outputs ``a (M, H, l, d_h)`` -> ``z (M, l, d)``."""
    m, heads, n, dh = a.shape
    h = h + _linear(p, "o", a.transpose(1, 2).reshape(m, n, heads * dh))
    h = h + _linear(p, "fc2", F.gelu(_linear(p, "fc1", _ln(p, "ln2", h))))
    return _ln(p, "lnf", h)


def pool_head(p: Params, pooled: torch.Tensor) -> torch.Tensor:
    """The linear head on the mean-pooled token features ``(M, d)`` -> ``(M, O)``."""
    return _linear(p, "head", pooled)


def is_token_param(name: str) -> bool:
    """Whether parameter ``name`` acts token by token (all but the head after the pool)."""
    return not name.startswith("head.")


class TokenTransformer(nn.Module):
    """One pre-LN encoder block over ``tokens`` tokens (see the module docstring)."""

    def __init__(self, *, n_inputs: int, n_outputs: int, tokens: int, d_model: int,
                 heads: int, ffn: int, dtype: torch.dtype = torch.float64):
        super().__init__()
        self.n_inputs, self.n_outputs, self.tokens = n_inputs, n_outputs, tokens
        self.features, self.d_model, self.heads, self.ffn = n_inputs // tokens, d_model, heads, ffn
        kw = dict(dtype=dtype)
        self.embed = nn.Linear(self.features, d_model, **kw)
        self.pos = nn.Parameter(0.1 * torch.randn(tokens, d_model, **kw))
        self.ln1 = nn.LayerNorm(d_model, **kw)
        self.q = nn.Linear(d_model, d_model, **kw)
        # no key bias: it adds q . b_k to a whole row of scores, which the softmax ignores
        # (its gradient is zero, and Adam would step it on rounding noise)
        self.k = nn.Linear(d_model, d_model, bias=False, **kw)
        self.v = nn.Linear(d_model, d_model, **kw)
        self.o = nn.Linear(d_model, d_model, **kw)
        self.ln2 = nn.LayerNorm(d_model, **kw)
        self.fc1 = nn.Linear(d_model, ffn, **kw)
        self.fc2 = nn.Linear(ffn, d_model, **kw)
        self.lnf = nn.LayerNorm(d_model, **kw)
        self.head = nn.Linear(d_model, n_outputs, **kw)

    def reset_parameters(self) -> None:
        """Redraw the positional embedding (its children reset their own parameters), so
        ``reset_parameters`` on every submodule re-initialises the whole model (what
        codistillation does for its models 1..n-1), from the global RNG like PyTorch's."""
        with torch.no_grad():
            self.pos.copy_(0.1 * torch.randn(self.pos.shape, dtype=self.pos.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # named_parameters sees the tensors functional_call swaps in
        p = dict(self.named_parameters())
        h = embed(p, split_tokens(x, self.tokens))
        a = attention(*project_qkv(p, h, heads=self.heads))
        return pool_head(p, finish_block(p, h, a).mean(dim=-2))

    def extra_repr(self) -> str:
        return (f"tokens={self.tokens}, features={self.features}, d_model={self.d_model}, "
                f"heads={self.heads}, ffn={self.ffn}")


def _heads(t: torch.Tensor, width: int) -> torch.Tensor:
    """``(M, L, k width)`` -> ``(M, k, L, width)``: the ``k`` heads present."""
    m, n, _ = t.shape
    return t.reshape(m, n, -1, width).transpose(1, 2)


def _merge(a: torch.Tensor) -> torch.Tensor:
    """``(M, k, L, width)`` -> ``(M, L, k width)``."""
    m, k, n, width = a.shape
    return a.transpose(1, 2).reshape(m, n, k * width)


def attention_sublayer(m: nn.Module, h: torch.Tensor, *, width: int) -> torch.Tensor:
    """``h + W_o a + b_o`` with ``a`` the attention of the heads of width ``width`` that
    ``m.q``, ``m.k``, ``m.v`` produce from ``m.ln1(h)`` (all of them, or one rank's)."""
    u = m.ln1(h)
    a = attention(_heads(m.q(u), width), _heads(m.k(u), width), _heads(m.v(u), width))
    return h + m.o(_merge(a))


def mlp_sublayer(m: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """``h + W_2 gelu(W_1 LN_2(h) + b_1) + b_2`` with ``m``'s modules."""
    return h + m.fc2(F.gelu(m.fc1(m.ln2(h))))


class TransformerPart(nn.Module):
    """One part of :func:`transformer_parts`: ``out_features`` is the width of its output per
    sample (what a pipeline cut after it carries), ``tp_plan`` the column/row-parallel
    styles of its projections (names relative to the part), ``tp_allreduces`` how many
    all-reduces of ``L d`` entries per sample one step runs in it when tensor-parallel (the
    row-parallel output forward, each column-parallel input gradient backward)."""

    tp_plan: dict[str, str] = {}
    tp_allreduces = 0

    def __init__(self, model: TokenTransformer, names: tuple[str, ...], out_features: int):
        super().__init__()
        self.tokens, self.width = model.tokens, model.d_model // model.heads
        self.out_features = out_features
        for name in names:                  # own parameter (pos) first, as in the model
            setattr(self, name, getattr(model, name))


class _Embed(TransformerPart):
    def forward(self, x):
        return self.embed(split_tokens(x, self.tokens)) + self.pos


class _Attention(TransformerPart):
    tp_plan = {"q": "colwise", "k": "colwise", "v": "colwise", "o": "rowwise"}
    tp_allreduces = 4

    def forward(self, h):
        return attention_sublayer(self, h, width=self.width)


class _MLP(TransformerPart):
    tp_plan = {"fc1": "colwise", "fc2": "rowwise"}
    tp_allreduces = 2

    def forward(self, h):
        return mlp_sublayer(self, h)


class _Head(TransformerPart):
    def forward(self, h):
        return self.head(self.lnf(h).mean(dim=-2))


def transformer_parts(model: TokenTransformer) -> nn.Sequential:
    """The four parts of ``model`` (see the module docstring), sharing its parameters; the
    Sequential computes ``model``'s function.

    >>> net = transformer(n_inputs=8, n_outputs=2, tokens=4)
    >>> x = torch.randn(3, 8, dtype=torch.float64)
    >>> bool((transformer_parts(net)(x) - net(x)).abs().max() < 1e-12)
    True
    """
    if not isinstance(model, TokenTransformer):
        raise ConfigError(f"transformer_parts needs the transformer of "
                          f"dcnn.problems.transformer, got {type(model).__name__}")
    act = model.tokens * model.d_model
    return nn.Sequential(_Embed(model, ("pos", "embed"), act),
                         _Attention(model, ("ln1", "q", "k", "v", "o"), act),
                         _MLP(model, ("ln2", "fc1", "fc2"), act),
                         _Head(model, ("lnf", "head"), model.n_outputs))


def _check_sizes(n_inputs, n_outputs, tokens, d_model, heads, ffn) -> None:
    sizes = dict(n_inputs=n_inputs, n_outputs=n_outputs, tokens=tokens, d_model=d_model,
                 heads=heads, ffn=ffn)
    for name, v in sizes.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"transformer {name} must be a positive integer, got {v!r}")
    if n_inputs % tokens:
        divisors = [t for t in range(1, n_inputs + 1) if n_inputs % t == 0]
        raise ConfigError(f"transformer: {n_inputs} input features do not split into "
                          f"{tokens} tokens of equal size; choose tokens among {divisors}")
    if d_model % heads:
        raise ConfigError(f"transformer: d_model {d_model} is not a multiple of heads "
                          f"{heads}; choose d_model = heads * head width")


def transformer(*, n_inputs: int, n_outputs: int, tokens: int, d_model: int = 16,
                heads: int = 2, ffn: int = 32, seed: int = 0,
                dtype: torch.dtype = torch.float64) -> TokenTransformer:
    """A :class:`TokenTransformer`, initialised from a generator seeded with ``seed``.

    Linear layers take PyTorch's default initialisation, LayerNorms weight 1 and bias 0, the
    positional table ``N(0, 0.1^2)``; all drawn in float64 with the global RNG left untouched
    and then cast to ``dtype`` (as :func:`dcnn.problems.mlp`).

    >>> net = transformer(n_inputs=64, n_outputs=10, tokens=8)
    >>> net(torch.zeros(3, 64, dtype=torch.float64)).shape
    torch.Size([3, 10])
    """
    _check_sizes(n_inputs, n_outputs, tokens, d_model, heads, ffn)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = TokenTransformer(n_inputs=n_inputs, n_outputs=n_outputs, tokens=tokens,
                               d_model=d_model, heads=heads, ffn=ffn, dtype=torch.float64)
    return net.to(dtype)
