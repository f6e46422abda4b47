"""The paper's identities and the estimators' properties, on random features (no VGG needed).

References are written independently of fastmmd.losses: Gatys' Gram loss from the unnormalised
F F^T, and MMD^2 from explicit M x M kernel matrices.
"""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from fastmmd.base.errors import UserError
from fastmmd.losses import METHODS, StyleLoss, content_loss, matching, mmd, moments, parse_loss, total_variation

D = torch.float64


def feats(b=2, c=5, n=30, seed=0, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, c, n, generator=g, dtype=D) + shift).abs()  # ReLU-like, non-negative


def kernel_mmd2_biased(x, y, k):
    """V-statistic MMD^2 with explicit kernel matrices; x (C, N), y (C, M)."""
    return k(x.T, x).mean() + k(y.T, y).mean() - 2 * k(x.T, y).mean()


def kernel_mmd2_unbiased(x, y, k):
    """U-statistic MMD^2 (diagonals of k(x,x), k(y,y) dropped)."""
    n, m = x.shape[1], y.shape[1]
    kxx, kyy = k(x.T, x), k(y.T, y)
    return ((kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1)) + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
            - 2 * k(x.T, y).mean())


def gaussian_k(two_s2):
    return lambda a, b: torch.exp(-torch.cdist(a, b.T).pow(2) / two_s2)


def uniform(y):
    return torch.full((y.shape[1],), 1.0 / y.shape[1], dtype=y.dtype)


# ------------------------------------------------------------------------------------ identities
def test_gram_loss_is_gatys_and_poly_mmd_over_4c2():
    x, y = feats(1, 6, 40, 0)[0], feats(1, 6, 40, 1)[0]
    c, n = x.shape
    gatys = ((x @ x.T - y @ y.T) ** 2).sum() / (4 * c**2 * n**2)  # Gatys et al., same sizes
    mmd_kernel = kernel_mmd2_biased(x, y, lambda a, b: (a @ b) ** 2)  # Identity 1, N x N route
    ours = matching.gram_loss(x[None], moments.second_moment(y, uniform(y)))[0]
    assert torch.allclose(ours, gatys, rtol=1e-10)
    assert torch.allclose(ours, mmd_kernel / (4 * c**2), rtol=1e-10)  # Li et al. 2017 (Gram loss as MMD²): the constant is 1/(4 C^2)
    poly = mmd.poly2_mmd2(x[None], moments.second_moment(y, uniform(y)), moments.mean(y, uniform(y)))[0]
    assert torch.allclose(poly, mmd_kernel, rtol=1e-10)


def test_gram_identity_holds_for_different_sizes():
    x, y = feats(1, 4, 25, 2)[0], feats(1, 4, 70, 3)[0]
    ref = kernel_mmd2_biased(x, y, lambda a, b: (a @ b) ** 2)
    ours = mmd.poly2_mmd2(x[None], moments.second_moment(y, uniform(y)), moments.mean(y, uniform(y)))[0]
    assert torch.allclose(ours, ref, rtol=1e-10)


@pytest.mark.parametrize("c", [0.0, 0.7, 3.0])
def test_poly_with_offset_is_gram_plus_2c_linear(c):
    x, y = feats(1, 5, 33, 4)[0], feats(1, 5, 41, 5)[0]
    ref = kernel_mmd2_biased(x, y, lambda a, b: (a @ b + c) ** 2)
    ours = mmd.poly2_mmd2(x[None], moments.second_moment(y, uniform(y)), moments.mean(y, uniform(y)), c)[0]
    assert torch.allclose(ours, ref, rtol=1e-10)


def test_linear_mmd_is_squared_mean_difference():
    x, y = feats(1, 5, 33, 6)[0], feats(1, 5, 20, 7)[0]
    ref = kernel_mmd2_biased(x, y, lambda a, b: a @ b)
    assert torch.allclose(ref, (x.mean(1) - y.mean(1)).pow(2).sum(), rtol=1e-10)
    assert torch.allclose(mmd.linear_mmd2(x[None], y.mean(1))[0], ref, rtol=1e-10)


