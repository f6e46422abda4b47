"""The benchmark and report scripts still run against the package as it is now.

They are not imported by anything else, so an API change (e.g. the loss settings moving into
``StyleLoss``) would only show on a GPU machine or in a long benchmark. Each runs here at a tiny
size with the arguments its docstring shows, in this process (:func:`run_script`: ``python SCRIPT``
as ``runpy`` runs it, the global torch settings a script changes restored afterwards); so do
bench_train.py's variant processes (:func:`script_processes_in_process`), except where the
environment a process starts under is what is tested (its bf16 skip), and the whole commands that
bench_peer.py times.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import runpy
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import torch
from conftest import REPO as ROOT
from conftest import require_onnx


def run_script(name: str, *args: str, monkeypatch, capsys) -> str:
    """``python scripts/NAME ARGS`` in this process, from the repository's root; returns its stdout."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr("sys.argv", [f"scripts/{name}", *args])
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)
    grad, threads = torch.is_grad_enabled(), torch.get_num_threads()
    capsys.readouterr()
    try:
        runpy.run_path(str(ROOT / "scripts" / name), run_name="__main__")
    except SystemExit as exit_:
        assert exit_.code in (0, None), capsys.readouterr().err[-2000:]
    finally:
        torch.set_grad_enabled(grad)
        torch.set_num_threads(threads)
    return capsys.readouterr().out


