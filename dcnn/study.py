"""Studies as data: one TOML file names the cases of a comparison, ``dcnn study`` runs them.

A study (``experiments/studies/NAME.toml``) is a ``[study]`` table and one ``[[case]]`` per
comparison::

    [study]
    title = "NEXT against the decentralized baselines"
    about = "what the study asks (shown above its tables)"
    methods = ["next-pl", "next-fl", "gt", "dgd", "centralized-lbfgs"]
    seeds = 3                  # dcnn compare --seeds
    tune = true                # --tune
    tune_rounds = 200          # --tune-rounds (default: each case's run.iterations)
    links = ["lan", "wan"]     # --link
    gap = 0.01                 # --gap
    set = ["run.agents=8"]     # --set for every case

    [[case]]
    name = "breast_cancer-ring"
    config = "../compare/breast_cancer.toml"   # relative to the study file (optional)
    set = ["topology.graph='ring'", "topology.dynamic='static'"]
    methods = [...]            # optional: this case's own list

:func:`run_study` runs each case as one ``dcnn compare`` into ``OUT/<case>/`` (a method the
case's graph does not allow is left out of that case, with its reason) and writes ``OUT/study.md``
(the summary across the cases, then every case's table and verdict), ``OUT/study.csv`` (every
row, with its case) and ``OUT/study.json``. :func:`into_readme` puts ``study.md`` between the
markers ``<!-- study NAME -->`` and ``<!-- /study NAME -->`` of a Markdown file, so the tables
of ``experiments/README.md`` are written by the run, not typed.
"""
from __future__ import annotations

import csv
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .compare_tables import reach_cell
from .config import load_config, resolve
from .errors import ConfigError, DcnnError, DivergenceError, LaunchError

__all__ = ["Study", "Case", "load_study", "run_study", "into_readme", "check_markers",
           "study_markdown", "STUDY_DIR"]

STUDY_DIR = Path("experiments") / "studies"
_STUDY_KEYS = {"title", "about", "methods", "seeds", "tune", "tune_rounds", "links", "gap", "set"}
_CASE_KEYS = {"name", "config", "set", "methods"}


@dataclass(frozen=True)
class Case:
    name: str
    config: Path | None = None
    overrides: tuple[str, ...] = ()
    methods: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Study:
    name: str
    title: str
    path: Path
    methods: tuple[str, ...]
    cases: tuple[Case, ...]
    about: str = ""
    seeds: int = 1
    tune: bool = False
    tune_rounds: int | None = None
    links: tuple[str, ...] = ()
    gap: float = 0.01
    overrides: tuple[str, ...] = field(default=())


def _strings(value, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of strings, got {value!r}")
    return tuple(value)


def _find(ref: str) -> Path:
    path = Path(ref)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"study file {ref} does not exist; give a path to a study TOML "
                              f"or the name of one in {STUDY_DIR}/")
        return path
    named = STUDY_DIR / f"{ref}.toml"
    if not named.is_file():
        known = sorted(p.stem for p in STUDY_DIR.glob("*.toml")) if STUDY_DIR.is_dir() else []
        raise ConfigError(f"study {ref!r} is not in {STUDY_DIR}/ (run from the repository "
                          f"root, or give the file's path)"
                          + (f"; studies there: {', '.join(known)}" if known else ""))
    return named


