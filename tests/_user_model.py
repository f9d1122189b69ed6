"""A user's own model, imported by path (``model.name = "tests/_user_model.py:TwoBranch"``):
two branches, a small tanh network and a linear skip, summed."""
import torch
from torch import nn


class TwoBranch(nn.Module):
    def __init__(self, n_inputs: int, n_outputs: int, width: int = 5):
        super().__init__()
        self.deep = nn.Sequential(nn.Linear(n_inputs, width), nn.Tanh(),
                                  nn.Linear(width, n_outputs))
        self.skip = nn.Linear(n_inputs, n_outputs, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deep(x) + self.skip(x)


def two_branch(n_inputs, n_outputs):
    """The same model from a factory function."""
    return TwoBranch(n_inputs, n_outputs)


def n_params(d: int, k: int, width: int = 5) -> int:
    return d * width + width + width * k + k + d * k
