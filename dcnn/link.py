"""Time on a modelled network link: the alpha-beta model of synchronous rounds.

A method measured in one process (or on one machine under ``mpiexec``) has, at each
evaluation, its loop time ``time_s``, the neighbour exchanges it made (``exchanges``) and the
bytes the busiest agent sent or received in them (``busiest_bytes``, the most neighbours of any
agent times the message size, summed over the exchanges; :class:`dcnn.comm.Network` counts
both). On a link of latency ``alpha`` (seconds) and bandwidth ``beta`` (bytes per second),
with one agent per machine and every round waiting for its slowest agent, the time to that
evaluation is modelled as

    T = c + alpha * E + B / beta

- ``c = share * time_s``: the compute, the measured loop time times the share of it one agent
  needs (``share = ranks / agents``: the agents of a process run one after another in the
  measurement, side by side when deployed; ``1`` for a method on pooled data). On a stacked
  backend the agents' work is batched, so this under-counts one agent's compute when the
  batch is cheaper than its parts: a lower bound on ``c``.
- ``alpha * E``: one latency per exchange (the neighbours are reached in parallel).
- ``B / beta``: the busiest agent's bytes through its own link (full duplex).

Messages of other collectives (the adaptive tau's scalar all-reduce, the metric evaluations)
are not part of the model; the engines and schemes (DDP, pipeline, ...) do not count their
collectives per call yet, so they are not modelled (their ``exchanges`` are NaN).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

__all__ = ["Link", "PRESETS", "parse_link", "modelled_time", "crossovers", "plot_links"]


@dataclass(frozen=True)
class Link:
    """A link: ``latency`` in seconds, ``bandwidth`` in bytes per second."""

    name: str
    latency: float
    bandwidth: float

    def check(self) -> "Link":
        """This link, or a one-line ConfigError when it cannot be one."""
        if not isinstance(self.name, str) or not re.fullmatch(r"[A-Za-z0-9_.+/-]+", self.name):
            raise ConfigError(f"a link's name must be a word (letters, digits, _.+/-), got "
                              f"{self.name!r}")
        for what, v in (("latency", self.latency), ("bandwidth", self.bandwidth)):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) \
                    or v <= 0:
                raise ConfigError(f"link {self.name!r}: {what} must be a positive finite "
                                  f"number, got {v!r}")
        return self

    def describe(self) -> str:
        return f"{self.name} ({_seconds(self.latency)}, {_bits(self.bandwidth)})"


def _seconds(s: float) -> str:
    return f"{s * 1e6:g} us" if s < 1e-3 else f"{s * 1e3:g} ms" if s < 1 else f"{s:g} s"


def _bits(b: float) -> str:
    bits = 8 * b
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bits >= scale:
            return f"{bits / scale:g} {unit}"
    return f"{bits:g} bit/s"


# typical figures (order of magnitude; give your own with latency=...,bandwidth=...)
PRESETS = {
    "datacenter": Link("datacenter", 5e-6, 100e9 / 8),    # RDMA fabric: 5 us, 100 Gbit/s
    "lan": Link("lan", 2e-4, 1e9 / 8),                    # office Ethernet: 0.2 ms, 1 Gbit/s
    "wan": Link("wan", 3e-2, 100e6 / 8),                  # between sites: 30 ms, 100 Mbit/s
    "edge": Link("edge", 5e-2, 10e6 / 8),                 # wireless / IoT: 50 ms, 10 Mbit/s
}

_TIME = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
_RATE = {"bit": 1.0, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}


def _quantity(text: str, units: dict, what: str, example: str) -> float:
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?)\s*([a-z]+)(?:/s)?\s*",
                     text.lower())
    if m is None or m.group(2) not in units:
        raise ConfigError(f"--link {what} {text!r} is not a number with a unit "
                          f"({', '.join(units)}); e.g. {example}")
    value = float(m.group(1)) * units[m.group(2)]
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"--link {what} must be a positive finite number, got {text!r}")
    return value


def parse_link(text: str) -> Link:
    """A preset (``datacenter``, ``lan``, ``wan``, ``edge``) or
    ``latency=1ms,bandwidth=1Gbit`` (latency in s, ms or us; bandwidth in bit, kbit, Mbit or
    Gbit per second)."""
    text = text.strip()
    if "=" not in text:
        if text not in PRESETS:
            raise ConfigError(f"--link {text!r} is not a preset ({', '.join(PRESETS)}) nor "
                              "latency=...,bandwidth=...; e.g. --link lan or --link "
                              "latency=1ms,bandwidth=1Gbit")
        return PRESETS[text]
    parts = dict(p.split("=", 1) for p in text.split(",") if "=" in p)
    if set(parts) != {"latency", "bandwidth"} or text.count("=") != 2:
        raise ConfigError(f"--link {text!r} needs latency and bandwidth, e.g. "
                          "--link latency=1ms,bandwidth=1Gbit")
    latency = _quantity(parts["latency"], _TIME, "latency", "latency=1ms")
    bandwidth = _quantity(parts["bandwidth"], _RATE, "bandwidth", "bandwidth=1Gbit") / 8
    return Link(f"{_seconds(latency).replace(' ', '')}-{_bits(bandwidth).replace(' ', '')}",
                latency, bandwidth)


def modelled_time(compute_s: float | None, exchanges: float | None,
                  busiest_bytes: float | None, link: Link) -> float | None:
    """``c + alpha E + B / beta`` (see the module docstring); ``None`` when a part is
    unknown."""
    parts = (compute_s, exchanges, busiest_bytes)
    if any(p is None or not math.isfinite(p) for p in parts):
        return None
    return compute_s + link.latency * exchanges + busiest_bytes / link.bandwidth


def _parts(row: dict, target: str) -> tuple | None:
    """``(compute_s, exchanges, busiest_bytes)`` of ``row`` at ``target``, or ``None``."""
    parts = tuple(row.get(f"{target}_{k}") for k in ("compute_s", "exchanges", "busiest_bytes"))
    ok = row["status"] == "ok" and all(p is not None and math.isfinite(p) for p in parts)
    return parts if ok else None


def _link_target(rows: list[dict], contenders: list[str]) -> str | None:
    """The target the link figures speak of: the test target if two contenders reached it,
    else the objective target."""
    for t in ("test", "objective"):
        if sum(_parts(r, t) is not None for r in rows if r["method"] in contenders) >= 2:
            return t
    return None


def crossovers(rows: list[dict], *, links, contenders: list[str]) -> list[dict]:
    """For each link's latency and each pair of contenders: the bandwidth at which their
    modelled times to the target cross (:mod:`dcnn.link`: ``T = a + B / beta`` with ``a =
    c + alpha E``): above it the one with the smaller ``a`` is faster, below it the one with
    fewer bytes. Pairs where one is faster at every bandwidth have none."""
    target = _link_target(rows, contenders)
    if target is None:
        return []
    parts = {r["method"]: _parts(r, target) for r in rows if r["method"] in contenders}
    parts = {m: p for m, p in parts.items() if p is not None}
    out = []
    for link in links:
        names = list(parts)
        for i, m in enumerate(names):
            for n in names[i + 1:]:
                (cm, em, bm), (cn, en, bn) = parts[m], parts[n]
                am, an = cm + link.latency * em, cn + link.latency * en
                if bm == bn or (am - an) * (bm - bn) >= 0:
                    continue                     # one of them is never slower
                x = (an - am) / (bm - bn)        # 1 / beta where they cross
                fast, lean = (m, n) if am < an else (n, m)
                out.append({"target": target, "link": link.name, "latency_s": link.latency,
                            "bandwidth_bit_s": 8.0 / x, "faster_above": fast,
                            "faster_below": lean})
    return out


def plot_links(rows: list[dict], path: Path, *, links, contenders: list[str],
               title: str = "") -> Path | None:
    """Modelled time to the target against bandwidth, one panel per link's latency, a line
    per contender (where lines cross, the faster method changes); the link's own bandwidth
    dashed."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    from .report import log_axis

    target = _link_target(rows, contenders)
    fig, axes = plt.subplots(1, len(links), figsize=(4.5 * len(links), 4), squeeze=False)
    bits = np.logspace(5, 11, 200)
    for ax, link in zip(axes[0], links):
        for k, r in enumerate(rows):
            p = None if target is None or r["method"] not in contenders else _parts(r, target)
            if p is not None:
                c, e, b = p
                ax.plot(bits, c + link.latency * e + b / (bits / 8), label=r["method"],
                        color=f"C{k}")
        ax.axvline(8 * link.bandwidth, color="k", ls="--", lw=1)
        log_axis(ax, "x")
        log_axis(ax, "y")
        ax.set_xlabel("bandwidth (bit/s)")
        ax.set_ylabel(f"modelled s to the {target or 'no'} target")
        ax.set_title(f"{link.name}: latency {link.describe().split('(')[1].split(',')[0]}")
        ax.grid(alpha=0.3, which="both")
    if axes[0][0].get_legend_handles_labels()[0]:
        axes[0][0].legend()
    if title:
        fig.suptitle(title)
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.14, top=0.86, wspace=0.35)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
