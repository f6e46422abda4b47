"""fastmmd distill: a student trained on a teacher's outputs, written as a checkpoint every command reads
(its parts: tests/unit/test_distill.py)."""

from __future__ import annotations

from conftest import fails_with_one_line, write_tiny_checkpoint

from fastmmd.__main__ import main


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
