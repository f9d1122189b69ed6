"""The decentralized methods of the one loop: NEXT and SONATA (surrogate steps) and the
gradient baselines (DGD, D-PSGD, gradient tracking, EXTRA, Push-DIGing).

The update equations and references are in each algorithm's module of
:mod:`dcnn.algorithms`; here each method is one registry entry with a builder that resolves
``schedule = "auto"`` (the method's own), ``tau = "auto"`` and ``lr = "auto"`` (curvature
estimates at ``w[0]``, collective) and the method's default batch size.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..algorithms import (Dgd, Extra, GradientTracking, Next, PushDiging, Scaled, Sonata,
                          auto_lr, make_schedule)
from ..algorithms.loop import check_compatible
from ..algorithms.steps import ADAM_LR
from ..surrogates import make_blocked, make_surrogate, resolve_solver
from ..surrogates.tau import resolve_tau
from ..surrogates.timed import Timed
from .options import GradientOptions, SurrogateOptions
from .registry import MethodSpec, Supports, get_method, register
from .runs import LoopMethod

__all__ = ["resolve_lr", "step_schedule", "build_surrogate_method", "build_gradient_method"]


def step_schedule(spec: MethodSpec, o) -> tuple[str, object]:
    """``(name, schedule)``: ``o.schedule``, or the method's own when ``"auto"``."""
    name = spec.schedule if o.schedule == "auto" else o.schedule
    return name, make_schedule(name, alpha0=o.alpha0, eps=o.eps, power=o.power)


def resolve_lr(exp, lr, optimizer: str) -> float:
    """``lr``, or for ``"auto"``: Adam's default, 1 for L-BFGS (unused: it takes line-search
    steps), else ``1 / L`` from the local curvatures at ``w[0]`` (collective)."""
    if lr != "auto":
        return float(lr)
    if optimizer == "adam":
        return ADAM_LR
    if optimizer == "lbfgs":
        return 1.0
    with torch.no_grad():
        return float(auto_lr(problem=exp.problem, network=exp.network, X0=exp.X0))


def _batch(spec: MethodSpec, o) -> int | None:
    return o.batch_size or spec.batch_size or None


def _checked(exp, algorithm, info: dict, *, solve_watch=None) -> LoopMethod:
    # refuse a graph the algorithm cannot run on before anything is written
    check_compatible(algorithm, topology=exp.topology, network=exp.network)
    return LoopMethod(algorithm, info, solve_watch=solve_watch)


def build_surrogate_method(cls, name: str):
    """The builder of a surrogate method ``cls`` (:class:`Next`, :class:`Sonata`, or one of
    the same interface: ``surrogate``, ``schedule``, ``batch_size``, ``seed`` and
    ``adapt_tau`` keywords) registered as ``name``."""
    def build(exp, o: SurrogateOptions) -> LoopMethod:
        spec = get_method(name)
        schedule_name, schedule = step_schedule(spec, o)
        # resolved here (collective) so the log and the summary show it before the run
        tau = resolve_tau(o.tau, o.surrogate, problem=exp.problem, network=exp.network,
                          X0=exp.X0, alpha0=schedule.init())
        batch = _batch(spec, o)
        # one path on every rank: "auto" from the global shapes (all agents, longest shard)
        solver = None if o.surrogate != "pl" else resolve_solver(
            o.solver, problem=exp.problem, network=exp.network, batch_size=batch)
        surrogate = make_blocked(
            make_surrogate(o.surrogate, tau=tau, solver=solver or o.solver,
                           inner_tol=o.inner_tol, inner_iters=o.inner_iters),
            model=exp.model, threads=o.threads, blocks=o.blocks, n_blocks=o.n_blocks,
            block_fraction=o.block_fraction, seed=exp.seed)
        # tau = "auto" is also raised during the run (dcnn.surrogates.tau), on the whole shard
        adapt = (o.tau == "auto" and not batch) if o.adapt_tau == "auto" else o.adapt_tau
        info = {"schedule": schedule_name, "surrogate": o.surrogate, "tau": float(tau),
                "adapt_tau": adapt, "solver": solver, "batch_size": batch}
        timed = Timed(surrogate)       # the local solver's share of the loop, reported
        return _checked(exp, cls(surrogate=timed, schedule=schedule, batch_size=batch,
                                 seed=exp.seed, adapt_tau=adapt), info, solve_watch=timed.watch)
    return build


def build_gradient_method(cls, name: str):
    """The builder of a gradient method ``cls`` registered as ``name``."""
    def build(exp, o: GradientOptions) -> LoopMethod:
        spec = get_method(name)
        schedule_name, schedule = step_schedule(spec, o)
        lr = resolve_lr(exp, o.lr, "gd")
        batch = _batch(spec, o)
        info = {"schedule": schedule_name, "lr": float(lr), "batch_size": batch}
        return _checked(exp, cls(schedule=Scaled(schedule, float(lr)), name=name,
                                 batch_size=batch, seed=exp.seed), info)
    return build


def _surrogate_label(name: str):
    return lambda o: f"{name}-{o.surrogate}"


for _spec in (
    MethodSpec(
        "next", "NEXT: surrogate step + dynamic consensus (undirected)", SurrogateOptions,
        build_surrogate_method(Next, "next"), Supports(), schedule="diminishing",
        variants={"next-pl": {"surrogate": "pl"}, "next-fl": {"surrogate": "fl"}},
        label=_surrogate_label("next"),
        compare_default={"undirected": ("next-pl", "next-fl")}),
    MethodSpec(
        "sonata", "SONATA: NEXT's step with push-sum (directed)", SurrogateOptions,
        build_surrogate_method(Sonata, "sonata"), Supports(directed=True), schedule="diminishing",
        variants={"sonata-pl": {"surrogate": "pl"}, "sonata-fl": {"surrogate": "fl"}},
        label=_surrogate_label("sonata"),
        compare_default={"directed": ("sonata-pl", "sonata-fl")}),
):
    register(_spec, default=_spec.name == "next")


@dataclass(frozen=True)
class _Gradient:
    name: str
    cls: type
    summary: str
    supports: Supports
    schedule: str = "constant"
    batch_size: int = 0
    default: str = ""


_GRADIENT = (
    _Gradient("gt", GradientTracking, "gradient tracking (DIGing)", Supports(l1=False),
              default="undirected"),
    _Gradient("dgd", Dgd, "decentralized (proximal) gradient descent", Supports(),
              schedule="diminishing", default="undirected"),
    _Gradient("dsgd", Dgd, "D-PSGD: DGD on mini-batches (default 16 rows per agent)",
              Supports(), batch_size=16),
    _Gradient("extra", Extra, "EXTRA (static graphs)",
              Supports(time_varying=False, l1=False), default="undirected"),
    _Gradient("push-diging", PushDiging, "Push-DIGing (directed, time-varying)",
              Supports(directed=True, l1=False), default="directed"),
)
for _g in _GRADIENT:
    register(MethodSpec(_g.name, _g.summary, GradientOptions,
                        build_gradient_method(_g.cls, _g.name), _g.supports,
                        schedule=_g.schedule, batch_size=_g.batch_size,
                        compare_default={_g.default: (_g.name,)} if _g.default else {}))
