"""A toy method registered from outside the package (``dcnn --plugin tests/_toy_method.py``):
"average then step", ``w_i <- sum_j W_ij w_j - s grad f_i(w_i)`` with its own option
``toy_step`` (the constant step ``s``). It is DGD in adapt-then-combine order: exact only in
an ``O(s)`` neighbourhood of the optimum."""
from dataclasses import dataclass, replace
from typing import ClassVar

import torch

from dcnn.algorithms import local_gradients
from dcnn.methods import LoopMethod, MethodSpec, StepOptions, Supports, option, register


@dataclass(frozen=True)
class ToyState:
    ROWS: ClassVar[tuple[str, ...]] = ("X",)
    t: int
    X: torch.Tensor
    alpha: float


@dataclass(frozen=True)
class Toy:
    step_size: float
    name: str = "toy"
    directed_ok = False

    def init(self, problem, network, X0):
        return ToyState(t=0, X=X0.clone(), alpha=self.step_size)

    def step(self, state, problem, network, W):
        G = local_gradients(problem, state.X, t=state.t, n_agents=network.n_agents)
        # w_i = sum_j W_ij w_j - s grad f_i(w_i)
        return replace(state, t=state.t + 1, X=network.mix(state.X, W) - self.step_size * G)


@dataclass(frozen=True)
class ToyOptions(StepOptions):
    toy_step: float = option(0.05, check=(lambda v: v > 0, "> 0"))


def build(exp, o: ToyOptions) -> LoopMethod:
    return LoopMethod(Toy(step_size=o.toy_step), {"lr": o.toy_step})


SPEC = register(MethodSpec("toy", "average then step (a test plugin)", ToyOptions, build,
                           Supports(l1=False), variants={"toy-small": {"toy_step": 0.01}}),
                replace=True)