@pytest.mark.parametrize("degree,c", [(3, 0.5), (1, 1.0), (4, 0.0)])
def test_poly_any_degree_chunked_matches_kernel_matrix(degree, c):
    x, y = feats(2, 4, 37, 8) / 3, feats(1, 4, 29, 9)[0] / 3
    ours = mmd.poly_mmd2(x, y, uniform(y), c, degree, chunk=8)
    for b in range(2):
        ref = kernel_mmd2_biased(x[b], y, lambda a, bb: (a @ bb + c) ** degree)
        assert torch.allclose(ours[b], ref, rtol=1e-9)


def test_weighted_sample_is_the_mixture():
    a, b = feats(1, 3, 10, 10), feats(1, 3, 30, 11)
    y, w = moments.weighted_sample([a, b], [0.25, 0.75])
    assert torch.allclose(w.sum(), torch.tensor(1.0, dtype=D))
    expected = 0.25 * moments.second_moment(a)[0] + 0.75 * moments.second_moment(b)[0]
    assert torch.allclose(moments.second_moment(y, w), expected)
    mix_mean = 0.25 * a[0].mean(1) + 0.75 * b[0].mean(1)
    mix_var = 0.25 * a[0].pow(2).mean(1) + 0.75 * b[0].pow(2).mean(1) - mix_mean**2
    assert torch.allclose(moments.std(y, w, eps=0.0), mix_var.sqrt())


# ------------------------------------------------------------------------------------ properties
def test_mmd_of_a_sample_with_itself_is_zero():
    x = feats(1, 5, 40, 12)
    y, w = x[0], uniform(x[0])
    assert mmd.linear_mmd2(x, moments.mean(y, w)).abs().max() < 1e-12
    assert mmd.poly2_mmd2(x, moments.second_moment(y, w), moments.mean(y, w), 1.0).abs().max() < 1e-10
    assert mmd.poly_mmd2(x, y, w, 0.5, 3).abs().max() < 1e-8
    assert matching.gram_loss(x, moments.second_moment(y, w)).abs().max() < 1e-12
    assert matching.bn_loss(x, moments.mean(y, w), moments.std(y, w)).abs().max() < 1e-12
    assert content_loss(x, x).abs().max() == 0


def test_bn_loss_is_zero_iff_means_and_stds_match():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(4, 500, generator=g, dtype=D) * torch.tensor([[1.0], [2.0], [0.5], [3.0]], dtype=D) + 1
    u = torch.rand(1, 4, 300, generator=g, dtype=D)  # a different distribution...
    x = (u - u.mean(-1, keepdim=True)) / u.std(-1, unbiased=False, keepdim=True)
    x = x * y.std(1, unbiased=False)[None, :, None] + y.mean(1)[None, :, None]  # ...with y's means and stds
    w = uniform(y)
    eps = 1e-5
    assert matching.bn_loss(x, moments.mean(y, w), moments.std(y, w, eps=eps), eps=eps)[0] < 1e-20
    assert matching.gram_loss(x, moments.second_moment(y, w))[0] > 1e-6  # yet the Gram matrices differ
    shifted = x.clone()
    shifted[:, 2] *= 1.5  # one std off
    assert matching.bn_loss(shifted, moments.mean(y, w), moments.std(y, w, eps=eps), eps=eps)[0] > 1e-3


def test_bn_loss_is_finite_for_flat_channels():
    x = torch.zeros(1, 3, 50, dtype=D, requires_grad=True)  # dead ReLU / constant image
    y = feats(1, 3, 50, 1)[0]
    loss = matching.bn_loss(x, moments.mean(y, uniform(y)), moments.std(y, uniform(y)))
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(x.grad).all()


def test_batch_gives_one_loss_per_sample():
    x, y = feats(3, 4, 20, 13), feats(1, 4, 25, 14)[0]
    options = StyleLoss()
    for name, cls in METHODS.items():
        if name == "gaussian":
            continue  # random pairs; covered by the estimator tests
        method = cls(options)
        target = method.prepare(y, uniform(y))
        batched = method(x, target)
        single = torch.stack([method(x[i : i + 1], target)[0] for i in range(3)])
        assert batched.shape == (3,) and torch.allclose(batched, single), name


