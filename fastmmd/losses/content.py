"""Content and total-variation losses.

* Content (Gatys et al.; Johnson et al.): mean squared feature difference at the content layer,
  mean_{c,h,w} (F - P)^2, one value per sample. The mean (not Gatys' 1/2 sum) keeps it independent
  of resolution and channel count.
* Relative content: the same divided by mean P^2, so it does not depend on activation scale.
* Total variation: mean squared difference of horizontally and vertically adjacent pixels of an
  RGB image in [0, 1], a smoothness prior against high-frequency noise.
"""

from __future__ import annotations

from torch import Tensor


def content_loss(x: Tensor, target: Tensor) -> Tensor:
    """mean((x - target)^2) per sample: (B, C, H, W), (B or 1, C, H, W) -> (B,)."""
    return (x - target).pow(2).flatten(1).mean(1)


def relative_content_loss(x: Tensor, target: Tensor, eps: float = 1e-12) -> Tensor:
    """Content loss relative to the target's energy: mean (x - target)^2 / mean target^2 per sample.

    Scale-free (Caffe's VGG reads 0-255 pixels, torchvision's standardised ones, so their activations
    differ in scale by orders of magnitude); 1 for an all-zero ``x``.
    """
    return content_loss(x, target) / target.pow(2).flatten(1).mean(1).clamp_min(eps)


def total_variation(image: Tensor) -> Tensor:
    """mean (dx^2) + mean (dy^2) per sample: (B, C, H, W) -> (B,)."""
    dx = (image[..., :, 1:] - image[..., :, :-1]).pow(2).flatten(1).mean(1)
    dy = (image[..., 1:, :] - image[..., :-1, :]).pow(2).flatten(1).mean(1)
    return dx + dy
