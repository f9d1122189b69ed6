"""Importing the user's code the normal Python way: a ``.py`` file by its path, or a module
from ``sys.path``; used for ``model.name = "file.py:Name"`` and ``dcnn --plugin FILE``."""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from .errors import ConfigError

__all__ = ["import_source", "import_object"]


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def import_source(source: str, *, where: str) -> ModuleType:
    """The module ``source`` names: a path (``*.py`` or containing ``/``), imported once per
    process, or a dotted module name."""
    if source.endswith(".py") or "/" in source or "\\" in source:
        path = Path(source).expanduser()
        if not path.is_file():
            raise ConfigError(f"{where}: file {str(path)!r} does not exist; give the path of "
                              "a .py file (relative to the working directory)")
        key = "dcnn_user_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
        if key in sys.modules:
            return sys.modules[key]
        spec = importlib.util.spec_from_file_location(key, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module            # classes defined there pickle and repr well
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(key, None)
            raise ConfigError(f"{where}: importing {str(path)!r} failed ({_one_line(exc)}); "
                              "fix the file") from None
        return module
    try:
        return importlib.import_module(source)
    except ImportError as exc:
        raise ConfigError(f"{where}: module {source!r} cannot be imported ({_one_line(exc)}); "
                          "install it or give a file path 'path/to/file.py'") from None


def import_object(ref: str, *, where: str) -> Any:
    """The object ``ref`` = ``"path/to/file.py:Name"`` or ``"package.module:name"`` names."""
    source, _, name = ref.rpartition(":")
    if not source or not name:
        raise ConfigError(f"{where} = {ref!r} is not 'path/to/file.py:Name' or "
                          "'package.module:name'; add ':' and the class or factory name")
    module = import_source(source, where=f"{where} = {ref!r}")
    obj = module
    for part in name.split("."):
        if not hasattr(obj, part):
            have = [k for k in vars(module) if not k.startswith("_")]
            raise ConfigError(f"{where} = {ref!r}: {source!r} has no {name!r} (it has: "
                              f"{', '.join(have[:12]) or 'nothing public'})")
        obj = getattr(obj, part)
    return obj