def load_study(ref: str | Path) -> Study:
    """The study in file ``ref`` (or named ``ref`` in ``experiments/studies``), checked: an
    unknown key, a missing table, a bad value or a case's config that does not load is
    refused in one line that names the file."""
    path = _find(str(ref))
    where = str(path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not valid TOML: {exc}") from None
    extra = set(raw) - {"study", "case"}
    if extra or "study" not in raw or not raw.get("case"):
        raise ConfigError(f"{where} needs a [study] table and at least one [[case]]"
                          + (f"; unknown table {sorted(extra)[0]!r}" if extra else ""))
    s = raw["study"]
    bad = set(s) - _STUDY_KEYS
    if bad:
        raise ConfigError(f"{where}: [study] has no key {sorted(bad)[0]!r}; its keys are "
                          f"{', '.join(sorted(_STUDY_KEYS))}")
    if "methods" not in s or "title" not in s:
        raise ConfigError(f"{where}: [study] needs title and methods")
    cases, names = [], set()
    for k, c in enumerate(raw["case"]):
        bad = set(c) - _CASE_KEYS
        if bad or "name" not in c:
            raise ConfigError(f"{where}: case {k + 1} " + (
                f"has no key {sorted(bad)[0]!r}; its keys are {', '.join(sorted(_CASE_KEYS))}"
                if bad else "needs a name"))
        name = c["name"]
        if not isinstance(name, str) or not name or "/" in name or name in names:
            raise ConfigError(f"{where}: case name {name!r} must be a new, non-empty name "
                              "without '/'")
        names.add(name)
        config = None if "config" not in c else (path.parent / c["config"]).resolve()
        if config is not None and not config.is_file():
            raise ConfigError(f"{where}: case {name!r} names config {c['config']!r}, which "
                              f"is not a file ({config})")
        cases.append(Case(name, config, _strings(c.get("set", []), f"{where}: {name}.set"),
                          None if "methods" not in c else
                          _strings(c["methods"], f"{where}: {name}.methods")))
    study = Study(
        name=path.stem, title=str(s["title"]), path=path, about=str(s.get("about", "")),
        methods=_strings(s["methods"], f"{where}: study.methods"), cases=tuple(cases),
        seeds=s.get("seeds", 1), tune=s.get("tune", False), tune_rounds=s.get("tune_rounds"),
        links=_strings(s.get("links", []), f"{where}: study.links"), gap=s.get("gap", 0.01),
        overrides=_strings(s.get("set", []), f"{where}: study.set"))
    def bad(key, rule):
        raise ConfigError(f"{where}: study.{key} must be {rule}, got {s[key]!r}")
    if not isinstance(study.seeds, int) or isinstance(study.seeds, bool) or study.seeds < 1:
        bad("seeds", "a positive integer")
    if not isinstance(study.tune, bool):
        bad("tune", "true or false")
    if study.tune_rounds is not None and (not isinstance(study.tune_rounds, int)
                                          or isinstance(study.tune_rounds, bool)
                                          or study.tune_rounds < 1):
        bad("tune_rounds", "a positive integer")
    if not isinstance(study.gap, float) or not 0 < study.gap < 1:
        bad("gap", "a number in (0, 1)")
    from .link import parse_link
    for x in study.links:
        parse_link(x)
    for case in study.cases:                  # every case's config loads before anything runs
        try:
            _case_config(study, case)
        except ConfigError as exc:
            raise ConfigError(f"{where}: case {case.name!r}: {exc}") from None
    return study


def _case_config(study: Study, case: Case, extra: tuple[str, ...] = ()):
    return load_config(case.config, overrides=[*study.overrides, *case.overrides, *extra])


def run_study(study: Study | str | Path, *, out: str | Path, seeds: int | None = None,
              rounds: int | None = None, tune_rounds: int | None = None,
              tune_factors: tuple[float, ...] | None = None, only: list[str] | None = None,
              overrides: list[str] | tuple = (), tune: bool | None = None,
              resume: bool = False, verbose: bool = True, network=None) -> dict:
    """Run ``study``'s cases (``only``: those named) into ``out``; ``seeds``, ``rounds`` (every
    case's ``run.iterations``), ``tune_rounds`` and ``tune_factors`` (the relative grids)
    replace the study's own, ``tune = False`` runs every method at its defaults, and
    ``overrides`` (``--set``) come after every case's, for a shortened run. ``resume`` keeps
    the cases that ``out/study.json`` holds finished from an earlier run of the same study with
    the same options (in one process only: under mpiexec the ranks could see different
    folders). Returns ``study.json``'s content."""
    from .compare import _fits, run_compare
    if not isinstance(study, Study):
        study = load_study(study)
    cases = list(study.cases)
    if only:
        unknown = [n for n in only if n not in {c.name for c in cases}]
        if unknown:
            raise ConfigError(f"--cases {unknown[0]!r} is not a case of {study.name}; its cases "
                              f"are {', '.join(c.name for c in cases)}")
        cases = [c for c in cases if c.name in only]
    for what, v in (("--seeds", seeds), ("--rounds", rounds), ("--tune-rounds", tune_rounds)):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ConfigError(f"{what} must be a positive integer, got {v!r}")
    extra = (*overrides, *(() if rounds is None else (f"run.iterations={rounds}",)))
    plans = {}
    # every case's shortened config and method list before a run (those of the cases this
    # run leaves out too: --resume keeps them by their plan)
    for case in study.cases:
        try:
            cfg = _case_config(study, case, extra)
        except ConfigError as exc:
            raise ConfigError(f"{study.path}: case {case.name!r}: {exc}") from None
        methods = list(case.methods or study.methods)
        left_out = {m: why for m in methods if (why := _fits(m, cfg))}
        if len(left_out) == len(methods):
            why = "; ".join(f"{m} {w}" for m, w in left_out.items())
            raise ConfigError(f"{study.path}: case {case.name!r}: no method of its list runs "
                              f"on its graph ({why})")
        plans[case.name] = (cfg, [m for m in methods if m not in left_out], left_out)
    out = Path(out)
    changed = [f"--{k.replace('_', '-')} {v}" for k, v in (
        ("seeds", seeds), ("rounds", rounds), ("tune_rounds", tune_rounds),
        ("tune_factors", None if tune_factors is None else ",".join(map(str, tune_factors))),
        ("cases", ",".join(only) if only else None)) if v is not None] \
        + [f"--set {o}" for o in overrides] + (["--no-tune"] if tune is False else [])
    tune = study.tune if tune is None else tune
    result = {"study": study.name, "title": study.title, "file": str(study.path),
              "shortened": changed, "tuned": tune, "cases": {}}
    seeds = study.seeds if seeds is None else seeds
    tune_rounds = study.tune_rounds if tune_rounds is None else tune_rounds
    digests = {name: _digest(resolve(cfg), methods, seeds, tune, tune_rounds, tune_factors,
                             list(study.links), study.gap)
               for name, (cfg, methods, _) in plans.items()}
    # --resume: every case the folder holds finished with the same plan is kept, also the
    # ones this run does not name (--cases), in the study's order
    done = _finished(out, study, changed, digests) if resume else {}
    order = [c.name for c in study.cases]
    result["cases"] = dict(done)
    rank0 = _rank(network) == 0
    for k, case in enumerate(cases, 1):
        cfg, methods, left_out = plans[case.name]
        if case.name in done:
            if verbose:
                print(f"dcnn: study {study.name}: case {k}/{len(cases)} {case.name}: kept from "
                      f"{out / 'study.json'} (--resume)", flush=True)
            continue
        if verbose and rank0:
            print(f"dcnn: study {study.name}: case {k}/{len(cases)} {case.name}", flush=True)
        try:
            res = run_compare(cfg, methods=methods, out=out / case.name, network=network,
                              gap=study.gap, verbose=verbose, tune=tune,
                              tune_rounds=tune_rounds, seeds=seeds, links=list(study.links),
                              tune_factors=tune_factors if tune else None)
        except (DivergenceError, LaunchError) as exc:   # every method diverged, none fits:
            # the same on every rank; the case says so and the others still run
            result["cases"][case.name] = {"error": str(exc), "rows": [], "verdict": {},
                                          "left_out": left_out, "markdown": "",
                                          "plan": digests[case.name]}
            if verbose and rank0:
                print(f"dcnn: study {study.name}: case {case.name} failed: {exc}", flush=True)
        else:
            md = out / case.name / "compare.md"
            result["cases"][case.name] = {
                "rows": res.rows, "verdict": res.verdict, "targets": res.targets,
                "left_out": left_out,
                "metric": "mse" if res.task == "regression" else "accuracy",
                "markdown": md.read_text() if rank0 and md.is_file() else "",
                "plan": digests[case.name]}
        result["cases"] = {n: result["cases"][n] for n in order if n in result["cases"]}
        if rank0:                      # after every case: what ran is kept if a later one dies
            _write(out, study, result)
    if all("error" in c for c in result["cases"].values()):
        raise DcnnError(f"study {study.name}: every case failed; the first: "
                        f"{next(iter(result['cases'].values()))['error']}")
    return result


def _digest(*parts) -> str:
    """The sha256 of what a case runs (its resolved config, methods, seeds and protocol)."""
    import hashlib
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _finished(out: Path, study: Study, changed: list[str], digests: dict) -> dict:
    """The cases an earlier run of ``study`` with the same options finished in ``out``
    (``--resume``): ``{name: case}``; a case that failed there, or whose plan (config,
    methods, seeds, protocol) has changed since, runs again."""
    from .comm import launched_by_mpi
    if launched_by_mpi():
        raise ConfigError("--resume runs in one process (under mpiexec the ranks could see "
                          "different folders); run it without mpiexec, or rerun the cases "
                          "left with --cases")
    path = out / "study.json"
    if not path.is_file():
        return {}
    try:
        old = json.loads(path.read_text())
        kept = {n: c for n, c in old["cases"].items()
                if "error" not in c and c.get("plan") == digests.get(n)}
        same = (old["study"], [x for x in old["shortened"] if not x.startswith("--cases ")])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"--resume: {path} is not a study result ({exc}); give another "
                          "--out or delete it") from None
    if same != (study.name, [x for x in changed if not x.startswith("--cases ")]):
        raise ConfigError(f"--resume: {path} holds study {old['study']!r} run with "
                          f"{' '.join(same[1]) or 'no options'}; resume it with the same "
                          "options, or give another --out")
    return kept


