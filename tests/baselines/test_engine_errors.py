"""Every misconfiguration gives a one-line ConfigError naming the bad value and the fix."""
import pytest
import torch
from _engine_cases import module, parse, shards, token_module, token_shards
from conftest import error_of

from dcnn.baselines import (init_world, rank_agents, split_stages, tp_layout, tp_pairs,
                            train_engine)
from dcnn.errors import ConfigError
from dcnn.problems import make_regularizer


def _train(**kw):
    args = dict(method="pipeline", module=module([4, 4]), shards=shards(), iterations=1)
    return lambda: train_engine(**{**args, **kw})


def test_more_stages_than_linear_layers():
    error_of(lambda: split_stages(module([4]), 3), "3 stages", "2 Linear layers",
             "at most 2 stages", kind=ConfigError)
    # one process, interleaved: 2 virtual stages for a linear model's one Linear layer
    error_of(_train(module=module([]), schedule="interleaved", microbatches=2),
             "2 stages", "1 Linear layers", kind=ConfigError)


def test_microbatches_must_divide_the_batch():
    error_of(_train(microbatches=4), "4 micro-batches", "batch of 26 samples",
             "[1, 2, 13, 26]", kind=ConfigError)
    error_of(_train(microbatches=3, batch_size=10), "3 micro-batches", "batch of 10",
             kind=ConfigError)
    error_of(_train(microbatches=0), "microbatches must be", "got 0", kind=ConfigError)


def test_hidden_width_must_divide_the_tp_degree():
    error_of(lambda: tp_pairs(module([5, 4]), 2), "hidden width 5", "degree 2",
             "multiples of 2", kind=ConfigError)
    assert tp_pairs(module([4, 5]), 2) == ([(0, 2)], [4])   # width 5 feeds the replicated layer


def test_the_transformer_must_split_evenly_by_heads():
    error_of(lambda: tp_layout(token_module(heads=2), 4), "heads 2", "degree 4",
             "multiple of 4", kind=ConfigError)
    error_of(lambda: tp_layout(token_module(ffn=6), 4), "ffn width 6", "degree 4",
             kind=ConfigError)
    error_of(lambda: tp_layout(token_module(), 8, sequence_parallel=True), "heads 4",
             kind=ConfigError)
    assert tp_layout(token_module(heads=8, ffn=8), 8).info["heads_per_rank"] == 1
    # sequence parallelism shards the 4 tokens: 8 ranks cannot
    error_of(lambda: tp_layout(token_module(heads=8, ffn=8), 8, sequence_parallel=True),
             "tokens 4", "degree 8", kind=ConfigError)


def test_the_transformer_pipelined_needs_parts_enough_and_heads_that_split():
    from dcnn.baselines.engines.pipeline import stage_layout
    error_of(lambda: split_stages(token_module(), 8), "8 stages", "4 parts",
             "embedding, attention, MLP, head", kind=ConfigError)
    two = split_stages(token_module(), 2)             # embedding + attention | MLP + head
    assert [(s.lo, s.hi) for s in two] == [(0, 2), (2, 4)]
    assert two[0].width == 4 * 8 and two[1].width == 2        # tokens x d; the outputs
    error_of(lambda: stage_layout(token_module(heads=2), two[0], tp=4),
             "heads 2 is not divisible", "degree 4", kind=ConfigError)
    error_of(lambda: stage_layout(token_module(ffn=6), two[1], tp=4),
             "ffn width 6 is not divisible", "degree 4", kind=ConfigError)
    # the embedding and the head parts have nothing to split: replicated, no all-reduce
    edge = split_stages(token_module(), 4)
    assert stage_layout(token_module(), edge[0], tp=2).collectives(5) == {"all_reduce": 0}
    assert stage_layout(token_module(), edge[1], tp=2).collectives(5) == \
        {"all_reduce": 4 * 5 * 4 * 8}


def test_sequence_parallelism_needs_the_transformer_and_tensor_parallel():
    error_of(_train(method="tensor-parallel", sequence_parallel=True), "sequence_parallel",
             "Sequential", "model.name = 'transformer'", kind=ConfigError)
    error_of(_train(sequence_parallel=True), "sequence_parallel is an option of method "
             "'tensor-parallel', not 'pipeline'", kind=ConfigError)
    error_of(_train(method="tensor-parallel", module=token_module(), shards=token_shards(),
                    sequence_parallel="yes"), "sequence_parallel must be true or false",
             "'yes'", kind=ConfigError)
    error_of(_train(method="tensor-parallel", module=torch.nn.Linear(3, 2)),
             "tensor-parallel needs the MLP", "or the transformer", "Linear", kind=ConfigError)


