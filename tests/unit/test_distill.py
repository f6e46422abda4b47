"""fastmmd distill's parts: seeded crops, the distillation loss, a student that learns its teacher (the
command: tests/integration/test_distill.py)."""

from __future__ import annotations

import pytest
import torch
from conftest import synthetic_image

from fastmmd.model.networks import TransformerNet
from fastmmd.train.distill import distillation_loss, random_crops, teacher_targets, train_student


def test_crops_are_seeded_sized_and_uint8():
    images = [synthetic_image(40, 30, seed=i) for i in range(2)]
    a, b = random_crops(images, 16, 3, seed=1), random_crops(images, 16, 3, seed=1)
    assert a.shape == (6, 3, 16, 16) and a.dtype == torch.uint8 and torch.equal(a, b)
    assert not torch.equal(a, random_crops(images, 16, 3, seed=2))


def test_loss_is_zero_only_for_the_teachers_output_and_counts_edges():
    t = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert distillation_loss(t, t, 1.0) == 0
    shifted = t + 0.1  # the same edges: only the pixel term sees it
    assert distillation_loss(shifted, t, 1.0) == pytest.approx(0.1, abs=1e-6)
    noisy = t + 0.1 * torch.randn(t.shape, generator=torch.Generator().manual_seed(1))
    assert distillation_loss(noisy, t, 1.0) > distillation_loss(noisy, t, 0.0)


def test_student_learns_the_teacher():
    torch.manual_seed(0)
    teacher = TransformerNet(4, 0).eval().requires_grad_(False)
    crops = random_crops([synthetic_image(48, 40, seed=i) for i in range(4)], 16, 2, seed=0)
    targets = teacher_targets(teacher, crops)
    assert targets.shape == crops.shape and targets.dtype == torch.uint8
    student = TransformerNet(2, 0)
    losses = train_student(student, crops, targets, steps=40, batch_size=4, lr=1e-2, edge_weight=0.5)
    assert len(losses) == 40 and sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
    assert not student.training