def _rank(network) -> int:
    if network is not None:
        return network.rank
    from .comm import launched_by_mpi
    if not launched_by_mpi():
        return 0
    from mpi4py import MPI
    return MPI.COMM_WORLD.Get_rank()


def _write(out: Path, study: Study, result: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = [{"case": name, **r} for name, c in result["cases"].items() for r in c["rows"]]
    keys = list(dict.fromkeys(k for r in rows for k in r))
    _replace(out / "study.csv", lambda fh: (w := csv.DictWriter(fh, fieldnames=keys),
                                            w.writeheader(), w.writerows(rows)))
    from .report import _clean
    _replace(out / "study.json", lambda fh: fh.write(json.dumps(
        _clean(result), indent=2, default=str) + "\n"))
    _replace(out / "study.md", lambda fh: fh.write(study_markdown(study, result)))


def _replace(path: Path, write) -> None:
    """Write ``path`` through a temporary file and a rename: an earlier file stays whole."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w", newline="") as fh:
        write(fh)
    os.replace(tmp, path)


def _cell(row: dict, key: str) -> str:
    if row["status"] == "diverged":
        return "diverged"
    cell = reach_cell(row, key, ".4g")
    return f"{cell} seeds" if "/" in cell else cell


def study_markdown(study: Study, result: dict) -> str:
    """``study.md``: the summary (rounds to the test target per case and method), then each
    case's ``compare.md`` (its table, modelled times, crossovers and verdict)."""
    methods = list(dict.fromkeys(r["method"] for c in result["cases"].values()
                                 for r in c["rows"]))
    lines = [f"### {study.title}", ""]
    if study.about:
        lines += [study.about.strip(), ""]
    seeds = {r.get("seeds", 1) for c in result["cases"].values() for r in c["rows"]}
    k = max(seeds) if seeds else 1
    short = " ".join(result.get("shortened") or [])
    lines += [f"`dcnn study {study.path.as_posix()}{' ' + short if short else ''}`"
              + f" ({k} seed{'s' if k > 1 else ''}"
              + (", tuned" if result.get("tuned", study.tune) else ", untuned defaults")
              + "). Rounds to the test target (mean over the seeds; `k/K seeds`: reached on "
              "k of them only; `-`: not reached):", "",
              "| case | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for name, c in result["cases"].items():
        by = {r["method"]: r for r in c["rows"]}
        lines.append(f"| {name} | " + " | ".join(
            _cell(by[m], "test_rounds") if m in by else "n/a" for m in methods) + " |")
    lines.append("")
    for name, c in result["cases"].items():
        lines += [f"#### {name}", "", c["markdown"].strip() if "error" not in c else
                  f"Failed: {c['error']}", ""]
        if c["left_out"]:
            lines += ["Left out: " + "; ".join(f"{m} ({why})" for m, why in
                                                c["left_out"].items()), ""]
    return "\n".join(lines).rstrip() + "\n"


def check_markers(readme: str | Path, name: str) -> str:
    """``readme``'s text, or a one-line ConfigError unless it has one ``<!-- study NAME -->``
    line and one ``<!-- /study NAME -->`` line after it."""
    readme = Path(readme)
    start, end = f"<!-- study {name} -->", f"<!-- /study {name} -->"
    text = readme.read_text() if readme.is_file() else ""
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise ConfigError(f"--into {readme} needs one '{start}' line and one '{end}' line "
                          "after it, where the study's tables go; add them or drop --into")
    return text


def into_readme(study_md: str, readme: str | Path, name: str) -> Path:
    """Replace the block between ``<!-- study NAME -->`` and ``<!-- /study NAME -->`` of
    ``readme`` with ``study_md`` (the file is rewritten whole, by a rename)."""
    readme = Path(readme)
    text = check_markers(readme, name)
    start, end = f"<!-- study {name} -->", f"<!-- /study {name} -->"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    _replace(readme, lambda fh: fh.write(f"{head}{start}\n{study_md.rstrip()}\n{end}{tail}"))
    return readme
