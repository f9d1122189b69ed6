"""Where dcnn keeps what is costly to compute and cheap to keep (centralized references,
generated MNIST-1D arrays): ``DCNN_CACHE`` when set (an empty value: no disk cache), else
``$XDG_CACHE_HOME/dcnn``, else ``~/.cache/dcnn``."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ENV", "cache_folder"]

ENV = "DCNN_CACHE"


def cache_folder() -> Path | None:
    """The cache folder (see the module docstring), or ``None`` when it is switched off."""
    if ENV in os.environ:
        return Path(os.environ[ENV]).expanduser() if os.environ[ENV] else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dcnn"
