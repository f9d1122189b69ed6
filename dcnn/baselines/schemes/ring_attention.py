"""Ring attention: exact softmax attention over a sequence split into ``R`` blocks on ``R`` ranks.

Rank ``r`` holds the query, key and value blocks ``q_r, k_r, v_r`` (``(B, H, n, d_h)``, ``n =
L/R`` positions each). The key/value blocks travel around the ring ``r -> r+1 (mod R)``: at step
``s = 0..R-1`` rank ``r`` holds block ``j = r - s (mod R)``, posts the non-blocking send of it to
``r+1`` and the receive of block ``j-1`` from ``r-1``, and meanwhile folds block ``j`` into an
online (log-sum-exp) softmax (Liu, Zaharia & Abbeel, "Ring Attention with Blockwise
Transformers", arXiv 2310.01889; online softmax of Milakov & Gimelshein, arXiv 1805.02867;
blockwise backward of FlashAttention, Dao et al., arXiv 2205.14135). With ``c = 1/sqrt(d_h)``:

    S_j = c q_r k_j^T,   m_j = rowmax S_j,   P_j = exp(S_j - m_j),   l_j = rowsum P_j
    m <- max(m, m_j);   acc <- e^{m_old - m} acc + e^{m_j - m} P_j v_j;   l likewise
    O_r = acc / l,   lse_r = m + log l                       (= log sum_i exp(c q k_i^T))

Backward, given ``dO_r`` (``D_r = rowsum(dO_r * O_r)``): ``k_j, v_j`` go around the ring again,
each with its accumulating gradients ``dk_j, dv_j``; at step ``s`` rank ``r`` adds its queries'
share

    P = exp(c q_r k_j^T - lse_r),   dv_j += P^T dO_r,   dS = P * (dO_r v_j^T - D_r)
    dq_r += c dS k_j,   dk_j += c dS^T q_r

and passes ``(dk_j, dv_j)`` on with the block; after ``R`` steps every ``(dk_j, dv_j)`` is back at
its owner ``j``, complete. No causal mask (an encoder). Memory per rank at once: one ``n x n``
score block per (batch, head), ``B H (L/R)^2`` entries instead of ``B H L^2``.

Bytes sent per rank (counted by :class:`~dcnn.baselines.runtime.traffic.Traffic`; ``b`` = one block
of ``k`` or ``v``, ``B H n d_h itemsize``): forward ``2 (R-1) b``, backward ``2 (R-1) b`` (k, v)
``+ 2 R b`` (dk, dv). :func:`blockwise_attention` and :func:`blockwise_attention_grad` run the same
schedule on all ``R`` blocks in one process (the in-process oracle of the ring).
"""
from __future__ import annotations

import math

import torch

from ...errors import LaunchError
from ..runtime.traffic import Traffic

__all__ = ["block_forward", "merge", "finalize", "block_backward", "blockwise_attention",
           "blockwise_attention_grad", "Ring", "RingAttention", "ring_attention",
           "ring_attention_bytes", "check_tokens", "attention_memory"]

# running softmax state of one query block: (acc = sum e^{S-m} v, m = running max, l = row sum)
State = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _scale(q: torch.Tensor) -> float:
    return 1.0 / math.sqrt(q.shape[-1])


def block_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> State:
    """The unnormalised attention of queries ``q`` on one key/value block: ``(P v, m, l)``."""
    s = (q @ k.transpose(-1, -2)) * _scale(q)
    m = s.amax(dim=-1, keepdim=True)
    p = torch.exp(s - m)
    return p @ v, m, p.sum(dim=-1, keepdim=True)


def merge(state: State | None, block: State) -> State:
    """Fold one block's ``(P v, m, l)`` into the running state (log-sum-exp rescaling)."""
    if state is None:
        return block
    acc, m, l = state
    acc_b, m_b, l_b = block
    new = torch.maximum(m, m_b)
    a, b = torch.exp(m - new), torch.exp(m_b - new)
    return a * acc + b * acc_b, new, a * l + b * l_b


def finalize(state: State) -> tuple[torch.Tensor, torch.Tensor]:
    """``(O, lse)`` of the running state: ``O = acc / l``, ``lse = m + log l``."""
    acc, m, l = state
    return acc / l, m + torch.log(l)


def block_backward(q, k, v, do, lse, delta) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The share of ``(dq, dk, dv)`` of queries ``q`` against one key/value block, given the
    row statistics ``lse`` and ``delta = rowsum(dO * O)`` (shapes ``(..., n, 1)``)."""
    c = _scale(q)
    p = torch.exp((q @ k.transpose(-1, -2)) * c - lse)
    dv = p.transpose(-1, -2) @ do
    ds = p * (do @ v.transpose(-1, -2) - delta)
    return c * (ds @ k), c * (ds.transpose(-1, -2) @ q), dv


def _blocks(t: torch.Tensor, blocks: int) -> list[torch.Tensor]:
    if t.shape[-2] % blocks:
        raise ValueError(f"sequence length {t.shape[-2]} is not a multiple of {blocks} blocks")
    return list(torch.chunk(t, blocks, dim=-2))


def blockwise_attention(q, k, v, *, blocks: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(O, lse)`` of full attention computed with the ring's schedule in one process:
    query block ``r`` folds key/value blocks ``r, r-1, ..., r-R+1 (mod R)`` in that order.

    >>> from dcnn.problems.transformer import attention
    >>> q, k, v = (torch.randn(1, 2, 6, 4, dtype=torch.float64) for _ in range(3))
    >>> o, lse = blockwise_attention(q, k, v, blocks=3)
    >>> bool((o - attention(q, k, v)).abs().max() < 1e-12)
    True
    """
    qs, ks, vs = _blocks(q, blocks), _blocks(k, blocks), _blocks(v, blocks)
    outs, lses = [], []
    for r in range(blocks):
        state = None
        for s in range(blocks):
            j = (r - s) % blocks
            state = merge(state, block_forward(qs[r], ks[j], vs[j]))
        o, lse = finalize(state)
        outs.append(o)
        lses.append(lse)
    return torch.cat(outs, dim=-2), torch.cat(lses, dim=-2)


