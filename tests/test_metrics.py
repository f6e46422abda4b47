"""Evaluation distances of fastmmd.losses.metrics: zeros where they must be, growth with shifts, the Gram/MMD identity."""

from __future__ import annotations

import math

import pytest
import torch

from fastmmd.losses import mmd, moments
from fastmmd.losses.metrics import (
    _quantiles,
    content_distance,
    evaluate_features,
    gram_distance,
    gram_mmd_identity,
    sliced_wasserstein,
)


def features(c: int = 6, n: int = 50, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(c, n, generator=torch.Generator().manual_seed(seed), dtype=dtype).relu()


def test_sliced_wasserstein_is_zero_for_identical_and_permuted_samples():
    x = features()
    assert float(sliced_wasserstein(x, x)) == 0.0
    shuffled = x[:, torch.randperm(x.shape[1], generator=torch.Generator().manual_seed(1))]
    assert float(sliced_wasserstein(shuffled, x)) == pytest.approx(0.0, abs=1e-12)


def test_sliced_wasserstein_of_a_translation_is_the_projected_shift():
    x, shift = features(), torch.linspace(-1, 1, 6, dtype=torch.float64).unsqueeze(1)
    # A translation moves every projected quantile by theta . t, so SW^2 = mean_p (theta_p . t)^2.
    dirs = torch.randn(6, 32, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    expected = math.sqrt(float((shift[:, 0] @ dirs).pow(2).mean()))
    got = float(sliced_wasserstein(x + shift, x, projections=32, generator=torch.Generator().manual_seed(7)))
    assert got == pytest.approx(expected, rel=1e-9)
    values = [float(sliced_wasserstein(x + a * shift, x)) for a in (0.0, 0.5, 1.0, 2.0)]
    assert values == sorted(values) and values[0] == 0.0 and values[-1] > 0.1
    assert values[3] == pytest.approx(2 * values[2], rel=1e-9)


def test_sliced_wasserstein_compares_different_sample_sizes_as_distributions():
    x = features(n=40)
    doubled = x.repeat_interleave(2, dim=1)  # the same empirical distribution, twice the samples
    same = float(sliced_wasserstein(doubled, x))
    other = float(sliced_wasserstein(features(n=80, seed=3) + 0.5, x))
    assert same < 0.05 * other
    assert float(sliced_wasserstein(x, doubled)) == pytest.approx(same, rel=1e-9)  # symmetric in the sizes


def test_quantiles_identity_and_interpolation():
    v = torch.tensor([[0.0], [1.0], [3.0]])
    assert torch.equal(_quantiles(v, 3), v)
    # levels (k + 1/2)/6 -> positions 3 * level - 1/2 = -0.25, 0.25, 0.75, 1.25, 1.75, 2.25 (clamped to [0, 2])
    assert _quantiles(v, 6)[:, 0].tolist() == pytest.approx([0.0, 0.25, 0.75, 1.5, 2.5, 3.0])


def test_sliced_wasserstein_batches_and_is_deterministic():
    y = features(seed=2)
    xb = torch.stack([features(seed=4), features(seed=5)])
    out = sliced_wasserstein(xb, y)
    assert out.shape == (2,)
    assert float(out[1]) == pytest.approx(float(sliced_wasserstein(xb[1], y)), rel=1e-12)
    assert torch.equal(sliced_wasserstein(xb, y), out)
    four_d = sliced_wasserstein(xb.view(2, 6, 5, 10), y.view(1, 6, 5, 10))
    assert torch.allclose(four_d, out)


def test_gram_and_content_distances():
    x, y = features(seed=1), features(seed=2)
    assert float(gram_distance(y, y)) == 0.0
    assert float(gram_distance(torch.zeros_like(y), y)) == pytest.approx(1.0)
    gatys = float(gram_distance(x, y, relative=False))
    g = moments.second_moment(x) - moments.second_moment(y)
    assert gatys == pytest.approx(float(g.pow(2).sum()) / (4 * 36))
    p = features(seed=3).view(1, 6, 5, 10)
    assert float(content_distance(p, p)[0]) == 0.0
    assert float(content_distance(torch.zeros_like(p), p)[0]) == pytest.approx(1.0)


@pytest.mark.parametrize("n,m,cap", [(40, 40, 4096), (37, 61, 4096), (300, 200, 64)])
def test_gram_equals_poly_mmd_over_4c2(n, m, cap):
    """Li et al. 2017 (Gram loss as MMD²): Gatys' E = MMD_b^2[(x^T y)^2] / (4 C^2), here by two independent routes."""
    gram, kernel = gram_mmd_identity(features(n=n, seed=1), features(n=m, seed=2) * 1.3, max_positions=cap)
    assert gram > 0
    assert gram / kernel == pytest.approx(1.0, abs=1e-5)


def test_kernel_route_matches_the_moment_route_with_offset():
    """Identity 2: MMD_b^2[(x^T y + c)^2] = ||G^_x - G^_y||^2 + 2c ||mu_x - mu_y||^2 (kernel sums vs moments)."""
    x, y = features(n=33, seed=1), features(n=45, seed=2)
    uniform = torch.full((45,), 1.0 / 45, dtype=y.dtype)
    direct = mmd.poly_mmd2(x.unsqueeze(0), y, uniform, c=0.7, degree=2, chunk=8)[0]
    moment = mmd.poly2_mmd2(x.unsqueeze(0), moments.second_moment(y), moments.mean(y), c=0.7)[0]
    assert float(direct) == pytest.approx(float(moment), rel=1e-10)


def test_evaluate_features_is_finite_and_seeded():
    g = torch.Generator().manual_seed(0)
    fmap = {t: torch.rand(1, 4, 8, 6, generator=g) for t in ("relu1_1", "relu2_1", "relu4_2")}
    style = {t: torch.rand(1, 4, 7, 9, generator=g) for t in ("relu1_1", "relu2_1")}
    a = evaluate_features(fmap, style, ["relu1_1", "relu2_1"], fmap, ["relu4_2"])
    b = evaluate_features(fmap, style, ["relu1_1", "relu2_1"], fmap, ["relu4_2"])
    assert a == b
    assert a["content"] == 0.0 and a["style_sw"] > 0 and a["style_gram"] > 0
    for layer in a["layers"].values():
        assert all(math.isfinite(v) for v in layer.values())
        assert layer["identity_ratio"] == pytest.approx(1.0, abs=1e-5)
    assert evaluate_features(fmap, style, ["relu1_1"])["content"] is None
