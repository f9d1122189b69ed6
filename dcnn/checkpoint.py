"""Checkpoints of the one loop: the complete state of a run, written atomically, read safely.

A checkpoint is the folder ``DIR/checkpoint/`` (``DIR`` the run's output folder), written by
rank 0:

- ``state-<iteration>-<tag>.npz`` (``numpy.savez``: plain arrays): every field of the
  algorithm's state. The fields the state class names in ``ROWS`` (iterates, trackers, stored
  gradients, push-sum weights, ...) are per agent: they are gathered over the ranks into
  ``(N, ...)`` arrays indexed by global agent id. The other fields (iteration, step size,
  optimizer memory, ...) are the same on every rank and saved once. What a method or its
  surrogate remembers between iterations (PL's warm starts, the block-Jacobi call count,
  a resolved ``tau`` or ``lr``) is part of the state, so nothing else is saved: this module
  knows state fields only, never an algorithm's or a surrogate's internals.
- ``manifest.json``: format and version, the iteration, the layout of every field (kind,
  dtype, shape), the part of the resolved config that defines the trajectory and its
  sha256, the resolved step sizes (``tau``, ``lr``), the History so far, the loop's counters
  (bytes sent, time) and the sha256 of the npz file.

**Atomic.** The npz is written under a temporary name, flushed to disk and renamed to a name
of its own; then the manifest likewise. The rename of the manifest is the commit: until it
happens, the previous manifest and the npz it names are untouched, so a crash mid-write
(``SIGKILL``, a full disk) leaves the last good checkpoint readable. Older npz files are
removed after the commit.

**Random state.** There is none beyond what is saved: every random draw of the loop is a pure
function of ``(seed, t, agent)`` (mini-batches, link failures, random graphs) or of a state
field (the block-Jacobi surrogate's call count picks its random blocks), and the loop never
uses torch's or numpy's global generators.

**Safe.** Nothing is unpickled: the manifest is JSON and the arrays are read with
``allow_pickle=False`` (an object array is refused). The npz must match the manifest's
sha256 and holds the sha256 of the manifest's body, so an edited or truncated file of
either kind, a missing field, a shape or dtype that does not fit the run, or a config that
differs from ``DIR/config.json`` is refused with one :class:`~dcnn.errors.CheckpointError`
line naming the file and the fix. (The checksums catch corruption and edits, not a forger
who recomputes them.)

**Rank-count independent.** Per-agent rows are stored by global agent id, so ``R`` ranks
resume what ``R'`` ranks wrote (same ``N``). On the same rank count the resumed run is
bitwise the uninterrupted one; on another it agrees to rounding (its mixing sums in another
order), as any two rank counts do (within 1e-10 on the tests' problems).

**Resume** (:func:`dcnn.runner.resume_experiment`, ``dcnn run --resume DIR``) may change only
the keys of :data:`RESUME_FREE`, which do not change the trajectory: ``run.iterations`` to
extend a run, and how it runs (progress, threads, timeout, backend, checkpoint interval,
reference solve).
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import json
import os
import re
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import CheckpointError

__all__ = ["Checkpoint", "Checkpointer", "load_checkpoint", "read_checkpoint",
           "trajectory_config", "config_difference", "row_fields", "RESUME_FREE", "FOLDER",
           "MANIFEST"]

# version 2: the surrogate's memory is state fields (version 1 kept it in a "surrogate" part)
FORMAT, VERSION = "dcnn-checkpoint", 2
FOLDER, MANIFEST = "checkpoint", "manifest.json"
RESUME_FREE = ("run.iterations", "run.checkpoint_every", "run.progress", "run.threads",
               "run.comm_timeout", "run.reference", "run.reference_budget", "run.backend",
               "run.blowup")
_STATE_FILE = re.compile(r"state-\d{8}-[0-9a-f]{8}\.npz")
_BODY_KEY = "__manifest_sha256__"
_REQUIRED = ("format", "version", "iteration", "state_class", "agents", "fields", "config",
             "config_sha256", "info", "history", "counters", "state_file", "state_sha256")
_FIX = "delete DIR/checkpoint (or restore it from a backup) and start the run again"


# ---- the config a checkpoint belongs to -----------------------------------------------------

def trajectory_config(resolved: dict) -> dict:
    """The resolved config without the :data:`RESUME_FREE` keys: what fixes the trajectory."""
    out = copy.deepcopy(resolved)
    for item in RESUME_FREE:
        section, key = item.split(".")
        out.get(section, {}).pop(key, None)
    return out


def config_difference(a: dict, b: dict) -> str | None:
    """The first ``section.key`` whose value differs between two resolved configs, as
    ``"section.key = A vs B"``; ``None`` when equal."""
    for section in sorted(set(a) | set(b)):
        sa, sb = a.get(section, {}), b.get(section, {})
        for key in sorted(set(sa) | set(sb)):
            if sa.get(key, "<unset>") != sb.get(key, "<unset>"):
                return f"{section}.{key} = {sa.get(key, '<unset>')!r} vs " \
                       f"{sb.get(key, '<unset>')!r}"
    return None


def _digest(obj) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


# ---- what is saved --------------------------------------------------------------------------

def row_fields(state) -> tuple[str, ...]:
    """The per-agent fields of ``state`` (its class's ``ROWS``; ``("X",)`` if it names none)."""
    rows = tuple(getattr(type(state), "ROWS", ("X",)))
    names = {f.name for f in dataclasses.fields(state)}
    unknown = [r for r in rows if r not in names]
    if unknown:
        raise TypeError(f"{type(state).__name__}.ROWS names {unknown}, which are not fields")
    return rows


def _numpy(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().cpu().numpy())


def _spec(kind: str, arr: np.ndarray) -> dict:
    return {"kind": kind, "dtype": arr.dtype.name, "shape": list(arr.shape)}


def _rows(value: torch.Tensor, network) -> np.ndarray:
    """All agents' rows of ``value`` (collective; empty rows need no exchange)."""
    if value.numel() == 0:
        return np.zeros((network.n_agents, *value.shape[1:]),
                        dtype=torch.empty(0, dtype=value.dtype).numpy().dtype)
    return _numpy(network.allgather_rows(value))


def _encode(state, *, network) -> tuple[dict, dict]:
    """``(arrays, fields layout)`` of every field of ``state``; collective (gathers the
    rows)."""
    rows = set(row_fields(state))
    arrays, layout = {}, {}
    for f in dataclasses.fields(state):
        name, value = f.name, getattr(state, f.name)
        if name in rows:
            arrays[name] = _rows(value, network)
            layout[name] = _spec("rows", arrays[name])
        elif isinstance(value, torch.Tensor):
            arrays[name] = _numpy(value)
            layout[name] = _spec("tensor", arrays[name])
        elif isinstance(value, (tuple, list)) and all(isinstance(v, torch.Tensor)
                                                       for v in value):
            layout[name] = {"kind": "tuple", "items": len(value)}
            for k, item in enumerate(value):
                arrays[f"{name}.{k}"] = _numpy(item)
                layout[f"{name}.{k}"] = _spec("tensor", arrays[f"{name}.{k}"])
        elif isinstance(value, (bool, int, float)):
            kind = type(value).__name__
            arrays[name] = np.array(value, dtype={"bool": np.bool_, "int": np.int64,
                                                  "float": np.float64}[kind])
            layout[name] = _spec(kind, arrays[name])
        else:
            raise CheckpointError(f"state field {type(state).__name__}.{name} holds a "
                                  f"{type(value).__name__}, which a checkpoint cannot save; "
                                  "keep tensors, tuples of tensors and numbers in the state")
    return arrays, layout


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:   # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:   # pragma: no cover
        pass
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    """``data`` into ``path`` by a flushed temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _commit(directory: Path, body: dict, arrays: dict) -> None:
    """Write the npz, then commit it by renaming the manifest over the old one."""
    directory.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, **arrays, **{_BODY_KEY: np.array(_digest(body))})
    data = buf.getvalue()
    _write_atomic(directory / body["state_file"], data)
    _fsync_dir(directory)
    manifest = {**body, "state_sha256": hashlib.sha256(data).hexdigest()}
    _write_atomic(directory / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
    _fsync_dir(directory)
    for p in directory.iterdir():   # older states and leftovers of a crashed write
        if p.name != body["state_file"] and (p.name.startswith("state-")
                                             or ".tmp-" in p.name):
            p.unlink(missing_ok=True)


class Checkpointer:
    """Writes checkpoints of one run into ``directory`` every ``every`` iterations (0: only
    the last finite state when the run diverges) and at the end of the run.

    ``config`` is the run's resolved config (its :func:`trajectory_config` is recorded),
    ``info`` the resolved values a resume reuses (``tau``, ``adapt_tau``, ``lr``, ``solver``)
    and the sha256 of the run's data and model (``inputs``), which a resume must match. ``before_first`` runs
    on rank 0 before the first write (the runner writes ``config.json`` there).
    """

    def __init__(self, directory: str | Path, *, every: int, config: dict, info: dict,
                 before_first: Callable[[], object] | None = None):
        if isinstance(every, bool) or not isinstance(every, int) or every < 0:
            raise CheckpointError(f"run.checkpoint_every must be an integer >= 0, got {every!r}")
        self.directory = Path(directory)
        self.every = every
        self.config = trajectory_config(config)
        self.info = {k: v for k, v in info.items()
                     if k in ("tau", "adapt_tau", "lr", "solver", "inputs")}
        self._before_first = before_first

    def due(self, t: int, iterations: int) -> bool:
        """Whether iteration ``t`` is written: every ``every``-th and the last one."""
        return self.every > 0 and (t % self.every == 0 or t == iterations)

    def save(self, state, *, network, history, counters: dict,
             reason: str = "periodic") -> Path:
        """Write ``state`` (collective: every rank calls it; rank 0 writes); returns the
        folder. Every rank raises the same :class:`CheckpointError` if the write fails."""
        arrays, layout = _encode(state, network=network)
        def write() -> str | None:
            t = int(state.t)
            body = {"format": FORMAT, "version": VERSION, "iteration": t,
                    "reason": reason, "state_class": type(state).__name__,
                    "agents": network.n_agents, "ranks": network.size, "fields": layout,
                    "config": self.config,
                    "config_sha256": _digest(self.config), "info": self.info,
                    "history": [dict(r) for r in history.records],
                    "counters": {k: float(v) for k, v in counters.items()},
                    "state_file": f"state-{t:08d}-{uuid.uuid4().hex[:8]}.npz"}
            try:
                if self._before_first is not None:
                    self._before_first()
                    self._before_first = None
                _commit(self.directory, body, arrays)
            except OSError as exc:
                return (f"cannot write the checkpoint into {self.directory}: "
                        f"{exc.strerror or exc}; free disk space or give another --out folder")
            return None

        # the other ranks wait as long as rank 0 writes and sends heartbeats
        error = network.on_root(write, what=f"writing a checkpoint into {self.directory}")
        if error:
            raise CheckpointError(error)
        return self.directory


# ---- reading --------------------------------------------------------------------------------

def _bad(path, what: str) -> CheckpointError:
    return CheckpointError(f"{path} {what}; the checkpoint cannot be used: {_FIX}")


@dataclass(frozen=True)
class Checkpoint:
    """A verified checkpoint: its manifest and every array (all ``N`` agents' rows)."""

    directory: Path
    manifest: dict
    arrays: dict

    @property
    def iteration(self) -> int:
        return int(self.manifest["iteration"])

    @property
    def counters(self) -> dict:
        return dict(self.manifest["counters"])

    @property
    def info(self) -> dict:
        return dict(self.manifest["info"])

    def history(self):
        """The History recorded up to the checkpoint (a fresh copy)."""
        from .metrics import History
        return History(records=[dict(r) for r in self.manifest["history"]])

    @property
    def _file(self) -> Path:
        return self.directory / self.manifest["state_file"]

    def restore(self, state0, *, algorithm, problem, network):
        """The saved state for this process's agents (``problem.agent_ids``), shaped like
        ``state0`` (what ``algorithm.init`` returned for the same run): its per-agent rows
        taken by global agent id, its other fields as saved."""
        m, name = self.manifest, type(state0).__name__
        if m["state_class"] != name:
            raise CheckpointError(f"{self._file} holds a {m['state_class']}, but this run's "
                                  f"algorithm {getattr(algorithm, 'name', '?')!r} keeps a "
                                  f"{name}; resume with the config of the run that wrote it")
        if m["agents"] != network.n_agents:
            raise CheckpointError(f"{self._file} holds {m['agents']} agents, this run has "
                                  f"{network.n_agents}; resume with run.agents = {m['agents']}")
        ids = list(problem.agent_ids)
        values = {f.name: self._value(f.name, getattr(state0, f.name), ids)
                  for f in dataclasses.fields(state0)}
        return dataclasses.replace(state0, **values)

    def _value(self, name: str, current, ids: list[int]):
        spec = self.manifest["fields"].get(name)
        if spec is None:
            raise CheckpointError(f"{self._file} has no field {name!r}; it was written by "
                                  "another version or algorithm: resume with the config and "
                                  "dcnn version that wrote it")
        kind = spec["kind"]
        if isinstance(current, torch.Tensor):
            arr = self.arrays[name]
            want = np.dtype(torch.empty(0, dtype=current.dtype).numpy().dtype)
            if kind == "rows":
                fits = arr.shape == (self.manifest["agents"], *current.shape[1:])
                arr = arr[ids] if fits else arr
            else:
                fits = kind == "tensor" and arr.ndim == current.ndim and (
                    arr.shape[1:] == tuple(current.shape[1:]) if arr.ndim >= 2
                    else arr.shape == tuple(current.shape))
            if not fits or arr.dtype != want:
                raise CheckpointError(
                    f"{self._file}: field {name!r} is {kind} {arr.dtype.name} "
                    f"{tuple(self.arrays[name].shape)}, this run needs {want.name} rows "
                    f"like {tuple(current.shape)}; the checkpoint was written for another "
                    "model, dtype or agent count: resume with the run's own config")
            return torch.from_numpy(np.array(arr, copy=True))
        if isinstance(current, (tuple, list)):
            if kind != "tuple" or spec.get("items") != len(current):
                raise CheckpointError(f"{self._file}: field {name!r} should hold "
                                      f"{len(current)} tensors; resume with the run's own "
                                      "config")
            return type(current)(self._value(f"{name}.{k}", item, ids)
                                 for k, item in enumerate(current))
        cast = {"bool": bool, "int": int, "float": float}
        if kind != type(current).__name__ or kind not in cast:
            raise CheckpointError(f"{self._file}: field {name!r} is a {kind}, this run "
                                  f"needs a {type(current).__name__}; resume with the run's "
                                  "own config")
        return cast[kind](self.arrays[name][()])


def _parse(directory: Path, manifest_text: str, data: bytes) -> Checkpoint:
    """Verify and decode a checkpoint's two files (pure: every rank gets the same verdict)."""
    mpath = directory / MANIFEST
    try:
        manifest = json.loads(manifest_text)
    except (ValueError, RecursionError):
        raise _bad(mpath, "is not valid JSON (truncated or edited)") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _bad(mpath, f"is not a dcnn checkpoint manifest (no \"format\": \"{FORMAT}\")")
    if manifest.get("version") != VERSION:
        raise CheckpointError(f"{mpath} has format version {manifest.get('version')!r}; this "
                              f"dcnn reads version {VERSION}: resume with the dcnn version "
                              "that wrote it")
    missing = [k for k in _REQUIRED if k not in manifest]
    if missing:
        raise _bad(mpath, f"lacks {', '.join(missing)}")
    name = manifest["state_file"]
    if not isinstance(name, str) or not _STATE_FILE.fullmatch(name):
        raise _bad(mpath, f"names the state file {name!r}, not state-<iteration>-<tag>.npz")
    spath = directory / name
    if hashlib.sha256(data).hexdigest() != manifest["state_sha256"]:
        raise _bad(spath, f"does not match the sha256 recorded in {MANIFEST} (truncated, "
                          "corrupted or edited)")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except ValueError as exc:
        if "pickle" in str(exc):
            raise _bad(spath, "holds a pickled object array, which is never loaded") from None
        raise _bad(spath, f"is not a readable npz archive ({exc})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise _bad(spath, f"is not a readable npz archive ({exc})") from None
    body = {k: v for k, v in manifest.items() if k != "state_sha256"}
    stamp = arrays.pop(_BODY_KEY, None)
    if stamp is None or stamp.shape != () or str(stamp) != _digest(body):
        raise _bad(mpath, f"was edited after the checkpoint was written (its content does "
                          f"not match the sha256 stored in {name})")
    for field, spec in manifest["fields"].items():
        if spec.get("kind") == "tuple":
            continue
        arr = arrays.get(field)
        if arr is None:
            raise _bad(spath, f"lacks the field {field!r} that {MANIFEST} lists")
        if arr.dtype.name != spec.get("dtype") or list(arr.shape) != spec.get("shape"):
            raise _bad(spath, f"field {field!r} is {arr.dtype.name} {list(arr.shape)}, "
                              f"{MANIFEST} says {spec.get('dtype')} {spec.get('shape')}")
        if spec["kind"] == "rows" and arr.shape[:1] != (manifest["agents"],):
            raise _bad(spath, f"field {field!r} has {arr.shape[0]} rows for "
                              f"{manifest['agents']} agents")
    if _digest(manifest["config"]) != manifest["config_sha256"]:
        raise _bad(mpath, "holds a config that does not match its config_sha256")
    for rec in manifest["history"]:
        if not isinstance(rec, dict) or "iteration" not in rec:
            raise _bad(mpath, "holds a malformed history record")
    return Checkpoint(directory=directory, manifest=manifest, arrays=arrays)


def read_checkpoint(directory: str | Path) -> Checkpoint:
    """Read and verify the checkpoint in ``directory`` (``DIR/checkpoint``) in this process."""
    directory = Path(directory)
    manifest_text, data = _read_files(directory)
    return _parse(directory, manifest_text, data)


def _read_files(directory: Path) -> tuple[str, bytes]:
    mpath = directory / MANIFEST
    if not mpath.is_file():
        raise CheckpointError(f"no checkpoint in {directory} ({MANIFEST} is missing); a run "
                              "writes one with --set run.checkpoint_every=K (K iterations)")
    try:
        text = mpath.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _bad(mpath, f"cannot be read ({exc})") from None
    try:
        name = json.loads(text).get("state_file", "")
    except (ValueError, AttributeError, RecursionError):
        return text, b""     # _parse names the problem
    if not isinstance(name, str) or not _STATE_FILE.fullmatch(name):
        return text, b""
    spath = directory / name
    try:
        return text, spath.read_bytes()
    except OSError as exc:
        raise _bad(spath, f"cannot be read ({exc.strerror or exc}) though {MANIFEST} names "
                          "it") from None


def load_checkpoint(directory: str | Path, *, network, config: dict) -> Checkpoint:
    """The checkpoint in ``directory`` on every rank (collective): rank 0 reads the files,
    every rank verifies the same bytes, so all accept or all raise the same
    :class:`CheckpointError`. It must belong to ``config`` (the resolved config to resume)."""
    directory = Path(directory)
    def read():
        try:
            return _read_files(directory)
        except CheckpointError as exc:
            return str(exc)

    payload = network.on_root(read, what=f"reading the checkpoint in {directory}")
    if isinstance(payload, str):
        raise CheckpointError(payload)
    ckpt = _parse(directory, *payload)
    diff = config_difference(ckpt.manifest["config"], trajectory_config(config))
    if diff is not None:
        raise CheckpointError(f"{directory / MANIFEST} was written by another config than "
                              f"{directory.parent / 'config.json'} ({diff}); resume with the "
                              "config of the run that wrote the checkpoint")
    return ckpt

