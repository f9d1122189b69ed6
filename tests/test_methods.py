"""The method registry: a method added from a test file (tests/_toy_method.py, loaded as a
plugin) runs through ``dcnn run``, ``dcnn compare`` and the contract without touching the
package; the runner, compare and config modules name no method; options are typed and
validated with one-line messages; the method table of docs/methods.md is the registry's."""
import ast
import importlib
import json

import pytest

import dcnn
from dcnn.config import load_config, resolve
from dcnn.errors import ConfigError
from dcnn.methods import (REGISTRY, MethodSpec, StepOptions, Supports, get_method,
                          load_plugin, method_table, parse_variant, register, unregister,
                          variants)

from conftest import ROOT, error_of
from test_cli import dcnn as dcnn_cli

import sys  # noqa: E402
sys.path.insert(0, str(ROOT / "tests" / "algorithms"))
from contract import contract_check  # noqa: E402

PLUGIN = str(ROOT / "tests" / "_toy_method.py")


@pytest.fixture
def toy():
    """The toy method registered for one test, then removed."""
    load_plugin(PLUGIN)
    mod = next(m for k, m in sys.modules.items() if k.startswith("dcnn_user_")
               and hasattr(m, "Toy"))
    register(mod.SPEC, replace=True)
    yield mod
    unregister("toy")


def test_registry_only_modules_name_no_method():
    """No string constant in runner/compare/config/prepare is a method or variant name."""
    # "centralized" is also the summary's key for the centralized reference solution
    names = set(variants()) - {"centralized"}
    for module in ("runner", "compare", "config", "prepare", "experiment"):
        tree = ast.parse((ROOT / "dcnn" / f"{module}.py").read_text())
        found = [n.value for n in ast.walk(tree)
                 if isinstance(n, ast.Constant) and isinstance(n.value, str)
                 and n.value in names]
        assert not found, (module, found)


def test_toy_method_runs_in_process_and_meets_the_contract(toy):
    gap, res = contract_check("toy", overrides=["algorithm.toy_step=0.05"], rounds=400)
    # average-then-step with a constant step: an O(s) neighbourhood of the ridge optimum
    assert 0 <= gap < 5e-2, gap
    assert res.summary["method"] == "toy" and res.summary["lr"] == 0.05


