import pytest
import torch

from dcnn.errors import ConfigError
from dcnn.problems import make_regularizer


@pytest.mark.parametrize("name", ["l2", "l1", "elastic_net", "none"])
def test_prox_is_the_minimiser(name):
    """prox(u, s) minimises r(w) + ||w - u||^2 / (2 s): checked against a dense grid."""
    reg = make_regularizer(name, lam=0.7, l1_ratio=0.3)
    u = torch.tensor([-2.0, -0.3, 0.0, 0.2, 1.5], dtype=torch.float64)
    s = 0.8
    grid = torch.linspace(-3, 3, 600001, dtype=torch.float64)
    p = reg.prox(u, s)
    for k in range(len(u)):
        obj = reg.value(grid[:, None]) + (grid - u[k]) ** 2 / (2 * s)
        assert abs(float(grid[obj.argmin()]) - float(p[k])) < 2e-5


def test_l2_gradient_and_value():
    reg = make_regularizer("l2", lam=0.5)
    w = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    assert float(reg.value(w)[0]) == pytest.approx(0.5 * 5)
    torch.testing.assert_close(reg.grad(w), torch.tensor([[1.0, -2.0]], dtype=torch.float64))


def test_bad_regularizer():
    with pytest.raises(ConfigError, match="unknown"):
        make_regularizer("l3")
    with pytest.raises(ConfigError, match="lam"):
        make_regularizer("l2", lam=-1)