def test_moment_losses_are_invariant_to_permuting_positions():
    x, y = feats(2, 4, 30, 15), feats(1, 4, 22, 16)[0]
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(0))
    for name, cls in METHODS.items():
        if name == "gaussian":
            continue
        method = cls(StyleLoss(poly_c=0.3))
        target = method.prepare(y, uniform(y))
        assert torch.allclose(method(x, target), method(x[..., perm], target), rtol=1e-12), name


def test_gaussian_estimators_are_permutation_invariant_in_expectation():
    x, y = feats(1, 3, 40, 17), feats(1, 3, 40, 18, shift=0.5)[0]
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(1))
    a = torch.stack([mmd.gaussian_mmd2_subset(x, y, 40, 1.0, torch.Generator().manual_seed(s)) for s in range(30)])
    b = torch.stack([mmd.gaussian_mmd2_subset(x[..., perm], y, 40, 1.0, torch.Generator().manual_seed(s)) for s in range(30)])
    # with the full subset (m = N) the U-statistic is exactly permutation invariant
    assert torch.allclose(a, b, rtol=1e-10)


# ------------------------------------------------------------------------------------ estimators
ESTIMATOR_SEEDS = 400


def test_gaussian_linear_and_subset_estimators_are_unbiased():
    """Mean over seeds of each estimator vs the exact U-statistic on the full samples.

    Tolerance: 4 standard errors of the mean over the seeds (a false alarm has probability < 1e-4).
    """
    x, y = feats(1, 4, 60, 19), feats(1, 4, 80, 20, shift=1.5)[0]
    sigma2 = 1.5
    exact = kernel_mmd2_unbiased(x[0], y, gaussian_k(2 * sigma2))
    for name, fn in {
        "linear": lambda g: mmd.gaussian_mmd2_linear(x, y, sigma2, 30, g),
        "subset": lambda g: mmd.gaussian_mmd2_subset(x, y, 12, sigma2, g),
    }.items():
        est = torch.stack([fn(torch.Generator().manual_seed(s))[0] for s in range(ESTIMATOR_SEEDS)])
        se = est.std() / ESTIMATOR_SEEDS**0.5
        assert (est.mean() - exact).abs() < 4 * se + 1e-12, (name, float(est.mean()), float(exact), float(se))
        assert exact > 10 * se  # the test can fail: the signal is well above the noise


def test_gaussian_rff_estimator_matches_biased_mmd_in_expectation():
    x, y = feats(1, 3, 40, 21), feats(1, 3, 50, 22, shift=0.4)[0]
    sigma2, d = 1.0, 64
    exact = kernel_mmd2_biased(x[0], y, gaussian_k(2 * sigma2))
    est = []
    for s in range(ESTIMATOR_SEEDS):
        g = torch.Generator().manual_seed(s)
        freq = torch.randn(3, d, generator=g, dtype=D) / sigma2**0.5
        phases = torch.rand(d, generator=g, dtype=D) * 2 * torch.pi
        emb = mmd.random_fourier_features(y, freq, phases).mean(0)
        est.append(mmd.gaussian_mmd2_rff(x, freq, phases, emb)[0])
    est = torch.stack(est)
    se = est.std() / ESTIMATOR_SEEDS**0.5
    assert (est.mean() - exact).abs() < 4 * se + 1e-12


def test_gaussian_mmd_detects_a_shift_and_is_near_zero_without_one():
    x = feats(1, 4, 400, 23)
    same = feats(1, 4, 400, 24)[0]  # same distribution, different draw
    moved = feats(1, 4, 400, 25, shift=1.0)[0]
    g = torch.Generator().manual_seed(0)
    near = torch.stack([mmd.gaussian_mmd2_linear(x, same, None, 200, g) for _ in range(20)]).mean()
    far = torch.stack([mmd.gaussian_mmd2_linear(x, moved, None, 200, g) for _ in range(20)]).mean()
    assert far > 5 * near.abs() and far > 0.05