def test_toy_method_runs_through_dcnn_run_and_compare(tmp_path):
    base = ["--set", "run.iterations=20", "--set", "run.eval_every=10", "--set",
            "run.agents=4", "--set", "run.reference=false", "--quiet"]
    res, _ = dcnn_cli("run", "--plugin", PLUGIN, "--set", "algorithm.name='toy'",
                      "--set", "algorithm.toy_step=0.02", *base, "--out",
                      str(tmp_path / "run"), timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert s["method"] == "toy" and cfg["algorithm"]["toy_step"] == 0.02
    res, _ = dcnn_cli("compare", "--plugin", PLUGIN, "--methods", "toy,toy-small,gt", *base,
                      "--out", str(tmp_path / "cmp"), timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = (tmp_path / "cmp" / "compare.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["toy", "toy-small", "gt"]
    # without the plugin the name is unknown, and the message says how to load it
    res, _ = dcnn_cli("run", "--set", "algorithm.name='toy'", *base, timeout=120)
    assert res.returncode == 2 and "--plugin" in res.stderr


def test_options_are_per_method_and_validated():
    cfg = load_config(overrides=["algorithm.name='sil'", "algorithm.sil_noise=0.3"])
    assert resolve(cfg)["algorithm"]["sil_noise"] == 0.3
    assert "tau" not in resolve(cfg)["algorithm"]          # NEXT's key, not SIL's
    assert "sil_noise" not in resolve(load_config())["algorithm"]
    error_of(lambda: load_config(overrides=["algorithm.sil_noise=-1"]),
             "algorithm.sil_noise must be >= 0", kind=ConfigError)
    error_of(lambda: load_config(overrides=["algorithm.taux=1"]), "did you mean "
             "'algorithm.tau'", kind=ConfigError)
    # a key read by several methods has one meaning, narrowed by each method's builder
    error_of(lambda: dcnn.run_experiment(load_config(overrides=[
        "algorithm.name='ddp'", "algorithm.optimizer='lbfgs'", "run.progress=false"]),
        out=None, verbose=False), "not 'lbfgs'", kind=ConfigError)
    # the options objects validate like the config, naming the Python argument
    opts = get_method("next").options
    error_of(lambda: opts(alpha0=2.0), "alpha0 must be in (0, 1], got 2.0", kind=ConfigError)
    assert opts(tau=3).tau == 3.0


def test_register_refuses_clashes():
    from dataclasses import dataclass

    from dcnn.methods import option

    @dataclass(frozen=True)
    class Clash(StepOptions):
        tau: float = option(1.0)               # NEXT's tau is "auto" by default

    def build(exp, o):
        raise AssertionError("never built")

    error_of(lambda: register(MethodSpec("clash", "x", Clash, build)), "option 'tau'",
             "differs from 'next'", kind=ConfigError)
    error_of(lambda: register(MethodSpec("next-pl", "x", StepOptions, build)),
             "'next-pl'", "taken", kind=ConfigError)
    error_of(lambda: register(MethodSpec("gt", "x", StepOptions, build)),
             "registered already", kind=ConfigError)
    assert "clash" not in REGISTRY


def test_variants_and_supports_come_from_the_registry():
    assert parse_variant("next-fl") == {"name": "next", "surrogate": "fl"}
    assert get_method("extra").supports.refusal(directed=False, time_varying=True) \
        == "needs a static graph"
    assert get_method("ddp").supports.refusal(directed=True, time_varying=True) is None
    error_of(lambda: parse_variant("nxt-pl"), "did you mean 'next-pl'", kind=ConfigError)


def test_readme_method_table_is_the_registry():
    assert method_table() in (ROOT / "docs" / "methods.md").read_text()


@pytest.mark.parametrize("module", ["dcnn.methods.registry", "dcnn.experiment",
                                    "dcnn.data.datasets"])
def test_docstring_examples_run(module):
    import doctest
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0, result


def test_what_a_method_does_not_support_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "run"
    base = ["--set", "run.iterations=3", "--set", "run.reference=false", "--quiet",
            "--out", str(out)]
    res, _ = dcnn_cli("run", "--set", "algorithm.name='gt'", "--set",
                      "model.regularizer='l1'", *base, timeout=120)
    assert res.returncode == 2 and "smooth regularizer" in res.stderr
    assert "next" in res.stderr and "dgd" in res.stderr        # who can, from the registry
    assert not out.exists()
    # compare skips such a method with its reason and runs the others
    cfg = load_config(overrides=["run.iterations=3", "run.eval_every=3", "run.agents=4",
                                 "run.progress=false", "run.reference=false",
                                 "model.regularizer='l1'"])
    res = dcnn.run_compare(cfg, methods="next-fl,gt,dgd", out=tmp_path / "cmp",
                           verbose=False)
    assert list(res.histories) == ["next-fl", "dgd"]
    skipped = json.loads((tmp_path / "cmp" / "compare.json").read_text())["skipped"]
    assert list(skipped) == ["gt"] and "smooth regularizer" in skipped["gt"]


def test_variants_and_per_method_keys():
    cfg = load_config(overrides=["algorithm.name='next-fl'"])
    assert resolve(cfg)["algorithm"]["name"] == "next"
    assert resolve(cfg)["algorithm"]["surrogate"] == "fl"
    from dcnn.compare import parse_method
    assert parse_method("gt:alpha0=0.25") == {"name": "gt", "alpha0": 0.25}
    error_of(lambda: parse_method("gt:tau=1"), "'gt' has no option 'tau'", "alpha0",
             kind=ConfigError)
    # an engine's own rules are options checks, so compare refuses them up front
    error_of(lambda: dcnn.run_compare(load_config(overrides=["run.progress=false"]),
                                      methods=["gt", "ddp:schedule=diminishing"], out=None,
                                      verbose=False),
             "takes a constant step", kind=ConfigError)


def test_register_refuses_a_name_option_bad_defaults_and_rolls_back_a_failed_plugin(
        tmp_path):
    from dataclasses import dataclass

    from dcnn.methods import option

    def build(exp, o):
        raise AssertionError("never built")

    @dataclass(frozen=True)
    class Named(StepOptions):
        name: str = option("x")

    @dataclass(frozen=True, eq=False)
    class BadDefault(StepOptions):
        width: int = option(0, check=(lambda v: v >= 1, ">= 1"))

    error_of(lambda: register(MethodSpec("named", "x", Named, build)), "option 'name'",
             kind=ConfigError)
    error_of(lambda: register(MethodSpec("bad", "x", BadDefault, build)),
             "width must be >= 1, got 0", kind=ConfigError)
    plugin = tmp_path / "half.py"
    plugin.write_text("from dcnn.methods import MethodSpec, StepOptions, register\n"
                      "register(MethodSpec('half', 'x', StepOptions, None))\n"
                      "raise RuntimeError('broken after registering')\n")
    for _ in range(2):                       # the same message twice: nothing left behind
        error_of(lambda: load_plugin(str(plugin)), "broken after registering",
                 kind=ConfigError)
    assert "half" not in REGISTRY and "named" not in REGISTRY and "bad" not in REGISTRY
