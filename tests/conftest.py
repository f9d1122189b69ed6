"""Shared helpers: run a command under mpiexec with a hard timeout."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dcnn.errors import DcnnError

ROOT = Path(__file__).resolve().parents[1]


def mpiexec_path():
    exe = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep
                       + os.environ.get("PATH", ""))
    return exe


def run_mpi(n: int, args: list[str], *, timeout: float = 120, cwd=None, env=None):
    """``mpiexec -n n python args...``; fails the test (never hangs) past ``timeout`` s."""
    exe = mpiexec_path()
    if exe is None:
        pytest.fail("mpiexec not found: install the 'mpi' extra (pip install -e '.[mpi]')")
    cmd = [exe, "-n", str(n), sys.executable, *args]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              cwd=cwd or ROOT, env=full_env)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"mpiexec -n {n} {' '.join(args)} did not finish in {timeout} s: "
                    f"{exc.stderr}")


@pytest.fixture(scope="session", autouse=True)
def _one_reference_cache(tmp_path_factory):
    """One reference cache for the whole suite (``DCNN_CACHE``, which the commands the tests
    start inherit): each distinct centralized reference is solved once, not once per test."""
    before = os.environ.get("DCNN_CACHE")
    os.environ["DCNN_CACHE"] = str(tmp_path_factory.mktemp("dcnn-cache"))
    yield
    if before is None:
        os.environ.pop("DCNN_CACHE", None)
    else:
        os.environ["DCNN_CACHE"] = before


@pytest.fixture
def mpi():
    return run_mpi


def error_of(fn, *fragments, kind=DcnnError):
    """The ``kind`` error ``fn`` raises; its message is one line and holds every fragment."""
    with pytest.raises(kind) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)
    return msg
