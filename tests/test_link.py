"""The modelled link: parsing, the alpha-beta formula, the network's counters behind it, and
the crossover bandwidths a comparison reports."""
import numpy as np
import pytest
import torch

from dcnn.comm import LocalNetwork
from dcnn.comm.base import busiest_degree
from dcnn.compare import crossovers
from dcnn.errors import ConfigError
from dcnn.link import PRESETS, Link, modelled_time, parse_link

from conftest import error_of


def test_presets_and_custom_links_parse_to_seconds_and_bytes_per_second():
    assert parse_link("lan") is PRESETS["lan"]
    link = parse_link("latency=1ms,bandwidth=1Gbit")
    assert (link.latency, link.bandwidth) == (1e-3, 1e9 / 8)
    link = parse_link("bandwidth=250kbit/s,latency=40us")
    assert link.latency == pytest.approx(4e-5) and link.bandwidth == pytest.approx(250e3 / 8)
    assert "1 Gbit/s" in PRESETS["lan"].describe() and "200 us" in PRESETS["lan"].describe()


@pytest.mark.parametrize("text,fragment", [
    ("lam", "is not a preset"),
    ("latency=1ms", "needs latency and bandwidth"),
    ("latency=1ms,bandwidth=1Gbyte", "is not a number with a unit"),
    ("latency=0ms,bandwidth=1Gbit", "must be a positive finite number"),
    ("latency=1..2ms,bandwidth=1Gbit", "is not a number with a unit"),
    ("latency=fast,bandwidth=1Gbit", "is not a number with a unit"),
])
def test_a_bad_link_is_refused_with_one_line(text, fragment):
    error_of(lambda: parse_link(text), fragment, kind=ConfigError)


def test_the_modelled_time_is_compute_plus_latencies_plus_the_busiest_agents_bytes():
    link = Link("x", latency=0.01, bandwidth=1e6)
    assert modelled_time(2.0, 30, 5e6, link) == pytest.approx(2.0 + 0.3 + 5.0)
    assert modelled_time(None, 30, 5e6, link) is None
    assert modelled_time(2.0, float("nan"), 5e6, link) is None


def ring_weights(n):
    W = np.eye(n) / 3
    for i in range(n):
        W[i, (i + 1) % n] = W[i, (i - 1) % n] = 1 / 3
    return W


def test_the_network_counts_exchanges_and_the_busiest_agents_bytes():
    net = LocalNetwork(5)
    X = torch.zeros(5, 7, dtype=torch.float64)
    net.mix(X, ring_weights(5))
    assert (net.exchanges, net.busiest_bytes) == (1, 2 * 7 * 8)
    star = np.eye(5) * 0.5
    star[0, 1:] = star[1:, 0] = 0.1                         # agent 0 hears and tells all
    net.mix(X, star)
    assert (net.exchanges, net.busiest_bytes) == (2, 2 * 56 + 4 * 56)
    # directed: what the busiest agent receives counts as much as what it sends
    fan_in = np.eye(4)
    fan_in[0, 1:] = 1.0
    assert busiest_degree(fan_in) == 3 and busiest_degree(np.eye(3)) == 0
    net.reset_counters()
    assert (net.exchanges, net.busiest_bytes) == (0, 0)


def _row(m, c, e, b):
    return {"method": m, "status": "ok", "test_compute_s": c, "test_exchanges": e,
            "test_busiest_bytes": b}


def test_crossovers_are_where_two_modelled_times_meet():
    # a: cheap compute, many bytes; b: slow compute, few bytes
    rows = [_row("a", 1.0, 100, 1e9), _row("b", 5.0, 100, 1e7), _row("c", 9.0, 100, 2e9),
            _row("ref", 0.1, 0, 0)]
    link = Link("l", latency=1e-3, bandwidth=1e8)
    out = crossovers(rows, links=[link], contenders=["a", "b", "c"])
    (x,) = out          # c is never faster than a (more compute and more bytes)
    assert (x["faster_above"], x["faster_below"], x["target"]) == ("a", "b", "test")
    beta = x["bandwidth_bit_s"] / 8
    ta = modelled_time(1.0, 100, 1e9, Link("", 1e-3, beta))
    tb = modelled_time(5.0, 100, 1e7, Link("", 1e-3, beta))
    assert ta == pytest.approx(tb, rel=1e-12)
    faster = Link("", 1e-3, 2 * beta)
    assert modelled_time(1.0, 100, 1e9, faster) < modelled_time(5.0, 100, 1e7, faster)
    # fewer than two contenders reached a target: nothing to cross
    assert crossovers(rows[:1], links=[link], contenders=["a"]) == []


def test_a_link_object_from_python_is_checked_before_anything_runs():
    from dcnn.compare import run_compare
    from dcnn.config import load_config
    cfg = load_config(overrides=["run.iterations=2", "run.progress=false"])
    error_of(lambda: run_compare(cfg, methods=["gt"], out=None, verbose=False,
                                 links=[Link("x", 0.0, 1e6)]),
             "latency must be a positive finite number", kind=ConfigError)
    error_of(lambda: Link("a b", 1e-3, 1e6).check(), "must be a word", kind=ConfigError)
    error_of(lambda: run_compare(cfg, methods=["gt"], out=None, verbose=False, links=3),
             "links must be link names", kind=ConfigError)
