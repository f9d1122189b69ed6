"""A cache of centralized references, keyed by everything that determines them.

The reference (:func:`dcnn.reference.centralized_reference`) is a pure function of the pooled
training data, the test data, the model (its architecture and initial weights), the loss, the
regulariser and the dtype; in a short run it costs more than the run itself. A reference is
therefore kept, under the sha256 of those inputs, in this process (the last :data:`KEEP`) and
in the cache folder (:func:`dcnn.cache.cache_folder`: ``DCNN_CACHE``, else ``~/.cache/dcnn``;
``DCNN_CACHE=""`` switches it off), in ``reference/`` as one JSON file per key, so that later
runs and other processes reuse it.

What the key holds: the data and model fingerprints of :func:`dcnn.prepare.fingerprint`
(train and test arrays; parameter names, shapes and initial values), the task, the number of
classes and the encoded targets, the ``model`` section of
the config (architecture, activation, loss, regulariser, ``lam``), ``run.dtype``, the bytes of
a model file (``model.name = "file.py:Name"``), :data:`VERSION` and dcnn's and torch's versions.
A model given as a Python object is never cached (its ``forward`` is code, not data: the
runner passes no key for it).
An unreadable or malformed cache file is ignored and rewritten.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections import OrderedDict
from pathlib import Path

from .cache import ENV, cache_folder

__all__ = ["reference_key", "lookup", "store", "KEEP", "VERSION", "ENV"]

VERSION = 1          # bump when the reference solver or its tolerances change
FIELDS = {"objective", "grad_norm", "train_metric", "test_metric", "iterations", "solver"}
KEEP = 32            # references kept in memory
_MEMORY: OrderedDict[str, dict] = OrderedDict()


def reference_key(exp) -> str | None:
    """The cache key of ``exp``'s centralized reference, or None when it cannot be cached."""
    import torch

    from . import __version__
    from .prepare import arrays_sha256, fingerprint
    from .runner import PYTHON_MODEL
    model = exp.cfg.model
    if model.name.startswith(PYTHON_MODEL):
        return None
    ds = exp.dataset
    parts = {"version": VERSION, "dcnn": __version__, "torch": torch.__version__,
             "fingerprint": fingerprint(exp), "model": dataclasses.asdict(model),
             "dtype": exp.cfg.run.dtype, "task": ds.task, "classes": ds.n_classes,
             # the encoded targets (they follow the task and the classes)
             "targets": arrays_sha256(exp.T_train, exp.T_test)}
    source, _, _ = model.name.rpartition(":")
    if source:
        try:
            parts["model_file"] = hashlib.sha256(Path(source).read_bytes()).hexdigest()
        except OSError:
            return None
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _file(key: str) -> Path | None:
    folder = cache_folder()
    return folder / "reference" / f"{key}.json" if folder else None


def lookup(key: str | None) -> dict | None:
    """The reference stored under ``key`` (memory first, then ``DCNN_CACHE``), or None."""
    if key is None:
        return None
    if key in _MEMORY:
        _MEMORY.move_to_end(key)
        return dict(_MEMORY[key])
    path = _file(key)
    if path is None or not path.is_file():
        return None
    try:
        ref = json.loads(path.read_text())
        if not isinstance(ref, dict) or ref.get("key") != key or not FIELDS <= set(ref):
            return None
    except (OSError, ValueError):
        return None
    ref.pop("key")
    _remember(key, ref)
    return dict(ref)


def store(key: str | None, ref: dict, *, disk: bool = True) -> None:
    """Keep ``ref`` under ``key`` in memory and, with ``DCNN_CACHE`` set and ``disk``, on disk
    (written to a temporary file and renamed, so a reader never sees half a file; a write that
    fails leaves the run as it was: the cache is only a saving)."""
    if key is None:
        return
    _remember(key, ref)
    if not disk:
        return
    path = _file(key)
    if path is None:
        return
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({**ref, "key": key}))
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def _remember(key: str, ref: dict) -> None:
    _MEMORY[key] = dict(ref)
    _MEMORY.move_to_end(key)
    while len(_MEMORY) > KEEP:
        _MEMORY.popitem(last=False)
