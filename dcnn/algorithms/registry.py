"""Every method by name: what it is, how it steps and the defaults a comparison uses.

``ALGORITHMS`` maps ``algorithm.name`` to a :class:`Method`: the class, its kind
(``"surrogate"``: NEXT/SONATA with a surrogate and ``tau``; ``"gradient"``: a step
``lr * alpha[n]``; ``"centralized"``: pooled data; ``"engine"``: a parallel trainer of
:mod:`dcnn.baselines`, on PyTorch's own engines or one of the other schemes) and the defaults
that replace ``algorithm.schedule = "auto"`` and an unset ``batch_size``. ``VARIANTS`` names
the method variants ``dcnn compare`` accepts (``next-pl``, ``centralized-adam``, ...) as
config overrides on top of the run's config.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from .centralized import OPTIMIZERS, Centralized
from .dgd import Dgd
from .extra import Extra
from .gt import GradientTracking
from .next import Next
from .push_diging import PushDiging
from .sonata import Sonata

__all__ = ["Method", "EngineMethod", "ALGORITHMS", "VARIANTS", "OPTIMIZER_DEFAULT",
           "method_overrides"]


@dataclass(frozen=True)
class EngineMethod:
    """A baseline run by :func:`dcnn.baselines.train_engine`; it ignores the topology."""

    method: str
    directed_ok = True


@dataclass(frozen=True)
class Method:
    cls: type
    kind: str                      # "surrogate" | "gradient" | "centralized"
    schedule: str                  # what schedule = "auto" means
    batch_size: int = 0            # what batch_size = 0 means (0: the whole shard)
    summary: str = ""


ALGORITHMS: dict[str, Method] = {
    "next": Method(Next, "surrogate", "diminishing",
                   summary="NEXT: surrogate step + dynamic consensus (undirected)"),
    "sonata": Method(Sonata, "surrogate", "diminishing",
                     summary="SONATA: NEXT's step with push-sum (directed)"),
    "dgd": Method(Dgd, "gradient", "diminishing",
                  summary="decentralized (proximal) gradient descent"),
    "dsgd": Method(Dgd, "gradient", "constant", batch_size=16,
                   summary="D-PSGD: DGD on mini-batches (default 16 rows per agent)"),
    "gt": Method(GradientTracking, "gradient", "constant",
                 summary="gradient tracking (DIGing)"),
    "extra": Method(Extra, "gradient", "constant", summary="EXTRA (static graphs)"),
    "push-diging": Method(PushDiging, "gradient", "constant",
                          summary="Push-DIGing (directed, time-varying)"),
    "centralized": Method(Centralized, "centralized", "constant",
                          summary="pooled data: L-BFGS, gradient descent or Adam"),
    "ddp": Method(EngineMethod, "engine", "constant",
                  summary="data parallel: torch DistributedDataParallel, one shard block per rank"),
    "pipeline": Method(EngineMethod, "engine", "constant",
                       summary="pipeline: torch.distributed.pipelining, MLP split over ranks"),
    "tensor-parallel": Method(EngineMethod, "engine", "constant",
                              summary="tensor parallel: torch.distributed.tensor.parallel"),
    "sil": Method(EngineMethod, "engine", "constant",
                  summary="synthetic intermediate labels: parts trained apart, then joined"),
    "codistillation": Method(EngineMethod, "engine", "constant",
                             summary="codistillation: models on disjoint shards distil "
                                     "from stale copies of each other"),
    "local-parallel": Method(EngineMethod, "engine", "constant",
                             summary="local parallelism: blocks with local losses, "
                                     "pipelined forward-only"),
    "sequence-parallel": Method(EngineMethod, "engine", "constant",
                                summary="sequence parallel: a transformer's tokens over "
                                        "ranks, ring attention"),
}
OPTIMIZER_DEFAULT = {"centralized": "lbfgs", "engine": "gd"}

VARIANTS: dict[str, dict] = {
    **{name: {"name": name} for name in ALGORITHMS},
    "next-pl": {"name": "next", "surrogate": "pl"},
    "next-fl": {"name": "next", "surrogate": "fl"},
    "sonata-pl": {"name": "sonata", "surrogate": "pl"},
    "sonata-fl": {"name": "sonata", "surrogate": "fl"},
    **{f"centralized-{o}": {"name": "centralized", "optimizer": o} for o in OPTIMIZERS},
    **{f"pipeline-{s}": {"name": "pipeline", "pipeline_schedule": s}
       for s in ("gpipe", "1f1b", "interleaved")},
    **{f"local-{m}": {"name": "local-parallel", "local_mode": m}
       for m in ("greedy", "overlapping", "chunked")},
}


def method_overrides(variant: str) -> dict:
    """The ``algorithm`` keys a compare variant sets, e.g. ``next-fl`` ->
    ``{"name": "next", "surrogate": "fl"}``."""
    if variant not in VARIANTS:
        import difflib
        close = difflib.get_close_matches(variant, list(VARIANTS), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"valid: {', '.join(VARIANTS)}"
        raise ConfigError(f"method {variant!r} is unknown; {hint}")
    return dict(VARIANTS[variant])
