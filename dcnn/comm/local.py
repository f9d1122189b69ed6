"""All agents in one process: ``mix`` is one dense product ``W @ X``."""
from __future__ import annotations

import numpy as np
import torch

from .base import Network, agent_blocks

__all__ = ["LocalNetwork"]


class LocalNetwork(Network):
    """The in-process backend: one group holding every agent (tests, notebooks, sweeps)."""

    def __init__(self, n_agents: int):
        super().__init__(n_agents, agent_blocks(n_agents, 1), 0)

    def mix(self, X: torch.Tensor, W: np.ndarray) -> torch.Tensor:
        W = self.check_weights(W)
        self._count(W, X)
        Wt = torch.from_numpy(W).to(X.dtype)
        return (Wt @ X.reshape(X.shape[0], -1)).reshape(X.shape)

    def allreduce(self, x: torch.Tensor, op: str = "sum", *,
                  timeout: float | None = None) -> torch.Tensor:
        return x

    def allgather_rows(self, X: torch.Tensor, *, timeout: float | None = None) -> torch.Tensor:
        return X

    def broadcast(self, obj, root: int = 0, *, timeout: float | None = None):
        return obj
