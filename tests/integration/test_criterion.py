"""StyleCriterion with the real Caffe VGG-19 weights: L-BFGS lowers the loss (the criterion alone:
tests/unit/test_criterion.py)."""

from __future__ import annotations

import pytest
import torch

from fastmmd.losses import StyleLoss
from fastmmd.losses.criterion import StyleCriterion


def image(seed, h=32, w=32):
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.real_weights
@pytest.mark.parametrize("loss", ["gram", "bn+poly"])
def test_real_caffe_weights_lbfgs_lowers_the_loss(loss):
    from fastmmd.apps.optimize import optimize_image

    crit = StyleCriterion(StyleLoss(loss, style_weight=5.0))
    crit.set_style([image(20, 64, 64)])
    content = image(21, 48, 64)
    crit.set_content(content)
    result = optimize_image(crit, content, "lbfgs", iterations=6)
    first, last = result.history[0]["total"], result.history[-1]["total"]
    assert last < 0.7 * first, (first, last)
    assert result.image.shape == content.shape and 0 <= result.image.min() and result.image.max() <= 1