def script_module(name: str):
    """``scripts/NAME.py`` as a module, for its functions (nothing under its ``__main__`` runs)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def script_processes_in_process(name: str, monkeypatch) -> None:
    """``python scripts/NAME ...`` started by the script itself with ``subprocess.run`` (bench_train.py
    runs each variant so) runs in this process instead, as :func:`run_script` runs a script: what it
    prints and its exit code come back as the process's. The variant's code and the parent's reading of
    its output are the same; a fresh interpreter's start, torch and Lightning imported again, is what is
    saved (docs/benchmarks.md, "The test suite"). The global torch settings and the random generator it
    changes are restored afterwards."""
    script, real_run = str(ROOT / "scripts" / name), subprocess.run

    def run(cmd, *args, capture_output=False, **kwargs):
        if list(cmd[:2]) != [sys.executable, script]:
            return real_run(cmd, *args, capture_output=capture_output, **kwargs)
        out, err, code = io.StringIO(), io.StringIO(), 0
        argv, grad, threads = sys.argv, torch.is_grad_enabled(), torch.get_num_threads()
        try:
            sys.argv = [script, *cmd[2:]]
            with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                runpy.run_path(script, run_name="__main__")
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
        except Exception:  # noqa: BLE001 - a process would print it and exit 1
            code = 1
            err.write(traceback.format_exc())
        finally:
            sys.argv = argv
            torch.set_grad_enabled(grad)
            torch.set_num_threads(threads)
        if capture_output:
            return subprocess.CompletedProcess(cmd, code, out.getvalue(), err.getvalue())
        sys.stdout.write(out.getvalue())
        sys.stderr.write(err.getvalue())
        return subprocess.CompletedProcess(cmd, code)

    monkeypatch.setattr(subprocess, "run", run)


@pytest.mark.slow
def test_bench_train_runs_every_cpu_variant_it_names(monkeypatch, capsys):
    """The naive loop and fastmmd's step (``ours-bf16`` is the same step under autocast, which
    tests/unit/test_training.py and tests/integration/test_precision.py cover), two rounds pooled: 4
    variant runs instead of 12, in this process (:func:`script_processes_in_process`; a list of batch
    sizes is covered by the next test, without variant processes)."""
    script_processes_in_process("bench_train.py", monkeypatch)
    out = run_script("bench_train.py", "--size", "32", "--batch", "2", "--steps", "1", "--warmup", "0",
                     "--quality-steps", "0", "--threads", "1", "--width", "4", "--variants", "naive,ours-fp32",
                     "--rounds", "2", "--cudnn-benchmark", monkeypatch=monkeypatch, capsys=capsys)
    assert "failed" not in out, out
    assert "cudnn.benchmark True" in out  # passed on to every variant's process (a no-op without CUDA)
    assert out.count("ours-fp32:") == 3  # a timing per round and a ratio
    assert out.count("(round 2)") == 2 and "naive: 1.00x naive speed" in out


@pytest.mark.heavy(4)
def test_bench_train_skips_bf16_variants_on_a_cpu_without_bf16(monkeypatch, capfd):
    """Under ATEN_CPU_CAPABILITY=avx2 and ONEDNN_MAX_CPU_ISA=AVX2 (an AVX2-only CPU, as far as torch
    is concerned: the processes of each batch size start under them) the bf16 variants are skipped
    with one line each (per batch size) instead of crawling."""
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    out = run_script("bench_train.py", "--variants", "ours-bf16,compile-bf16", "--batch", "1,2", "--rounds", "2",
                     monkeypatch=monkeypatch, capsys=capfd)  # capfd: the per-batch processes write to our stdout
    assert out.count("skipped: this CPU has no bf16 instructions") == 4, out
    assert ", batch 1, " in out and ", batch 2, " in out  # one comparison per batch size


@pytest.mark.slow
@pytest.mark.heavy(7)
def test_bench_stylize_runs_on_the_cpu(monkeypatch, capsys):
    out = run_script("bench_stylize.py", "--sizes", "24x16", "--width", "4", "--residual-blocks", "1",
                     "--iters", "1", "--warmup", "0", "--dtype", "fp32", "--variants", "naive,eager,torchscript,pt2",
                     "--profile", "--no-cudnn-benchmark", monkeypatch=monkeypatch, capsys=capsys)
    for variant in ("naive", "eager-fp32", "torchscript", "pt2"):
        assert f"| 16x24 | {variant} |" in out or f"| 24x16 | {variant} |" in out, out
        assert f"## 24x16 {variant}: costliest operators" in out, out
    assert "aten::" in out  # the profiler's operator rows


def test_gpu_check_names_only_variants_the_benchmarks_know(monkeypatch, capsys):
    """gpu_check.sh's default variant lists must name variants that bench_stylize / bench_train know
    (both refuse unknown names: a typo must not silently drop a measurement from a GPU lease)."""
    import re

    script = (ROOT / "scripts" / "gpu_check.sh").read_text()
    known = {}
    for name in ("bench_stylize", "bench_train"):
        source = (ROOT / "scripts" / f"{name}.py").read_text()
        namespace: dict = {}
        start = source.index("VARIANTS = (") if name == "bench_train" else source.index("COMPILED_LAYOUTS = {")
        exec(source[start:source.index("\n\n", start)], namespace)  # the constant(s) alone: no torch import
        known[name] = set(namespace["VARIANTS"])
    for var, bench in (("STYLIZE_VARIANTS", "bench_stylize"), ("AUTOTUNE_VARIANTS", "bench_stylize"),
                       ("TRAIN_BENCH", "bench_train")):
        default = re.search(rf"^{var}=\$\{{{var}:?-([^}}]*)\}}", script, re.M)
        assert default, var
        assert set(default.group(1).split(",")) <= known[bench], (var, default.group(1))
    with pytest.raises(AssertionError, match="unknown variant"):
        run_script("bench_stylize.py", "--variants", "naive,compile-typo", monkeypatch=monkeypatch, capsys=capsys)


def test_gpu_check_script_parses_and_its_runs_file_holds_valid_fit_commands(monkeypatch, capsys):
    """A typo in scripts/gpu_check.sh or a runs file would otherwise show only on a lent GPU, with
    minutes of device time spent: the script must parse, and every run line must resolve to a
    configuration that `fastmmd fit` accepts (its arguments exactly as the script builds them)."""
    from fastmmd.__main__ import main

    done = subprocess.run(["bash", "-n", "scripts/gpu_check.sh"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = [line.split(maxsplit=1) for runs in ("gpu_bases.txt", "gpu_arbitrary.txt")
             for line in (ROOT / "scripts" / runs).read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert len(lines) >= 3 and "arbitrary" in {name for name, _ in lines}
    monkeypatch.chdir(ROOT)
    for name, args in lines:
        argv = args.replace("{styles}", "paintings").split()
        capsys.readouterr()
        assert main(["fit", "--config", "configs/gpu.yaml", *argv, "--run_name", name, "--print_config"]) == 0
        out = capsys.readouterr().out
        assert f"run_name: {name}" in out and "paintings" in out, out


def test_gpu_check_needs_the_photo_and_painting_folders(tmp_path):
    """No default folder outside the repository: without PHOTOS and STYLES the script stops at once
    (one line, exit 2, nothing written) unless TRAIN=0 asks for the benchmarks only."""
    env = {k: v for k, v in os.environ.items() if k not in ("PHOTOS", "STYLES", "TRAIN")}
    done = subprocess.run(["bash", "scripts/gpu_check.sh", str(tmp_path / "out")], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env=env)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "PHOTOS STYLES" in done.stderr and not (tmp_path / "out").exists()


def test_measure_artifacts_finds_a_flat_output_for_a_flat_input(tmp_path, monkeypatch, capsys):
    from conftest import write_tiny_checkpoint

    ckpt = write_tiny_checkpoint(tmp_path / "tiny.ckpt")
    out = run_script("measure_artifacts.py", str(ckpt), "--size", "32", monkeypatch=monkeypatch, capsys=capsys)
    assert '"std": ' in out and "flat" in out


def test_grid_lock_tells_a_pattern_tied_to_the_grid_from_one_that_moves_with_the_photo():
    import torch

    module = script_module("measure_artifacts")
    photo = torch.rand(3, 64, 72, generator=torch.Generator().manual_seed(0))

    def gridded(x):  # draws a period-4 lattice where the network's grid is, not where the photo is
        lattice = torch.zeros(x.shape[-2:])
        lattice[::4, ::4] = 0.3
        return x * 0.5 + lattice

    moving = module.grid_lock(lambda x: x * 0.5 + 0.1, photo)
    assert moving["off_grid"] == pytest.approx(0.0, abs=1e-7) and moving["on_grid"] == pytest.approx(0.0, abs=1e-7)
    locked = module.grid_lock(gridded, photo)
    assert locked["on_grid"] == pytest.approx(0.0, abs=1e-7) and locked["off_grid"] > 0.02


def test_the_arbitrary_step_profile_times_every_part(monkeypatch, capsys):
    out = run_script("bench_arbitrary_step.py", "--size", "32", "--batch", "2", "--steps", "1", "--warmup", "0",
                     "--vgg-weights", "random", "--vgg-width-divisor", "8", "--width", "8",
                     monkeypatch=monkeypatch, capsys=capsys)
    assert all(f"| {part} |" in out for part in ("paintings", "network", "loss", "backward")) and "whole step" in out


@pytest.mark.heavy(5)
def test_bench_peer_runs_ours_side_by_side_without_the_peer(tiny_exports, tmp_path, monkeypatch, capsys):
    """scripts/bench_peer.py at a tiny size, ours only (the peer lives in another venv): an .onnx on the
    torch-free path and a .pt through torch, both timed in-process and as whole commands."""
    from conftest import synthetic_image

    require_onnx()
    photo = tmp_path / "photo.png"
    synthetic_image(40, 30).save(photo)
    models = f"{tiny_exports['onnx']},{tiny_exports['torchscript']}"
    out = run_script("bench_peer.py", "--photo", str(photo), "--size", "32", "--models", models, "--rounds", "1",
                     "--calls", "1", "--json", str(tmp_path / "b.json"), "--markdown", str(tmp_path / "b.md"),
                     monkeypatch=monkeypatch, capsys=capsys)
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert [r["runtime"] for r in rows] == ["onnxruntime", "torch"] and all(r["peak_rss_mib"] > 0 for r in rows)
    assert "| engine |" in out and (tmp_path / "b.md").is_file()


def test_bench_quality_scores_models_and_each_zoo_style_against_its_painting(tiny_exports, tmp_path, monkeypatch,
                                                                            capsys):
    """scripts/bench_quality.py at a tiny size (random VGG weights): ``--models`` against one painting,
    and ``--zoo`` (a zoo folder of one style, its .pt and .onnx) against each style's own painting."""
    import shutil

    from conftest import synthetic_image

    require_onnx()
    for i in range(2):
        synthetic_image(40, 30, seed=i).save(tmp_path / f"photo{i}.png")
    synthetic_image(36, 36, seed=7).save(tmp_path / "paint.png")
    common = ["--photos", str(tmp_path / "photo*.png"), "--size", "32", "--vgg-weights", "random"]
    models = f"{tiny_exports['torchscript']},{tiny_exports['onnx']}"
    out = run_script("bench_quality.py", "--models", models, "--style", str(tmp_path / "paint.png"), *common,
                     "--json", str(tmp_path / "q.json"), monkeypatch=monkeypatch, capsys=capsys)
    summary = json.loads((tmp_path / "q.json").read_text())["summary"]
    assert [s["model"] for s in summary] == models.split(",") and summary[0]["style_ratio"] == 1.0
    assert abs(summary[1]["style_ratio"] - 1) < 0.05 and "| model |" in out  # the same network in two files
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    shutil.copy(tiny_exports["torchscript"], zoo / "tiny.pt")
    shutil.copy(tiny_exports["onnx"], zoo / "tiny.onnx")
    synthetic_image(36, 36, seed=8).save(tmp_path / "paint2.png")
    files = {"torchscript": "tiny.pt", "onnx": "tiny.onnx"}  # the same network as two styles, two paintings
    (zoo / "zoo.json").write_text(json.dumps({"format_version": 1, "styles": {
        "tiny": {"files": files, "style_image": "paint.png"}, "tiny2": {"files": files, "style_image": "paint2.png"}}}))
    monkeypatch.setenv("FASTMMD_ZOO", str(zoo))
    run_script("bench_quality.py", "--zoo", "all", "--styles-dir", str(tmp_path), "--no-arbitrary", *common,
               "--json", str(tmp_path / "z.json"), monkeypatch=monkeypatch, capsys=capsys)
    groups = json.loads((tmp_path / "z.json").read_text())["styles"]
    assert groups["tiny"]["style"] == "paint.png" and [s["model"] for s in groups["tiny"]["summary"]] == ["tiny", "tiny:onnx"]
    first, second = (groups[name]["summary"][0]["style_swd"] for name in ("tiny", "tiny2"))
    assert first == pytest.approx(summary[0]["style_swd"])  # what --models measured against paint.png
    assert abs(second - first) > 1e-3 * first  # the second style against its own painting, not the first's


