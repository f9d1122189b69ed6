"""tau = "auto": the power-iteration curvatures equal the dense Hessians' spectral radii."""
import torch

from dcnn.comm import LocalNetwork
from dcnn.data import encode_targets, load_dataset, partition
from dcnn.problems import FlatModel, LocalProblems, make_regularizer, mlp
from dcnn.surrogates.tau import auto_tau, local_curvatures, network_curvature


def test_curvature_matches_dense_hessian_and_tau_rule():
    ds = load_dataset("wine", seed=0)
    T = encode_targets(ds.y_train, task=ds.task, n_classes=ds.n_classes)
    parts = partition(ds.y_train, 4, kind="iid", seed=0, task=ds.task)
    model = FlatModel(mlp(n_inputs=ds.n_features, hidden=(4,), n_outputs=T.shape[1], seed=0))
    prob = LocalProblems(model=model, shards=[(ds.X_train[p], T[p]) for p in parts],
                         loss="cross_entropy", task=ds.task, n_total=len(T),
                         regularizer=make_regularizer("l2", lam=1e-3))
    W = model.w0 + 0.1 * torch.randn(4, model.n_params, dtype=torch.float64,
                                     generator=torch.Generator().manual_seed(1))
    lam = local_curvatures(prob, W, iters=100)
    # power iteration converges from below at the eigen-gap's rate; 1e-4 after 100 steps
    # (auto_tau uses 30: a heuristic needs the scale, not the digits)
    for i in range(4):
        H = torch.autograd.functional.hessian(
            lambda w: prob._agent_loss(w, prob.X[i], prob.T[i], prob.mask[i]), W[i])
        dense = float(torch.linalg.eigvalsh(H).abs().max())
        assert 0 < dense - float(lam[i]) + 1e-12 and abs(float(lam[i]) - dense) <= 1e-4 * dense
    # the network's curvature: the summed Hessian's spectral radius (30 steps from a
    # different start than the per-agent estimate above: the scale to 1e-3, as tau needs)
    net = LocalNetwork(4)
    H = sum(torch.autograd.functional.hessian(
        lambda w: prob._agent_loss(w, prob.X[i], prob.T[i], prob.mask[i]), W[i])
        for i in range(4))
    L = float(torch.linalg.eigvalsh(H).abs().max())
    assert abs(network_curvature(prob, net, W, iters=100) / L - 1) < 1e-6
    # FL: alpha0 L; PL: max(alpha0 - 1/N, 1/N) L (alpha0 = 1 when not given: the largest)
    assert abs(auto_tau("fl", problem=prob, network=net, X0=W) / L - 1) < 1e-3
    assert abs(auto_tau("fl", problem=prob, network=net, X0=W, alpha0=0.5) / (L / 2) - 1) \
        < 1e-3
    assert abs(auto_tau("pl", problem=prob, network=net, X0=W) / (3 * L / 4) - 1) < 1e-3
    assert abs(auto_tau("pl", problem=prob, network=net, X0=W, alpha0=0.5) / (L / 4) - 1) \
        < 1e-3
    assert abs(auto_tau("pl", problem=prob, network=net, X0=W, alpha0=0.1) / (L / 4) - 1) \
        < 1e-3
