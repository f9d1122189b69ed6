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

from .errors import ConfigError

__all__ = ["Link", "PRESETS", "parse_link", "modelled_time"]


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