def test_ptdp_grids_that_cannot_work_are_refused():
    from dcnn.baselines.engines.pipeline import check_grid, replica_blocks, stage_layout
    assert check_grid(8, dp=2, tp=2) == (2, 2, 2)
    assert check_grid(8, dp=2, tp=2, pp=2) == (2, 2, 2)
    error_of(lambda: check_grid(6, dp=4, tp=1), "dp x tp = 4 x 1 = 4 does not divide the 6 "
             "ranks", kind=ConfigError)
    error_of(lambda: check_grid(8, dp=2, tp=1, pp=2), "2 x 1 x 2 = 4 but the launch has 8",
             "pp = 0 takes the rest: 4", kind=ConfigError)
    error_of(lambda: check_grid(8, dp=0, tp=1), "dp must be", kind=ConfigError)
    error_of(lambda: replica_blocks(3, 4), "4 data-parallel replicas but a batch of 3",
             kind=ConfigError)
    assert [len(b) for b in replica_blocks(26, 4)] == [7, 7, 6, 6]
    # micro-batches must divide every replica's block; automatic counts find one that does
    from dcnn.baselines.engines.pipeline import _check_microbatches, auto_microbatches
    error_of(lambda: _check_microbatches("gpipe", 2, 25, 2, 2, [13, 12]),
             "2 micro-batches do not divide every replica's block", "(13, 12)",
             "among [1]", kind=ConfigError)
    assert auto_microbatches("gpipe", batch=26, ranks=1, replicas=4) == 1     # 7, 7, 6, 6
    assert auto_microbatches("gpipe", batch=32, ranks=1, replicas=4) == 8     # 8 each
    assert auto_microbatches("1f1b", batch=24, ranks=2, replicas=2) == 6
    # 4 stages of a 4-Linear MLP: one Linear each, nothing for tensor parallelism to split
    stage = split_stages(module([4, 4, 4]), 4)[1]
    error_of(lambda: stage_layout(module([4, 4, 4]), stage, tp=2), "stage 1 holds one Linear",
             "2 Linear layers per stage", kind=ConfigError)
    assert stage_layout(module([4, 4, 4]), stage, tp=1).plan == {}
    error_of(_train(dp=2), "dp, tp and pp are options of method 'ptd-p', not 'pipeline'",
             kind=ConfigError)


def test_unknown_schedule_method_optimizer():
    error_of(_train(schedule="zigzag"), "schedule 'zigzag'", "gpipe, 1f1b, interleaved",
             kind=ConfigError)
    error_of(_train(method="fsdp"), "method 'fsdp'", "ddp, pipeline, tensor-parallel, ptd-p",
             kind=ConfigError)
    error_of(_train(optimizer="lbfgs"), "optimizer 'lbfgs'", "sgd, adam", kind=ConfigError)


def test_more_ranks_than_agents_for_ddp():
    error_of(lambda: rank_agents(2, 3), "3 ranks but only 2 shards", "mpiexec -n 2",
             kind=ConfigError)


def test_l1_needs_sgd():
    error_of(_train(method="ddp", optimizer="adam",
                    regularizer=make_regularizer("elastic_net", lam=0.1)),
             "'elastic_net'", "optimizer='sgd'", "next or dgd", kind=ConfigError)


def test_bad_values_are_named():
    error_of(_train(method="ddp", lr=-1.0), "lr must be a positive number, got -1.0",
             kind=ConfigError)
    error_of(_train(batch_size=-2), "batch_size", "got -2", kind=ConfigError)
    error_of(_train(iterations=1.5), "iterations", "got 1.5", kind=ConfigError)
    error_of(_train(module=torch.nn.Linear(3, 2)), "nn.Sequential", "dcnn.problems.mlp",
             "dcnn.problems.transformer", kind=ConfigError)
    error_of(_train(method="ddp", shards=[]), "non-empty", kind=ConfigError)


def test_process_group_options_are_checked():
    error_of(lambda: init_world(backend="mpi"), "backend 'mpi'", "gloo, nccl", kind=ConfigError)
    error_of(lambda: init_world(timeout=60), "timeout", "timedelta", kind=ConfigError)
    if not torch.cuda.is_available():
        error_of(lambda: init_world(backend="nccl"), "needs CUDA", "backend='gloo'",
                 kind=ConfigError)


@pytest.mark.mpi
def test_world_dependent_errors_fail_on_every_rank(mpi):
    res = mpi(2, ["tests/baselines/_errors_script.py"], timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    recs = parse(res.stdout)["errors"]
    assert len(recs) == 2 and recs[0]["messages"] == recs[1]["messages"]
    msgs = recs[0]["messages"]
    expected = {
        "ddp-ranks": ["2 ranks but only 1 shards", "mpiexec -n 1"],
        "stages": ["4 stages", "3 Linear layers"],
        "1f1b-microbatches": ["microbatches >= stages (2)", "got 1"],
        "tp-width": ["hidden width 5", "degree 2"],
    }
    for case, fragments in expected.items():
        assert msgs[case] is not None and "\n" not in msgs[case], case
        for fragment in fragments:
            assert fragment in msgs[case], (case, msgs[case])
