"""Outputs (issue 8): never an input, checked before any work, no debris when a command fails.

Every case runs the real command in-process with the heavy step replaced by a tripwire, so a
check that came after the work would fail the test rather than pass it slowly.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import fastmmd.apps.compare
import fastmmd.commands.optimize
import fastmmd.commands.stylize
from fastmmd.__main__ import main
from fastmmd.base.errors import UserError
from fastmmd.base.outputs import check_output_dir, check_output_file, cleanup_on_failure, make_dirs, same_file

TINY = ["--vgg-weights", "random", "--vgg-width-divisor", "8", "--no-progress", "--size", "16", "--iterations", "1"]


@pytest.fixture
def tripwire(monkeypatch):
    """Optimisation and model loading raise if reached: the checks under test must come first."""
    def boom(*args, **kwargs):
        raise AssertionError("work started before the outputs were checked")

    monkeypatch.setattr(fastmmd.commands.optimize, "optimize_image", boom)
    monkeypatch.setattr(fastmmd.apps.compare, "optimize_image", boom)
    monkeypatch.setattr(fastmmd.commands.stylize, "load_stylizer", boom)


def fails_with_one_line(argv: list[str], capsys, needle: str) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and needle in err[0], err
    return err[0]


@pytest.fixture
def files(make_image, tmp_path):
    a, b = make_image("a.png", 24, 20, 1), make_image("b.png", 20, 24, 2)
    (tmp_path / "link.png").symlink_to(a)
    os.link(b, tmp_path / "hard.png")
    return a, b


@pytest.mark.parametrize("extra, output, victim", [
    ([], "a.png", "a.png"),                          # --output = --content
    ([], "b.png", "b.png"),                          # --output = --style
    (["--init", "hard.png"], "hard.png", "b.png"),   # --output = --init (a hard link to --style too)
    ([], "link.png", "a.png"),                       # a symlink to --content
    ([], "hard.png", "b.png"),                       # a hard link to --style
    ([], "./sub/../a.png", "a.png"),                 # the same path spelled differently
])
def test_optimize_never_writes_over_an_input(files, tmp_path, capsys, tripwire, monkeypatch, extra, output, victim):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    before = (tmp_path / victim).read_bytes()
    fails_with_one_line(["optimize", *TINY, "--content", "a.png", "--style", "b.png", *extra, "--output", output],
                        capsys, "same file as")
    assert (tmp_path / victim).read_bytes() == before and (tmp_path / "link.png").is_symlink()


def test_optimize_save_every_names_are_checked_too(files, tmp_path, capsys, tripwire):
    a, b = files
    clash = tmp_path / "out.0001.png"
    clash.write_bytes(a.read_bytes())
    fails_with_one_line(["optimize", *TINY, "--content", str(clash), "--style", str(b), "--save-every", "1",
                         "--output", str(tmp_path / "out.png")], capsys, "same file as")


def test_export_never_replaces_its_checkpoint(tiny_checkpoint, tmp_path, capsys):
    before = tiny_checkpoint.read_bytes()
    fails_with_one_line(["export", str(tiny_checkpoint), "--format", "torchscript", "--output", str(tiny_checkpoint)],
                        capsys, "same file as")
    copy = tmp_path / "copy.pt"  # a training checkpoint saved as .pt: the default output is itself
    copy.write_bytes(before)
    fails_with_one_line(["export", str(copy)], capsys, "same file as")
    assert tiny_checkpoint.read_bytes() == before and copy.read_bytes() == before


def test_compare_never_replaces_an_input_in_its_folder(make_image, tmp_path, capsys, tripwire):
    out = tmp_path / "cmp"
    grid = make_image("cmp/grid.png", 20, 20)
    style = make_image("s.png", 20, 20, 3)
    before = grid.read_bytes()
    fails_with_one_line(["compare", *TINY, "--content", str(grid), "--style", str(style), "--output-dir", str(out)],
                        capsys, "same file as")
    assert grid.read_bytes() == before


@pytest.mark.parametrize("case", ["suffix", "folder-is-a-file", "output-is-a-folder", "proc"])
def test_optimize_outputs_are_checked_before_any_work(files, tmp_path, capsys, tripwire, case):
    a, b = files
    (tmp_path / "plain").write_text("a file")
    output, needle = {"suffix": (tmp_path / "x.xyz", "suffix"),
                      "folder-is-a-file": (tmp_path / "plain" / "x.png", "is a file"),
                      "output-is-a-folder": (tmp_path, "is a folder"),
                      "proc": (Path("/proc/fastmmd-test.png"), "not writable")}[case]
    if case == "proc" and not Path("/proc/self").exists():
        pytest.skip("no /proc")
    fails_with_one_line(["optimize", *TINY, "--content", str(a), "--style", str(b), "--output", str(output)], capsys, needle)


def test_stylize_and_compare_output_folders_are_checked_first(tiny_checkpoint, files, tmp_path, capsys, tripwire):
    a, b = files
    (tmp_path / "plain").write_text("a file")
    fails_with_one_line(["stylize", str(tiny_checkpoint), str(a), "-o", str(tmp_path / "plain"), "-q"], capsys, "existing file")
    fails_with_one_line(["compare", *TINY, "--content", str(a), "--style", str(b), "--output-dir", str(tmp_path / "plain")],
                        capsys, "existing file")
    if Path("/proc/self").exists():
        fails_with_one_line(["stylize", str(tiny_checkpoint), str(a), "-o", "/proc/fastmmd-test", "-q"], capsys, "fastmmd-test")


def test_failed_commands_leave_no_empty_folders(tiny_checkpoint, make_image, tmp_path, capsys):
    photo = make_image("photo.png", 20, 20)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG truncated")
    # stylize: nothing readable -> exit 1, and the output folder it made is gone
    assert main(["stylize", str(tiny_checkpoint), str(corrupt), "-o", str(tmp_path / "styl" / "deep"), "-q"]) == 1
    assert not (tmp_path / "styl").exists()
    capsys.readouterr()
    # compare: a missing style image -> exit 2, neither the folder nor cells/ stay
    fails_with_one_line(["compare", *TINY, "--content", str(photo), "--style", str(tmp_path / "nope.png"),
                         "--output-dir", str(tmp_path / "cmp")], capsys, "does not exist")
    assert not (tmp_path / "cmp").exists()
    # a folder that existed before stays, even when the command fails
    (tmp_path / "kept").mkdir()
    assert main(["stylize", str(tiny_checkpoint), str(corrupt), "-o", str(tmp_path / "kept"), "-q"]) == 1
    assert (tmp_path / "kept").is_dir()


def test_cleanup_removes_only_what_it_created(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "keep.txt").write_text("mine")
    with pytest.raises(RuntimeError), cleanup_on_failure():
        make_dirs(tmp_path / "old" / "new" / "deeper")
        run = make_dirs(tmp_path / "run", keep="*.ckpt")
        (run / "config.yaml").write_text("x")
        full = make_dirs(tmp_path / "full")
        (full / "result.png").write_text("x")
        raise RuntimeError("the command failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "old"]
    assert sorted(p.name for p in (tmp_path / "old").iterdir()) == ["keep.txt"]
    with pytest.raises(KeyboardInterrupt), cleanup_on_failure():  # Ctrl-C: only empty folders go
        run = make_dirs(tmp_path / "run2", keep="*.ckpt")
        (run / "events").write_text("x")
        raise KeyboardInterrupt
    assert (tmp_path / "run2" / "events").exists()


def test_same_file_and_checks(tmp_path):
    a = tmp_path / "a.png"
    a.write_bytes(b"x")
    os.link(a, tmp_path / "h.png")
    assert same_file(a, tmp_path / "h.png") and same_file(a, tmp_path / "." / "a.png")
    assert not same_file(a, tmp_path / "missing.png")
    with pytest.raises(UserError, match="same file"):
        check_output_file(tmp_path / "h.png", [("--content", a)])
    with pytest.raises(UserError, match="existing file"):
        check_output_dir(a)