def blockwise_attention_grad(q, k, v, do, *, blocks: int
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(dq, dk, dv)`` of full attention for the output gradient ``do``, with the ring's
    backward schedule in one process (``dk_j`` gathers queries ``j, j+1, ..., j+R-1``)."""
    o, lse = blockwise_attention(q, k, v, blocks=blocks)
    delta = (do * o).sum(dim=-1, keepdim=True)
    qs, ks, vs, dos = (_blocks(t, blocks) for t in (q, k, v, do))
    lses, deltas = _blocks(lse, blocks), _blocks(delta, blocks)
    dq = [torch.zeros_like(t) for t in qs]
    dk = [torch.zeros_like(t) for t in ks]
    dv = [torch.zeros_like(t) for t in vs]
    for s in range(blocks):
        for r in range(blocks):
            j = (r - s) % blocks
            gq, gk, gv = block_backward(qs[r], ks[j], vs[j], dos[r], lses[r], deltas[r])
            dq[r] += gq
            dk[j] += gk
            dv[j] += gv
    return torch.cat(dq, dim=-2), torch.cat(dk, dim=-2), torch.cat(dv, dim=-2)


def ring_attention_bytes(*, batch: int, heads: int, block: int, d_head: int, itemsize: int,
                         ranks: int) -> dict[str, int]:
    """Bytes one rank sends in one forward and one backward of :func:`ring_attention`."""
    b = batch * heads * block * d_head * itemsize
    backward = 2 * (ranks - 1) * b + 2 * ranks * b if ranks > 1 else 0
    return {"forward": 2 * (ranks - 1) * b, "backward": backward}


class Ring:
    """This rank's place in the ring (``next = r+1``, ``prev = r-1`` mod ``R``) and the
    non-blocking shift of one tensor through ``traffic``."""

    def __init__(self, traffic: Traffic):
        self.traffic = traffic
        self.rank, self.size = traffic.world.rank, traffic.world.size
        self.next, self.prev = (self.rank + 1) % self.size, (self.rank - 1) % self.size

    def start_shift(self, t: torch.Tensor) -> tuple[torch.Tensor, list]:
        """Post ``send t -> next`` and ``receive <- prev``; returns the receive buffer and the
        handles (:meth:`wait` them before reading the buffer or changing ``t``)."""
        buf = torch.empty_like(t)
        # receive first: both neighbours' messages are in flight together, so no rank waits
        # on a send (blocking sends deadlock once messages pass about 1 MB)
        works = [self.traffic.irecv(buf, self.prev), self.traffic.isend(t, self.next)]
        return buf, works

    @staticmethod
    def wait(works: list) -> None:
        for w in works:
            w.wait()


class RingAttention(torch.autograd.Function):
    """``O_r`` of full attention over the ring's blocks; backward is the ring backward (see
    the module docstring). Inputs ``q, k, v`` of shape ``(B, H, n, d_h)``, this rank's block."""

    @staticmethod
    def forward(ctx, q, k, v, ring: Ring):
        kv = torch.stack([k, v]).contiguous()
        state = None
        for s in range(ring.size):
            if s < ring.size - 1:
                nxt, works = ring.start_shift(kv)
            state = merge(state, block_forward(q, kv[0], kv[1]))
            if s < ring.size - 1:
                ring.wait(works)
                kv = nxt
        o, lse = finalize(state)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.ring = ring
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        ring: Ring = ctx.ring
        do = do.contiguous()
        delta = (do * o).sum(dim=-1, keepdim=True)
        kv = torch.stack([k, v]).contiguous()
        dkv = torch.zeros_like(kv)
        dq = torch.zeros_like(q)
        for s in range(ring.size):
            works = []
            if s < ring.size - 1:
                nxt_kv, works = ring.start_shift(kv)
            gq, gk, gv = block_backward(q, kv[0], kv[1], do, lse, delta)
            dq += gq
            dkv[0] += gk
            dkv[1] += gv
            if ring.size > 1:
                # after the last step the received (dk, dv) is this rank's own, complete
                nxt_dkv, dworks = ring.start_shift(dkv)
                ring.wait(works + dworks)
                dkv = nxt_dkv
                if s < ring.size - 1:
                    kv = nxt_kv
        return dq, dkv[0], dkv[1], None


def ring_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, ring: Ring
                   ) -> torch.Tensor:
    """Differentiable ring attention of this rank's blocks (collective over the ring)."""
    return RingAttention.apply(q, k, v, ring)


def check_tokens(tokens: int, ranks: int) -> int:
    """Tokens per rank, ``L / R``; a one-line error (the same on every rank) otherwise."""
    if tokens % ranks:
        ok = [r for r in range(1, tokens + 1) if tokens % r == 0]
        raise LaunchError(f"sequence-parallel: {tokens} tokens do not split evenly over {ranks} "
                           f"ranks; run with a number of ranks in {ok} or change the model's "
                           f"tokens")
    return tokens // ranks


def attention_memory(*, batch: int, heads: int, length: int, ranks: int, itemsize: int) -> int:
    """Bytes of the attention scores one rank holds at once: ``B H (L/R)^2 itemsize``
    (``ranks=1``: the unsplit ``B H L^2 itemsize``)."""
    return batch * heads * (length // ranks) ** 2 * itemsize
