"""Do the ranks agree? Every rank compares named values (its resolved config, the sha256 of its
data and model) with rank 0's before a run starts, so that ranks started with different
settings stop with one line naming the ranks and the keys instead of training a wrong model.

:func:`rank_hosts` says which host each rank runs on (``summary.json`` -> ``hosts``).

Cost: one broadcast of rank 0's hashes (48 bits per key) and one ``max`` all-reduce of
``keys + ranks`` flags, both under the network's deadline.
"""
from __future__ import annotations

import hashlib
import json

import torch

from ..errors import ConfigError
from .base import Network

__all__ = ["check_ranks_agree", "digest", "rank_hosts"]


def digest(value) -> int:
    """48 bits of the sha256 of ``value``'s JSON (exact in a float64)."""
    text = json.dumps(value, sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:6], "big")


def check_ranks_agree(values: dict, *, network: Network, what: str, fix: str) -> None:
    """Raise :class:`~dcnn.errors.ConfigError` on every rank unless every rank holds the same
    ``values`` (``{name: JSON-able}``) as rank 0; the message names the ranks that differ and
    the names whose values do. Collective; nothing to do in one process."""
    if network.size == 1:
        return
    names = sorted(values)
    mine = [digest(names)] + [digest(values[k]) for k in names]
    theirs = network.broadcast(mine, root=0)
    n0 = len(theirs) - 1                     # rank 0's names: every vector below has its size
    other_keys = theirs[0] != mine[0]        # another dcnn version or plugin
    differs = [0.0] * n0 if other_keys else [float(a != b) for a, b in zip(mine[1:], theirs[1:])]
    ranks = [0.0] * network.size
    ranks[network.rank] = float(other_keys or any(differs))
    flags = network.allreduce(torch.tensor([float(other_keys)] + differs + ranks,
                                           dtype=torch.float64), op="max")
    who = [r for r in range(network.size) if flags[1 + n0 + r] > 0]
    if not who:
        return
    bad = ["the set of keys (another dcnn version or plugin)"] if flags[0] > 0 else []
    bad += [names[i] if i < len(names) else f"key {i}" for i in range(n0) if flags[1 + i] > 0]
    shown = ", ".join(bad[:6]) + (f" and {len(bad) - 6} more" if len(bad) > 6 else "")
    raise ConfigError(f"the ranks disagree: rank{'s' if len(who) > 1 else ''} "
                      f"{', '.join(map(str, who))} {'have' if len(who) > 1 else 'has'} "
                      f"another {what} than rank 0 ({shown}); {fix}")


_HOST_BYTES = 64


def rank_hosts(network: Network) -> dict[str, list[int]]:
    """``{host name: [its ranks]}`` over every rank (collective: one ``sum`` all-reduce of a
    ``ranks x 64`` table, each rank writing its own row; names are cut at 64 bytes)."""
    import socket
    name = socket.gethostname().encode()[:_HOST_BYTES]
    table = torch.zeros(network.size, _HOST_BYTES, dtype=torch.float64)
    table[network.rank, :len(name)] = torch.tensor(list(name), dtype=torch.float64)
    if network.size > 1:
        table = network.allreduce(table, op="sum")
    hosts: dict[str, list[int]] = {}
    for rank, row in enumerate(table.to(torch.int64).tolist()):
        host = bytes(b for b in row if b).decode(errors="replace")
        hosts.setdefault(host, []).append(rank)
    return hosts
