"""The public surface of dcnn.topology: a small curated ``__all__``, one name per concept, and
the names other modules import still there."""
import doctest
import importlib
import importlib.util

import dcnn.topology as topology


def test_all_is_small_and_resolves():
    assert 15 <= len(topology.__all__) <= 24
    assert len(set(topology.__all__)) == len(topology.__all__)
    for name in topology.__all__:
        assert getattr(topology, name) is not None, name


def test_names_used_elsewhere_stay_importable():
    # dcnn.compare, runner, bench, algorithms.loop/sonata and the tests outside topology/
    for name in ("DIRECTED_GRAPHS", "make_topology", "as_topology", "Topology",
                 "check_column_stochastic", "check_doubly_stochastic", "is_column_stochastic",
                 "is_row_stochastic", "row_stochastic"):
        assert hasattr(topology, name), name


def test_one_vocabulary_for_both_kinds_of_graph():
    # no parallel directed API: the unified functions and classes take a directed flag
    for module, names in {
        "dcnn.topology": ("make_digraph", "make_directed_sequence", "check_b_connected",
                          "check_b_strongly_connected"),
        "dcnn.topology.dynamic": ("DiGraphSequence", "DirectedStatic", "ArcFailures",
                                  "DirectedOnePeerExponential"),
        "dcnn.topology.churn": ("DirectedCutOff",),
    }.items():
        mod = importlib.import_module(module)
        assert not [n for n in names if hasattr(mod, n)], module
    assert importlib.util.find_spec("dcnn.topology.directed") is None


def test_docstring_examples_run():
    for name in ("graphs", "dynamic", "churn", "connectivity", "mixing", "topology"):
        result = doctest.testmod(importlib.import_module(f"dcnn.topology.{name}"))
        assert result.failed == 0, name
