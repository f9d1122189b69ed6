"""What is measured at each evaluation, and the History it is written to.

Evaluation is monitoring, not part of the algorithm: it uses collectives whose time the loop
reports separately (``eval_time_s``) from the algorithm's own time (``time_s``). All
quantities refer to the network average ``w_bar = (1/N) sum_i w_i`` unless named per agent:

- ``objective``: ``U(w_bar) = sum_i g_i(w_bar) + r(w_bar)``;
- ``grad_norm``: ``||grad U(w_bar)||``; with an l1 part, the prox-gradient norm
  ``||w_bar - prox_r(w_bar - sum_i grad g_i(w_bar))||``;
- ``consensus_error``: ``(1/N) sum_i ||w_i - w_bar||^2``;
- ``train_metric`` / ``test_metric`` at ``w_bar`` (accuracy in percent, or MSE), and the
  ``test_metric`` of each agent's own ``w_i`` as ``agent_test_min/mean/max``;
- ``sparsity``: share of entries of ``w_bar`` with ``|w| <= 1e-8`` (meaningful with l1);
- ``bytes_per_agent``: logical bytes sent per agent so far; ``step_size``: ``alpha[t]``;
- ``exchanges`` / ``busiest_bytes``: neighbour exchanges so far, and the bytes the busiest
  agent sent or received in them (what a modelled link needs, :mod:`dcnn.link`; NaN for the
  engines and schemes, whose collectives are not counted per call).
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .comm import Network
from .errors import DivergenceError
from .problems import LocalProblems

__all__ = ["COLUMNS", "History", "evaluate", "DivergenceError", "metric_name"]

COLUMNS = ("iteration", "objective", "grad_norm", "consensus_error", "train_metric",
           "test_metric", "agent_test_min", "agent_test_mean", "agent_test_max", "sparsity",
           "bytes_per_agent", "step_size", "time_s", "eval_time_s", "exchanges",
           "busiest_bytes")


def metric_name(task: str) -> str:
    return "mse" if task == "regression" else "accuracy"


def _score_scale(task: str) -> float:
    return 1.0 if task == "regression" else 100.0


def evaluate(X: torch.Tensor, *, problem: LocalProblems, network: Network,
             test: tuple[torch.Tensor, torch.Tensor] | None = None,
             check: bool = True) -> dict:
    """The metrics of the group's iterates ``X (A, P)`` (collective: call on every process).

    ``check``: raise :class:`~dcnn.errors.DivergenceError` on NaN/inf iterates or objective;
    ``False`` leaves that to the caller (the loop's divergence guard, which also saves the
    last finite state) and returns a non-finite objective as it is."""
    N = network.n_agents
    A = X.shape[0]
    if check:
        finite = torch.tensor([float(torch.isfinite(X).all())], dtype=torch.float64)
        if float(network.allreduce(finite, op="min")[0]) < 1.0:
            bad = [problem.agent_ids[a] for a in range(A) if not torch.isfinite(X[a]).all()]
            raise DivergenceError(f"NaN or inf in the iterates (agents "
                                  f"{bad or 'on another rank'}); lower algorithm.alpha0 (or "
                                  "algorithm.lr), or raise algorithm.tau")
    w_bar = network.agent_sum(X) / N
    Wb = w_bar.expand(A, -1)
    vals, grads = problem.value_and_grad(Wb)
    reg = problem.regularizer
    head = network.allreduce(torch.stack([vals.sum(), problem.score_sums(Wb).sum(),
                                          ((X - w_bar) ** 2).sum()]))
    grad_sum = network.agent_sum(grads)
    if reg.smooth:
        gnorm = torch.linalg.vector_norm(grad_sum + reg.grad(w_bar))
    else:
        gnorm = torch.linalg.vector_norm(w_bar - reg.prox(w_bar - grad_sum, 1.0))
    scale = _score_scale(problem.task)
    rec = {
        "objective": float(head[0] + reg.value(w_bar)),
        "grad_norm": float(gnorm),
        "consensus_error": float(head[2]) / N,
        "train_metric": scale * float(head[1]) / problem.n_total,
        "sparsity": float((w_bar.abs() <= 1e-8).double().mean()),
    }
    if test is not None:
        Xte, Tte = test
        rec["test_metric"] = scale * float(problem.scores_on(w_bar[None], Xte, Tte)[0])
        per = scale * problem.scores_on(X, Xte, Tte)
        rec["agent_test_min"] = float(network.allreduce(per.min()[None], op="min")[0])
        rec["agent_test_max"] = float(network.allreduce(per.max()[None], op="max")[0])
        rec["agent_test_mean"] = float(network.allreduce(per.sum()[None])[0]) / N
    if check and not math.isfinite(rec["objective"]):
        raise DivergenceError("the objective is NaN or inf; lower algorithm.alpha0 (or "
                              "algorithm.lr), or raise algorithm.tau")
    return rec


@dataclass
class History:
    """One record (a dict keyed by :data:`COLUMNS`) per evaluation."""

    records: list = field(default_factory=list)

    def append(self, record: dict) -> None:
        """Keep ``record``'s :data:`COLUMNS` (NaN where absent) and, after them, any other
        key it holds (a callback's own metric)."""
        row = {k: record.get(k, math.nan) for k in COLUMNS}
        row.update((k, v) for k, v in record.items() if k not in row)
        self.records.append(row)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def last(self) -> dict:
        return self.records[-1]

    def column(self, name: str) -> list:
        return [r[name] for r in self.records]

    def to_csv(self, path: str | Path) -> Path:
        path = Path(path)
        extra = list(dict.fromkeys(k for r in self.records for k in r if k not in COLUMNS))
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=[*COLUMNS, *extra])
            writer.writeheader()
            writer.writerows(self.records)
        return path


def target_metric(centralized: float, task: str) -> float:
    """The "centralized minus one point" target: accuracy ``c - 1`` (percentage points);
    test MSE on standardised targets ``c + 0.01`` (1% of the target variance)."""
    return centralized + 0.01 if task == "regression" else centralized - 1.0


def rounds_to_target(history: History, *, target: float, task: str) -> dict | None:
    """The first evaluation whose test metric reaches ``target`` (accuracy >= target, MSE
    <= target): its iteration (= communication rounds), bytes per agent and loop time.
    ``None`` if never reached. Resolution is ``run.eval_every``."""
    for rec in history.records:
        m = rec.get("test_metric")
        if m is None:
            return None
        if (m <= target) if task == "regression" else (m >= target):
            return {"target": target, "iteration": rec["iteration"],
                    "bytes_per_agent": rec["bytes_per_agent"], "time_s": rec["time_s"]}
    return None
