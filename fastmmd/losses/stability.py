"""Stability loss (Gupta et al. 2017, "Characterizing and Improving Stability in Neural Style Transfer").

A feed-forward network flickers on video because tiny input changes (a sub-pixel camera move,
sensor or compression noise) move its strokes. Gupta et al. train it to be stable: the output of a
slightly perturbed input should be the correspondingly perturbed output. With ``T`` a sub-pixel
shift (:func:`fastmmd.core.motion.shift`) and ``n`` noise,

    L_stab(x) = sum_{c,u} m(u) (f(T x + n) - T f(x))^2 / (C sum_u m(u)),

``m`` masking the pixels the shift brought in from outside the image. It needs no VGG pass and no
style, so it adds to any style loss (``model.stability_weight``).
"""

from __future__ import annotations

from torch import Tensor


def stability_loss(perturbed_output: Tensor, moved_output: Tensor, mask: Tensor) -> Tensor:
    """Masked mean squared difference per sample: (B, C, H, W), (B, C, H, W), (B, 1, H, W) -> (B,)."""
    diff = (perturbed_output.float() - moved_output.float()).pow(2) * mask
    return diff.flatten(1).sum(1) / (mask.flatten(1).sum(1) * perturbed_output.shape[1]).clamp_min(1)
