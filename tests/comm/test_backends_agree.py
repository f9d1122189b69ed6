"""Same seed, same trajectory: in-process vs MPI with 8 agents on 2 and 4 ranks."""
import re

import pytest

CASES = {
    "pl-mlp": ["run.iterations=25", "run.eval_every=25"],
    "fl-linear-uneven": ["run.iterations=25", "run.eval_every=25", "algorithm.surrogate='fl'",
                         "algorithm.tau=5.0", "model.hidden=[]", "data.name='diabetes'",
                         "topology.graph='ring'", "topology.dynamic='one_peer_exponential'"],
}


@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [2, 4])
@pytest.mark.parametrize("case", list(CASES))
def test_mpi_equals_in_process(mpi, ranks, case):
    res = mpi(ranks, ["tests/comm/_agree_script.py", "run.agents=8", *CASES[case]],
              timeout=150)
    assert res.returncode == 0, res.stderr[-3000:]
    m = re.search(r"MAXDIFF (\S+) OBJDIFF (\S+) SAMEBYTES (\S+) NORM (\S+)", res.stdout)
    assert m, res.stdout + res.stderr[-2000:]
    assert float(m.group(4)) > 0.01  # the iterates moved away from zero
    assert float(m.group(1)) <= 1e-10
    assert float(m.group(2)) <= 1e-10
    assert m.group(3) == "True"