def one_style_zoo(tmp_path: Path, tiny_exports, monkeypatch, scores: dict | None) -> tuple[Path, dict]:
    """A zoo of one style, ``tiny`` (the session's tiny TorchScript export as its .pt, trained 3 steps
    of 8 on a GPU, painting style.png), made the zoo of this test (FASTMMD_ZOO): (its folder, zoo.json)."""
    import shutil

    from fastmmd.infer.zoo import file_sha256

    zoo = tmp_path / "zoo"
    zoo.mkdir()
    shutil.copy(tiny_exports["torchscript"], zoo / "tiny.pt")
    manifest = {"format_version": 1, "styles": {"tiny": {
        "title": "Tiny", "painter": "P", "year": "2026", "style_image": "style.png", "loss": "gram", "style_weight": 5.0,
        "training": {"machine": "a GPU", "minutes": 1.0, "steps": 3, "batch_size": 8, "image_size": 32},
        "files": {"torchscript": "tiny.pt"}, "sha256": {"torchscript": file_sha256(zoo / "tiny.pt")},
        "scores": scores, "checksum": {}}}}
    (zoo / "zoo.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("FASTMMD_ZOO", str(zoo))
    return zoo, manifest


def fake_onnx_export(tiny_exports, monkeypatch) -> list:
    """build_zoo's .onnx export replaced by a copy of the session's tiny .onnx (its export, ~10 s here, is
    tests/integration/test_export.py's): returns the list of what it was asked (source, weights, calibration)."""
    import shutil

    asked, onnx = [], tiny_exports["onnx"]  # made (once a session) before export_checkpoint is replaced

    def onnx_export(source, target, weights, calibration):
        asked.append((source, weights, calibration))
        shutil.copy(onnx, target)

    monkeypatch.setattr("fastmmd.infer.export.export_checkpoint", onnx_export)
    return asked


@pytest.mark.slow  # ~8 s on 2 CPU cores (a tiny fit, the export's own interpreter), more if it makes the tiny .onnx
def test_build_zoo_rebuilds_a_style_from_a_fine_tune_and_records_it_over_the_original_training(
        tiny_exports, fit_data, tmp_path, monkeypatch, capsys):
    """scripts/build_zoo.py --fine-tuned on a tiny zoo of one style: a 2-step fit started from the style's
    .pt (the stability term's whole-pixel moves on) replaces its .pt and .onnx; zoo.json keeps the
    original training and adds the fine-tune (the file it started from, its steps, batch, stability
    settings, minutes) with the lattice before/after that measure_artifacts.py --json measured and the
    held-out ratios; a rebuild from the same run keeps one record and its start; a run that did not
    start from the style's .pt is refused. The .onnx export itself (~10 s here; tests/integration/test_export.py)
    is the session's tiny network's: only that it is asked of the new .pt is checked."""
    from conftest import tiny_fit_args

    from fastmmd.infer.zoo import file_sha256
    from fastmmd.model.files import read_metadata
    from fastmmd.train.cli import build_cli

    require_onnx()
    zoo, manifest = one_style_zoo(tmp_path, tiny_exports, monkeypatch, scores={"style_ratio": 1.0})
    old_sha, original = manifest["styles"]["tiny"]["sha256"]["torchscript"], manifest["styles"]["tiny"]["training"]
    build_cli(["fit", *tiny_fit_args(tmp_path, data=fit_data), "--model.init_from", str(zoo / "tiny.pt"),
               "--model.stability_weight", "10", "--model.stability_crop", "true", "--model.stability_shift", "3",
               "--trainer.max_steps", "2", "--run_name", "tune"])
    run = tmp_path / "runs" / "tune"
    photos = sorted((fit_data / "photos").glob("*.png"))[:2]
    run_script("measure_artifacts.py", "tiny:pt", str(run / "last.ckpt"), "--photos", *map(str, photos), "--size", "64",
               "--json", str(tmp_path / "lattice.json"), monkeypatch=monkeypatch, capsys=capsys)
    lattice = json.loads((tmp_path / "lattice.json").read_text())
    assert lattice["settings"] == {"size": 64, "photos": [p.name for p in photos]} and len(lattice["models"]) == 2
    rows = {"tiny:pt": [{"style_swd": 0.2, "content": 0.5}] * 2,
            str(run / "last.ckpt"): [{"style_swd": 0.19, "content": 0.6}, {"style_swd": 0.21, "content": 0.6}]}
    summary = [{"model": m, "style_swd": 0.2, "content": c, "style_ratio": 1.0, "content_ratio": c / 0.5,
                "worst_style_ratio": w, "worst_content_ratio": c / 0.5} for m, c, w in zip(rows, (0.5, 0.6), (1, 1.05))]
    (tmp_path / "quality.json").write_text(json.dumps({"settings": {"size": 64, "photos": ["a", "b"]}, "summary": summary,
                                                       "rows": rows}))
    asked = fake_onnx_export(tiny_exports, monkeypatch)  # build_zoo's fast_entry: the .onnx from the new .pt
    build = ["--zoo", str(zoo), "--fine-tuned", f"tiny={run}", "--machine", "the test box",
             "--lattice", str(tmp_path / "lattice.json"), "--quality", str(tmp_path / "quality.json")]
    run_script("build_zoo.py", *build, monkeypatch=monkeypatch, capsys=capsys)
    entry = json.loads((zoo / "zoo.json").read_text())["styles"]["tiny"]
    assert asked == [(zoo / "tiny.pt", "int8", None)]
    assert entry["sha256"]["torchscript"] == file_sha256(zoo / "tiny.pt") != old_sha
    assert entry["sha256"]["onnx"] == file_sha256(zoo / "tiny.onnx") and entry["files"]["onnx"] == "tiny.onnx"
    meta = read_metadata(zoo / "tiny.pt")
    assert meta["training_steps"] == 2 and meta["training"]["init_from"] == "tiny.pt"
    assert entry["style_weight"] == meta["style_weight"] and entry["scores"] is None  # they scored the old network
    tune = entry["training"]["fine_tunes"]
    assert {k: entry["training"][k] for k in original} == original and len(tune) == 1
    tune = tune[0]
    assert tune["from"] == {"file": "tiny.pt", "sha256": old_sha, "steps": 3}
    assert (tune["run"], tune["steps"], tune["batch_size"], tune["image_size"], tune["machine"]) == (
        "tune", 2, 2, 32, "the test box")
    assert tune["stability"] == {"weight": 10.0, "shift": 3.0, "crop": True, "noise": 0.02} and tune["minutes"] > 0
    models = lattice["models"]
    assert tune["lattice"]["before"]["period4"] == models["tiny:pt"]["lattice"]["period4"]
    assert tune["lattice"]["after"]["grid_lock"] == models[str(run / "last.ckpt")]["grid_lock"]["off_grid"]
    assert tune["held_out"]["photos"] == 2 and tune["held_out"]["content_ratio"] == pytest.approx(1.2)
    assert tune["held_out"]["style_ratio_se"] == pytest.approx(0.05)  # per-photo ratios 0.95, 1.05: sd 0.0707 / sqrt 2
    card = (zoo / "README.md").read_text()
    assert "| 3 (8) + 2 (2) |" in card and "| `tiny` | 2 (2) at 32 | gram, " in card
    run_script("build_zoo.py", *build, "--no-export", monkeypatch=monkeypatch, capsys=capsys)  # the same run again
    again = json.loads((zoo / "zoo.json").read_text())["styles"]["tiny"]["training"]["fine_tunes"]
    assert len(again) == 1 and again[0]["from"]["sha256"] == old_sha

    with pytest.raises(SystemExit, match="started from None, not tiny.pt"):
        script_module("build_zoo").add_fine_tune(manifest, "tiny", tiny_exports["ckpt"], zoo, "box", None, [], [], None, None, True)


def test_build_zoo_ships_a_student_as_the_onnx_and_records_how_it_was_made(
        tiny_exports, fit_data, tmp_path, monkeypatch, capsys):
    """scripts/build_zoo.py --fast NAME=RUN_CKPT --distilled NAME=DISTILLED: a student distilled from the
    style's .pt (`fastmmd distill`, 2 steps) and trained on by `fastmmd fit` from that checkpoint (2 steps)
    becomes the style's .onnx; zoo.json records the distillation, the fit and the lattice, the card marks
    the .onnx a student and lists how it was made, the .pt stays; a fit that did not start from the
    distilled checkpoint, or a checkpoint not distilled from the style's .pt, is refused."""
    from conftest import tiny_fit_args

    from fastmmd.__main__ import main
    from fastmmd.train.cli import build_cli

    require_onnx()
    zoo, manifest = one_style_zoo(tmp_path, tiny_exports, monkeypatch, scores=None)
    pt_sha = manifest["styles"]["tiny"]["sha256"]["torchscript"]
    distilled = tmp_path / "small.ckpt"
    assert main(["distill", "tiny:pt", "--photos", str(fit_data / "photos"), "--output", str(distilled), "--width", "4",
                 "--residual-blocks", "1", "--size", "32", "--crops-per-photo", "1", "--steps", "2", "--quiet"]) == 0
    build_cli(["fit", *tiny_fit_args(tmp_path, data=fit_data), "--model.init_from", str(distilled),
               "--model.network_width", "4", "--model.stability_weight", "10", "--model.stability_crop", "true",
               "--trainer.max_steps", "2", "--run_name", "student"])
    ckpt = tmp_path / "runs" / "student" / "last.ckpt"
    grid = {"lattice": {"period4": 300.0, "period2": 200.0}, "grid_lock": {"off_grid": 0.05}}
    (tmp_path / "lattice.json").write_text(json.dumps({"settings": {"size": 64, "photos": ["a", "b"]}, "models": {
        "tiny:pt": grid, str(ckpt): {"lattice": {"period4": 40.0, "period2": 30.0}, "grid_lock": {"off_grid": 0.02}}}}))
    asked = fake_onnx_export(tiny_exports, monkeypatch)  # build_zoo's fast_entry: the student's .onnx
    run_script("build_zoo.py", "--zoo", str(zoo), "--fast", f"tiny={ckpt}", "--distilled", f"tiny={distilled}",
               "--machine", "the test box", "--lattice", str(tmp_path / "lattice.json"),
               monkeypatch=monkeypatch, capsys=capsys)
    entry = json.loads((zoo / "zoo.json").read_text())["styles"]["tiny"]
    assert asked == [(ckpt, "int8", None)] and entry["sha256"]["torchscript"] == pt_sha  # the .pt stays
    record = entry["onnx"]
    assert record["distillation"]["teacher"] == "tiny.pt" and record["distillation"]["steps"] == 2
    assert (record["fine_tune"]["run"], record["fine_tune"]["steps"], record["fine_tune"]["machine"]) == (
        "student", 2, "the test box")
    assert record["fine_tune"]["stability"]["weight"] == 10.0 and record["fine_tune"]["stability"]["crop"] is True
    assert record["lattice"]["before"]["period4"] == 300.0 and record["lattice"]["after"]["period4"] == 40.0
    card = (zoo / "README.md").read_text()
    assert "| `tiny` | student, " in card and "| `tiny` | 2, " in card and "| 300 → 40 | 200 → 30 |" in card

    module, entry = script_module("build_zoo"), manifest["styles"]["tiny"]
    with pytest.raises(SystemExit, match="was distilled from None, not tiny.pt"):
        module.student_record("tiny", entry, ckpt, ckpt, "box", [])  # the fit itself is no distillation of tiny.pt
    with pytest.raises(SystemExit, match="started from .*, not small.ckpt"):
        module.student_record("tiny", entry, distilled, distilled, "box", [])  # no fit from the distilled network
    with pytest.raises(SystemExit, match="was distilled from 'tiny.pt', not other.pt"):
        module.student_record("tiny", {**entry, "files": {"torchscript": "other.pt"}}, ckpt, distilled, "box", [])