# ------------------------------------------------------------------------------------ gradients
def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", ["gram", "linear", "poly2", "poly3", "bn", "gauss-linear", "gauss-subset", "gauss-rff", "content", "tv"])
def test_gradcheck(name):
    x = feats(2, 3, 12, 26).requires_grad_(True)
    y = feats(1, 3, 14, 27)[0]
    w = uniform(y)
    freq = torch.randn(3, 8, generator=_gen(), dtype=D)
    phases = torch.rand(8, generator=_gen(1), dtype=D) * 6
    fns = {
        "gram": lambda v: matching.gram_loss(v, moments.second_moment(y, w)),
        "linear": lambda v: mmd.linear_mmd2(v, moments.mean(y, w)),
        "poly2": lambda v: mmd.poly2_mmd2(v, moments.second_moment(y, w), moments.mean(y, w), 0.5),
        "poly3": lambda v: mmd.poly_mmd2(v, y, w, 0.5, 3, chunk=5),
        "bn": lambda v: matching.bn_loss(v, moments.mean(y, w), moments.std(y, w)),
        "gauss-linear": lambda v: mmd.gaussian_mmd2_linear(v, y, 2.0, 5, _gen()),
        "gauss-subset": lambda v: mmd.gaussian_mmd2_subset(v, y, 6, 2.0, _gen()),
        "gauss-rff": lambda v: mmd.gaussian_mmd2_rff(v, freq, phases, mmd.random_fourier_features(y, freq, phases).mean(0)),
        "content": lambda v: content_loss(v, y[None, :, :12].expand(2, -1, -1)),
        "tv": lambda v: total_variation(v.view(2, 3, 3, 4)),
    }
    assert gradcheck(fns[name], (x,), eps=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------------ memory
def test_large_map_needs_no_n_by_n_matrix():
    """N = 65,536 positions, C = 64: an N x N float matrix would be 17 GB; every allocation stays < 256 MB."""
    from torch.profiler import ProfilerActivity, profile

    g = _gen()
    x = torch.rand(1, 64, 65536, generator=g).requires_grad_(True)
    y = torch.rand(64, 65536, generator=g)
    w = uniform(y).float()
    opts = [StyleLoss(gaussian_estimator=e) for e in ("linear", "subset", "rff")]
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        total = 0
        for name in ("gram", "linear", "poly", "bn"):
            method = METHODS[name](StyleLoss())
            total = total + method(x, method.prepare(y, w)).sum()
        for o in opts:
            method = METHODS["gaussian"](o)
            total = total + method(x, method.prepare(y, w, g), g).sum()
        total.backward()
    # every single op call, not averages over calls of the same op (an average hides one big call)
    largest = max(max(e.self_cpu_memory_usage, e.cpu_memory_usage) for e in prof.events())
    assert 16 * 2**20 <= largest < 256 * 2**20, largest  # >= one (64, N) float map: the profiler saw allocations
    assert torch.isfinite(x.grad).all()


# ------------------------------------------------------------------------------------ parsing
def test_parse_loss():
    assert parse_loss("gram") == [("gram", 1.0)]
    assert parse_loss("bn+poly") == [("bn", 0.5), ("poly", 0.5)]
    assert parse_loss("0.3*BN + 0.7*poly") == [("bn", 0.3), ("poly", 0.7)]
    assert parse_loss("bn+poly", [2, 1]) == [("bn", 2.0), ("poly", 1.0)]
    for bad in ("grma", "bn+bn", "0.5*bn+poly", "bn++poly", ""):
        with pytest.raises(UserError):
            parse_loss(bad)
    with pytest.raises(UserError, match="did you mean 'gram'"):
        parse_loss("grma")
    with pytest.raises(UserError):
        parse_loss("bn+poly", [1.0])


def test_every_method_a_spec_names_is_implemented():
    from fastmmd.losses import METHOD_NAMES, METHODS

    assert tuple(METHODS) == METHOD_NAMES
