"""Distillation: a small, fast student network trained to reproduce a big trained one (``fastmmd distill``,
:mod:`fastmmd.apps.distill`).

Knowledge distillation (Hinton et al. 2015) for image-to-image networks: the teacher (a shipped
style, an exported file or a training checkpoint, read weights-only by
:func:`fastmmd.model.files.read_network`) stylizes random crops of the training photos once, and a
narrower :class:`~fastmmd.model.networks.TransformerNet` (``--width``, ``--residual-blocks``) is trained
to map each crop to the teacher's output. No VGG and no style image are needed: the teacher already
holds the style, so a student trains in minutes on a CPU. The loss per batch is

    L = mean |s - t| + edge_weight * (mean |dx s - dx t| + mean |dy s - dy t|)

with s the student's and t the teacher's output (RGB in [0, 1]) and dx, dy forward differences
along width and height: the second term keeps the brush strokes sharp, which the pixel term alone
blurs.

The crops: every photo is scaled so that its short side is uniform in [size, 2 size] (the scale
variety a photo of any size brings), then one random ``size`` x ``size`` crop, randomly mirrored,
``--crops-per-photo`` times. Teacher outputs are computed once, before training, and kept as 8-bit
images (what a user of the teacher sees), so the teacher costs one forward pass per crop in all.
Adam with a cosine learning-rate decay from ``--lr`` to ``lr / 100``.

The result is a training checkpoint (:func:`fastmmd.model.checkpoints.checkpoint_entries`) holding the
teacher's description (style, loss, weights), so ``fastmmd export``, ``stylize`` and ``evaluate``
take it like any other; its ``distillation`` entry records the teacher and these settings. How a
student compares with its teacher in speed and in style/content distance: docs/benchmarks.md
("Distilled students").
"""

from __future__ import annotations

import random
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from fastmmd.base.errors import UserError
from fastmmd.model.networks import TransformerNet

#: Settings recorded in the checkpoint's ``distillation`` entry (besides the teacher).
SETTINGS = ("width", "residual_blocks", "size", "crops_per_photo", "steps", "batch_size", "lr", "edge_weight", "seed")


def random_crops(images: list[Any], size: int, per_image: int, seed: int) -> Tensor:
    """``per_image`` random crops of every PIL image: (N, 3, size, size) uint8.

    Each crop: the image scaled so that its short side is uniform in [size, 2 size] (bilinear,
    antialiased), a random ``size`` x ``size`` window, mirrored left-right with probability 1/2.
    Seeded by ``seed`` alone.
    """
    if size < 16 or per_image < 1:
        raise UserError(f"crops need a size of at least 16 px and at least one per photo, not {size} / {per_image}")
    rng = random.Random(seed)
    out = torch.empty(len(images) * per_image, 3, size, size, dtype=torch.uint8)
    k = 0
    for image in images:
        rgb = torch.from_numpy(_array(image)).permute(2, 0, 1).float().unsqueeze(0)  # (1, 3, H, W) 0-255
        for _ in range(per_image):
            short = rng.uniform(size, 2 * size)
            scale = short / min(rgb.shape[-2:])
            h, w = max(size, round(rgb.shape[-2] * scale)), max(size, round(rgb.shape[-1] * scale))
            scaled = F.interpolate(rgb, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
            top, left = rng.randrange(h - size + 1), rng.randrange(w - size + 1)
            crop = scaled[0, :, top:top + size, left:left + size]
            if rng.random() < 0.5:
                crop = crop.flip(-1)
            out[k] = crop.round().clamp(0, 255).to(torch.uint8)
            k += 1
    return out


def _array(image: Any) -> Any:
    import numpy as np

    return np.array(image.convert("RGB"), dtype=np.uint8)  # a writable copy


@torch.inference_mode()
def teacher_targets(teacher: Callable[[Tensor], Tensor], crops: Tensor, batch_size: int = 8) -> Tensor:
    """The teacher's outputs for ``crops`` (N, 3, S, S) uint8, as uint8 (round(255 y))."""
    out = torch.empty_like(crops)
    for i in range(0, len(crops), batch_size):
        y = teacher(crops[i:i + batch_size].float() / 255)
        out[i:i + batch_size] = y.float().mul(255).round().clamp(0, 255).to(torch.uint8)
    return out


def distillation_loss(student: Tensor, teacher: Tensor, edge_weight: float) -> Tensor:
    """The module docstring's L: mean |s - t| plus ``edge_weight`` times the L1 of their forward differences."""
    loss = (student - teacher).abs().mean()
    if edge_weight:
        dx = lambda z: z[..., :, 1:] - z[..., :, :-1]  # noqa: E731
        dy = lambda z: z[..., 1:, :] - z[..., :-1, :]  # noqa: E731
        edges = (dx(student) - dx(teacher)).abs().mean() + (dy(student) - dy(teacher)).abs().mean()
        loss = loss + edge_weight * edges
    return loss


def train_student(student: TransformerNet, inputs: Tensor, targets: Tensor, steps: int, batch_size: int = 8,
                  lr: float = 2e-3, edge_weight: float = 1.0, seed: int = 0,
                  log: Callable[[int, float], None] | None = None) -> list[float]:
    """Trains ``student`` in place on (input, target) uint8 pairs; returns the loss of every step.

    Batches are drawn without replacement, reshuffled each epoch (seeded); Adam, learning rate
    ``lr`` decayed by a cosine to ``lr / 100`` over ``steps``.
    """
    if steps < 1 or batch_size < 1 or not len(inputs) or len(inputs) != len(targets):
        raise UserError("distill needs at least one step, a batch size of at least 1 and as many targets as crops")
    student.train()
    optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps, eta_min=lr / 100)
    g = torch.Generator().manual_seed(seed)
    order, pos, losses = torch.randperm(len(inputs), generator=g), 0, []
    for step in range(steps):
        if pos + batch_size > len(order):
            order, pos = torch.randperm(len(inputs), generator=g), 0
        idx = order[pos:pos + batch_size]
        pos += batch_size
        x, t = inputs[idx].float() / 255, targets[idx].float() / 255
        loss = distillation_loss(student(x), t, edge_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if log is not None:
            log(step, losses[-1])
    student.eval()
    return losses
