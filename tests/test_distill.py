"""fastmmd distill: a student trained on a teacher's outputs, written as a checkpoint every command reads."""

from __future__ import annotations

import pytest
import torch
from conftest import fails_with_one_line, synthetic_image, write_tiny_checkpoint

from fastmmd.__main__ import main
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


def test_distill_command_writes_a_checkpoint_that_exports_and_stylizes(tmp_path, make_image, capsys):
    from fastmmd.model.files import network_from_checkpoint

    teacher = write_tiny_checkpoint(tmp_path / "teacher.ckpt", width=4, residual_blocks=1)
    for i in range(3):
        make_image(f"photos/{i}.png", 40, 36, seed=i)
    out = tmp_path / "student.ckpt"
    assert main(["distill", str(teacher), "--photos", str(tmp_path / "photos"), "--output", str(out), "--width", "2",
                 "--residual-blocks", "0", "--size", "16", "--steps", "3", "--batch-size", "2", "--quiet"]) == 0
    net, meta = network_from_checkpoint(out)
    assert net.config()["width"] == 2 and net.residual_blocks == 0
    assert meta["style_images"] == ["tiny_style.png"] and meta["loss"] == "gram" and meta["global_step"] == 3
    d = meta["distillation"]
    assert d["teacher"] == "teacher.ckpt" and d["teacher_network"]["width"] == 4 and d["steps"] == 3
    assert main(["export", str(out), "--output", str(tmp_path / "student.pt")]) == 0
    photo = make_image("p.png", 21, 17)
    assert main(["stylize", str(tmp_path / "student.pt"), str(photo), "-o", str(tmp_path / "s"), "-q"]) == 0


def test_distill_refuses_bad_input_in_one_line(tmp_path, make_image, capsys):
    teacher = write_tiny_checkpoint(tmp_path / "teacher.ckpt", width=4, residual_blocks=1)
    make_image("photos/0.png", 40, 36)
    base = ["distill", str(teacher), "--photos", str(tmp_path / "photos"), "--output", str(tmp_path / "s.ckpt")]
    fails_with_one_line([*base, "--steps", "0"], capsys, "--steps")
    fails_with_one_line(["distill", str(teacher), "--photos", str(tmp_path / "none"), "--output",
                         str(tmp_path / "s.ckpt")], capsys, "no photos")
    fails_with_one_line([*base[:-1], str(tmp_path / "s.pt")], capsys, ".ckpt")
    mixed = write_tiny_checkpoint(tmp_path / "mixed.ckpt", width=4, residual_blocks=0, styles=2)
    fails_with_one_line(["distill", str(mixed), *base[2:]], capsys, "conditioned")
    assert not (tmp_path / "s.ckpt").exists()
