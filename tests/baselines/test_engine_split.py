"""Split models equal the unsplit one: pipeline gradients (every schedule, several numbers of
micro-batches), tensor-parallel forward passes and gradients (the MLP; the transformer by
heads, with and without sequence parallelism) and PTD-P gradients (data x tensor x pipeline
at every shape of 2, 4 and 8 ranks; the MLP and the transformer), under mpiexec."""
import json

import pytest
import torch
from _engine_cases import (full_gradient, l2, module, parse, pooled_problem, shards,
                           token_module, token_shards)

from dcnn.baselines import bubble_fraction

DEEP = "4,4,4,4,4,4,4"   # 8 Linear layers: interleaved 1F1B on 4 ranks has 8 stages
CASES = {
    2: ["pipeline/gpipe/1/4,4,4", "pipeline/gpipe/13/4,4,4", "pipeline/1f1b/2/4,4,4",
        "pipeline/1f1b/13/4,4,4", "pipeline/interleaved/2/4,4,4",
        "pipeline/interleaved/26/4,4,4", "tp/4,4", "tp/4,4,4", "tfm/0/4", "tfm/1/4",
        # PTD-P (dp, tp, pp) = (2, 1, 1), (1, 2, 1), (1, 1, 2)
        "ptdp/gpipe/1/2,1/4,4,4", "ptdp/interleaved/2/1,2/4,4,4", "ptdp/1f1b/2/1,1/4,4,4",
        # the transformer (4 heads): (1, 1, 2) interleaved (4 stages, one part each),
        # (1, 2, 1), (2, 1, 1)
        "tfmptdp/interleaved/2/1,1/4", "tfmptdp/1f1b/2/1,2/4", "tfmptdp/gpipe/13/2,1/4"],
    4: [f"pipeline/gpipe/2/{DEEP}", f"pipeline/1f1b/13/{DEEP}",
        f"pipeline/interleaved/2/{DEEP}", "tp/8,8,8", "tp/4,4", "tfm/0/4", "tfm/1/4",
        # every (dp, tp, pp) of 4 ranks: (2, 2, 1), (2, 1, 2), (1, 2, 2) (interleaved: 4
        # stages of one pair each), (4, 1, 1) (uneven blocks of 7, 7, 6, 6 samples),
        # (1, 4, 1), (1, 1, 4)
        "ptdp/gpipe/1/2,2/4,4,4", "ptdp/1f1b/13/2,1/4,4,4", f"ptdp/interleaved/2/1,2/{DEEP}",
        "ptdp/gpipe/1/4,1/4,4,4", "ptdp/gpipe/2/1,4/4,4,4", f"ptdp/1f1b/13/1,1/{DEEP}",
        # the transformer: (1, 2, 2) interleaved (a pipeline rank holds embedding + MLP or
        # attention + head), (2, 2, 1), (2, 1, 2) 1F1B, (1, 1, 4)
        "tfmptdp/interleaved/2/1,2/4",
        "tfmptdp/gpipe/13/2,2/4", "tfmptdp/1f1b/13/2,1/4", "tfmptdp/gpipe/2/1,1/4"],
    # (2, 2, 2), Megatron's shape: interleaved, 4 stages of one column/row pair each (MLP);
    # the transformer's four parts
    8: [f"ptdp/interleaved/1/2,2/{DEEP}", "tfmptdp/interleaved/1/2,2/4"],
}

# computed bytes per worker and step (26 samples, float64, 2 ranks): pipeline, boundaries
# between ranks carry activations forward and gradients back, averaged over the 2 workers;
# tensor parallel, ring all-reduces (2 (R-1)/R n entries per rank) of each row-wise output
# and of the input gradient of every column-wise layer but the first
BYTES = {
    "pipeline/gpipe/1/4,4,4": 2 * 26 * 4 * 8 / 2,            # one boundary of width 4
    "pipeline/interleaved/2/4,4,4": 2 * 26 * (4 + 4 + 4) * 8 / 2,   # 4 stages, 3 boundaries
    "tp/4,4": 26 * 4 * 8,                                       # pair (0, 2) forward only
    "tp/4,4,4": 26 * (4 + 2 + 4) * 8,          # pairs (0, 2), (4, 6): outputs 4, 2; input 4
    # transformer, 26 samples of 4 tokens, d = 8: n = 26 * 4 * 8 entries; six all-reduces
    # (o, fc2 forward; q, k, v, fc1 input gradients backward)
    "tfm/0/4": 6 * 26 * 4 * 8 * 8,
    # sequence parallel: 5 all-gathers and 4 reduce-scatters of n ((R-1)/R n each), the pooled
    # features (26 x 8) and the 3 LayerNorms' gradients (6 x 8) all-reduced
    "tfm/1/4": (5 + 4) * 26 * 4 * 8 * 8 / 2 + (26 * 8 + 6 * 8) * 8,
}
# PTD-P, bytes per worker and step by axis (b = 26 / dp samples per replica, float64)
AXES = {
    # 2 ranks: dp = 2 over 66 parameters, ring all-reduce 2 (R-1)/R n
    "ptdp/gpipe/1/2,1/4,4,4": {"pp": 0.0, "dp": 66 * 8},
    # 4 ranks, (2, 2, 1): one stage 3-4-4-4-2, pairs (0, 2) and (4, 6) for 13 samples per
    # replica: all-reduces of 13 x (4 + 2) outputs and 13 x 4 input gradient over 2 ranks,
    # 2 (R-1)/R n = n entries; dp, the 36 parameters one rank holds (8 + 12 + 10 + 6)
    "ptdp/gpipe/1/2,2/4,4,4": {"pp": 0.0, "tp": 13 * (4 + 2 + 4) * 8, "dp": 36 * 8},
    # the transformer on 2 ranks (26 samples of 4 tokens, d = 8: a cut carries 32 entries
    # per sample): (1, 1, 2) interleaved, 3 cuts between ranks; (1, 2, 1), 6 all-reduces of
    # 26 x 32; (2, 1, 1), the 554 parameters
    "tfmptdp/interleaved/2/1,1/4": {"pp": 3 * 2 * 26 * 32 * 8 / 2},
    "tfmptdp/1f1b/2/1,2/4": {"pp": 0.0, "tp": 6 * 26 * 32 * 8},
    "tfmptdp/gpipe/13/2,1/4": {"pp": 0.0, "dp": 554 * 8},
}
# the transformer's parts (embedding, attention, MLP, head): tensor-parallel all-reduces per
# micro-batch (o's output and q, k, v's input gradients; fc2's output and fc1's)
PART_ALLREDUCES = (0, 4, 2, 0)
# the collectives PyTorch ran for one gradient (counted by _split_script's dispatch mode), as
# the layouts state them
COMM = {"tfm/0/4": {"all_reduce": 6},
        "tfm/1/4": {"all_gather_into_tensor": 5, "reduce_scatter_tensor": 4, "all_reduce": 7}}


def _unsplit(method, widths):
    hidden = [int(h) for h in widths.split(",")]
    if method in ("tfm", "tfmptdp"):
        problem = pooled_problem(token_module(heads=hidden[0]), token_shards(), l2())
    else:
        problem = pooled_problem(module(hidden), shards(), l2())
    return problem, problem.model.w0


@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [2, 4, 8])
def test_split_models_equal_the_unsplit_model(mpi, ranks):
    res = mpi(ranks, ["tests/baselines/_split_script.py", *CASES[ranks]], timeout=150)
    assert res.returncode == 0, res.stderr[-3000:]
    out = parse(res.stdout)
    assert set(out) == set(CASES[ranks]), res.stdout[-2000:]
    for case, recs in out.items():
        method, *opts, widths = case.split("/")
        problem, w0 = _unsplit(method, widths)
        grad = full_gradient(problem, w0)
        assert len(recs) == ranks
        for rec in recs:
            g = torch.tensor(rec["grad"], dtype=torch.float64)
            assert float((g - grad).abs().max()) <= 1e-10, (case, rec["rank"])
            assert float((torch.tensor(rec["params"], dtype=torch.float64) - w0)
                         .abs().max()) == 0.0
        if ranks == 2 and case in BYTES:
            assert recs[0]["bytes_per_step"] == BYTES[case]
        if method in ("pipeline", "ptdp", "tfmptdp"):
            schedule, m = opts[0], int(opts[1])
            v = 2 if schedule == "interleaved" else 1
            info = recs[0]["info"]
            depth = ranks
            if method != "pipeline":
                dp, tp = map(int, opts[2].split(","))
                depth = ranks // (dp * tp)
                assert (info["dp"], info["tp"], info["pp"]) == (dp, tp, depth)
                assert info["method"] == "ptd-p"
                assert info["bytes_per_step"] == sum(info["bytes_by_axis"].values())
                if case in AXES:
                    assert info["bytes_by_axis"] == AXES[case]
                if tp > 1 and method == "ptdp":
                    assert min(info["tp_pairs_per_stage"]) >= 1
            if method == "tfmptdp":            # per rank: m x its parts' all-reduces
                assert len(info["stage_layers"]) == v * depth
                for rec in recs:
                    pp_rank = rec["rank"] // (dp * tp)
                    mine = [s for s in range(v * depth) if s % depth == pp_rank]
                    parts = [k for s in mine for k in range(*info["stage_layers"][s])]
                    want = m * sum(PART_ALLREDUCES[k] for k in parts) if tp > 1 else 0
                    assert rec["comm"].get("all_reduce", 0) == want, (case, rec["rank"])
            assert info["stages"] == v * depth
            assert info["stage_ranks"] == [s % depth for s in range(v * depth)]
            assert info["bubble_fraction"] == bubble_fraction(ranks=depth, microbatches=m,
                                                              virtual_stages=v)
        else:
            f = problem.model.apply(w0, problem.X[0])
            for rec in recs:
                out_tp = torch.tensor(rec["output"], dtype=torch.float64)
                assert float((out_tp - f).abs().max()) <= 1e-10, (case, rec["rank"])
            info = recs[0]["info"]
            if method == "tp":
                n_linear = len(widths.split(",")) + 1
                assert len(info["colwise_rowwise_pairs"]) == n_linear // 2
                assert len(info["replicated_layers"]) == n_linear % 2
            else:
                assert info["heads_per_rank"] == 4 // ranks
                assert info["tokens_per_rank"] == (4 // ranks if opts[0] == "1" else 4)
                for rec in recs:
                    assert rec["comm"] == COMM[case], (case, rec["rank"], rec["comm"])


@pytest.mark.mpi
def test_the_transformer_by_heads_trains_like_the_unsplit_one(mpi):
    """Training, not just one gradient: 3 steps (SGD with l2, Adam) of the transformer split by
    heads over 2 ranks, with and without sequence parallelism (whose LayerNorm gradients are
    partial sums, all-reduced before the update), equal the unsplit transformer's."""
    res = mpi(2, ["tests/baselines/_sp_train_script.py"], timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    (line,) = [x for x in res.stdout.splitlines() if x.startswith("RESULT ")]
    every = json.loads(line[len("RESULT "):])
    assert len(every) == 2                                      # every rank's measurement
    for out in every:
        assert set(out) == {"False-sgd", "False-adam", "True-sgd", "True-adam"}
        for run, (size, diff) in out.items():
            assert size == 2 and diff <= 1e-12, (run, diff)
