"""Feed-forward training: every loss fits, one batch overfits, resume is exact, checkpoints stay small.

All runs use the VGG stand-in (widths / 8, random weights), a width-8 network and 32 px crops of
synthetic photos, through the real CLI (:func:`fastmmd.train.cli.build_cli`) unless the test is about the
module alone.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from PIL import Image

from fastmmd.base.errors import NonFiniteLossError, UserError
from fastmmd.model.files import network_from_checkpoint, read_checkpoint
from fastmmd.train.callbacks import AtomicCheckpointIO, StylizedImageWriter
from fastmmd.train.cli import build_cli
from fastmmd.train.module import StyleTransferModule


def fit(args: list[str], *extra: str):
    cli = build_cli(["fit", *args, *extra])
    return cli, Path(cli.trainer.log_dir)


def weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(ckpt)["state_dict"]


@pytest.mark.parametrize("loss", ["gram", "linear", "poly", "gaussian", "bn", "bn+poly"])
def test_fit_every_loss(fit_args, loss):
    cli, run = fit(fit_args, "--model.loss.method", loss, "--trainer.max_steps", "2", "--trainer.val_check_interval", "2",
                   "--run_name", "r")
    assert run.name == "r" and (run / "config.yaml").is_file() and (run / "last.ckpt").is_file()
    metrics = cli.trainer.logged_metrics
    assert torch.isfinite(metrics["train/total_step"]) and torch.isfinite(metrics["val/total"])
    methods = ["bn", "poly"] if loss == "bn+poly" else [loss]
    assert all(f"train/style/{m}_step" in metrics for m in methods)
    assert read_checkpoint(run / "last.ckpt")["global_step"] == 2
    grid = Image.open(run / "grids" / "latest.png")  # content row over stylized row
    assert grid.size[1] == 2 * 32 + 3 * 2


def test_checkpoint_holds_only_the_network_and_loads_back(fit_args):
    cli, run = fit(fit_args, "--model.loss.method", "bn+poly", "--model.loss.fusion_weights", "[0.5,0.5]", "--trainer.max_steps", "4",
                   "--checkpoint.every_n_train_steps", "3", "--model.lr_schedule", "cosine", "--run_name", "r")
    # last.ckpt holds the final step even though the periodic saves were at step 3
    assert sorted(p.name for p in run.glob("*.ckpt")) == ["last.ckpt", "step=0000003.ckpt"]
    ckpt = read_checkpoint(run / "last.ckpt")
    assert ckpt["global_step"] == 4 and ckpt["optimizer_states"] and ckpt["hyper_parameters"]["loss"]["method"] == "bn+poly"
    schedule = ckpt["lr_schedulers"][0]  # cosine over max_steps, stepped every step: at the end lr = lr_min = 0
    assert schedule["last_epoch"] == 4 and schedule["T_max"] == 4 and schedule["_last_lr"][0] == pytest.approx(0, abs=1e-12)
    assert ckpt["state_dict"] and all(k.startswith("network.") for k in ckpt["state_dict"])
    params = sum(p.numel() for p in cli.model.network.parameters())
    # network + two Adam moments in float32 plus a few KB of config: no VGG (which alone is ~6x the network here)
    assert (run / "last.ckpt").stat().st_size < 3 * 4 * params + 60_000
    meta = ckpt["fastmmd"]
    assert meta["format_version"] == 1 and meta["loss"] == "bn+poly" and meta["style_images"] == ["style.png"]
    assert meta["network"] == {"width": 8, "residual_blocks": 1, "downsample_kernel": 4} and meta["global_step"] == 4
    assert meta["vgg"] == {"weights": "random", "pooling": "max", "width_divisor": 8}
    net, _ = network_from_checkpoint(run / "last.ckpt")
    x = torch.rand(2, 3, 29, 35)
    cli.model.eval()
    with torch.no_grad():
        assert torch.allclose(net(x), cli.model.network(x), atol=1e-6)  # channels_last vs contiguous convs
    # and Lightning loads it back into a full module (VGG rebuilt, not read from the file)
    module = StyleTransferModule.load_from_checkpoint(run / "last.ckpt")
    with torch.no_grad():
        assert torch.allclose(module.eval().network(x), net(x), atol=1e-6)


def test_resume_equals_uninterrupted_run(fit_args):
    """fit 2N steps == fit N, then `--ckpt_path last` to 2N (N mid-epoch: 8 batches per epoch here)."""
    common = [*fit_args, "--checkpoint.every_n_train_steps", "100", "--trainer.val_check_interval", "4",
              "--model.lr", "3e-3"]
    _, straight = fit(common, "--trainer.max_steps", "10", "--run_name", "straight")
    _, split = fit(common, "--trainer.max_steps", "5", "--run_name", "split")
    fit(common, "--trainer.max_steps", "10", "--run_name", "split", "--ckpt_path", "last")
    a, b = read_checkpoint(straight / "last.ckpt"), read_checkpoint(split / "last.ckpt")
    assert a["global_step"] == b["global_step"] == 10
    for key, value in a["state_dict"].items():
        assert torch.allclose(value, b["state_dict"][key], rtol=0, atol=1e-6), key
    moments_a = [s["exp_avg"] for s in a["optimizer_states"][0]["state"].values()]
    moments_b = [s["exp_avg"] for s in b["optimizer_states"][0]["state"].values()]
    assert all(torch.allclose(x, y, rtol=0, atol=1e-6) for x, y in zip(moments_a, moments_b, strict=True))
    # and the network actually changed from its initialisation in both
    assert not torch.equal(read_checkpoint(split / "last.ckpt")["state_dict"]["network.encoder.0.1.weight"],
                           StyleTransferModule(["x.png"], network_width=8, residual_blocks=1, vgg_weights="random",
                                               vgg_width_divisor=8).state_dict()["network.encoder.0.1.weight"])


@pytest.mark.parametrize("class_path", ["fastmmd.train.callbacks.NetworkEMA",
                                        "lightning.pytorch.callbacks.EMAWeightAveraging"])
def test_ema_weight_averaging_ships_the_average_network_and_resumes_exactly(fit_args, class_path):
    """Weight averaging, named by fastmmd's class path or by Lightning's EMAWeightAveraging (Lightning
    >= 2.6; run as fastmmd's): the checkpoint's network (what export and stylize read) is the average, the trained
    network rides along network-only (no VGG), and a resume restores both."""
    from fastmmd.model.files import read_network

    if class_path.startswith("lightning.") and not hasattr(L.pytorch.callbacks, "EMAWeightAveraging"):
        pytest.skip(f"Lightning {L.__version__} has no EMAWeightAveraging")
    common = [*fit_args, "--checkpoint.every_n_train_steps", "100", "--trainer.val_check_interval", "4",
              "--model.lr", "3e-3", f"--trainer.callbacks+={class_path}",
              "--trainer.callbacks.decay", "0.5"]
    cli, straight = fit(common, "--trainer.max_steps", "8", "--run_name", "straight")
    _, split = fit(common, "--trainer.max_steps", "4", "--run_name", "split")
    fit(common, "--trainer.max_steps", "8", "--run_name", "split", "--ckpt_path", "last")
    a, b = read_checkpoint(straight / "last.ckpt"), read_checkpoint(split / "last.ckpt")
    for ckpt in (a, b):
        assert all(k.startswith("network.") for k in ckpt["state_dict"]) and ckpt["global_step"] == 8
        assert set(ckpt["current_model_state"]) == set(ckpt["state_dict"])
    key = "network.encoder.0.1.weight"
    assert not torch.allclose(a["state_dict"][key], a["current_model_state"][key])  # decay 0.5: the average lags
    ema = next(c for c in cli.trainer.callbacks if type(c).__name__ == "NetworkEMA")
    # the average is the network's alone, paired with it by name (no VGG, no style targets copied)
    shapes = {k: v.shape for k, v in cli.model.network.state_dict().items()}
    assert {k: v.shape for k, v in ema.average.items()} == shapes
    torch.testing.assert_close(a["state_dict"][key], ema.average[key.removeprefix("network.")])
    for entry in ("state_dict", "current_model_state"):
        for k, v in a[entry].items():
            assert torch.allclose(v, b[entry][k], rtol=0, atol=1e-6), (entry, k)
    net, _ = read_network(straight / "last.ckpt")
    assert torch.equal(net.state_dict()[key.removeprefix("network.")], a["state_dict"][key])


@pytest.mark.parametrize("method", ["gram", "gaussian", "bn+poly"])
def test_configure_model_computes_the_targets_where_the_vgg_is_whatever_the_default_device(make_image, method):
    """The Trainer calls configure_model under its device's default-device context (CUDA on a GPU)
    while the module is still on the CPU: every target must be made on the VGG's device (here "meta"
    stands in for the foreign default, which the CPU-only CI cannot create)."""
    from fastmmd.losses import StyleLoss

    module = StyleTransferModule([str(make_image("style.png", 64, 64))], loss=StyleLoss(method=method), image_size=32,
                                 network_width=8, residual_blocks=1, vgg_weights="random", vgg_width_divisor=8)
    with torch.device("meta"):
        module.configure_model()
    buffers = dict(module.criterion.named_buffers())
    assert module.criterion.has_style and any(name.startswith("target__") for name in buffers)
    assert all(b.device.type == "cpu" and torch.isfinite(b).all() for b in buffers.values())


def test_overfitting_one_batch_lowers_the_loss(make_image):
    style = make_image("style.png", 64, 64, seed=99)
    torch.manual_seed(0)
    module = StyleTransferModule([str(style)], image_size=32, network_width=16, residual_blocks=1, vgg_weights="random",
                                 vgg_width_divisor=8, lr=1e-2)
    batch = torch.stack([torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(2)])
    module._ensure_style()
    optimizer = module.configure_optimizers()  # Adam at model.lr (constant schedule)

    def loss() -> float:
        with torch.no_grad():
            return float(module.criterion(module.network(batch), batch)["total"].mean())

    before = loss()
    for _ in range(30):  # the same step Lightning runs (Trainer.fit gives bitwise the same weights)
        optimizer.zero_grad()
        module._terms(batch)[1]["total"].mean().backward()
        optimizer.step()
    after = loss()
    assert after < 0.5 * before, (before, after)


def test_odd_sizes_keep_their_size(make_image, tmp_path):
    style = make_image("style.png", 64, 64, seed=99)
    module = StyleTransferModule([str(style)], image_size=32, network_width=8, residual_blocks=1, vgg_weights="random",
                                 vgg_width_divisor=8)
    sizes = [(37, 53), (41, 29), (9, 13)]
    images = [(torch.rand(3, h, w), f"/photos/odd{i}.jpg") for i, (h, w) in enumerate(sizes)]
    loader = torch.utils.data.DataLoader(images, batch_size=1)
    out = tmp_path / "stylized"
    trainer = L.Trainer(logger=False, accelerator="cpu", enable_progress_bar=False, callbacks=[StylizedImageWriter(str(out))])
    predictions = trainer.predict(module, loader)
    assert [tuple(p.shape[-2:]) for p in predictions] == sizes
    assert [Image.open(out / f"odd{i}.png").size for i in range(3)] == [(w, h) for h, w in sizes]
    shapes = []

    class Shapes(L.Callback):
        def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
            shapes.append((tuple(batch.shape), tuple(outputs["generated"].shape)))

    odd = torch.utils.data.DataLoader([torch.rand(3, 37, 53), torch.rand(3, 37, 53)], batch_size=2)
    metrics = L.Trainer(logger=False, accelerator="cpu", enable_progress_bar=False, callbacks=[Shapes()]).validate(module, odd)
    assert shapes == [((2, 3, 37, 53), (2, 3, 37, 53))] and metrics[0]["val/total"] > 0


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(fit_args, monkeypatch):
    terms = StyleTransferModule._terms

    def poisoned(self, content, *conditions):
        generated, out = terms(self, content, *conditions)
        if self.training and self.global_step >= 3:
            out = {**out, "style": out["style"] * float("nan")}
            out["total"] = out["total"] + out["style"]
        return generated, out

    monkeypatch.setattr(StyleTransferModule, "_terms", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"style.*NaN/Inf at step 3.*--ckpt_path last"):
        fit(fit_args, "--trainer.max_steps", "10", "--checkpoint.every_n_train_steps", "2", "--run_name", "r")
    ckpt = read_checkpoint(Path(fit_args[fit_args.index("--runs_dir") + 1]) / "r" / "last.ckpt")
    assert ckpt["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, path)

    def killed(obj, f, *a, **k):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temp file left
    assert torch.equal(torch.load(path, weights_only=True)["state_dict"]["w"], torch.ones(3))


def test_sigkill_then_resume_equals_uninterrupted_run(fit_args, tmp_path):
    """A run killed with SIGKILL mid-training resumes from its last checkpoint with nothing lost:
    the final weights equal an uninterrupted run's."""
    import os
    import signal
    import subprocess
    import sys
    import time

    common = [*fit_args, "--checkpoint.every_n_train_steps", "1", "--trainer.val_check_interval", "4", "--model.lr", "3e-3"]
    _, straight = fit(common, "--trainer.max_steps", "12", "--run_name", "straight")
    run = tmp_path / "runs" / "killed"
    # same thread count as this process: bitwise-equal arithmetic is what makes the runs comparable
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen([sys.executable, "-m", "fastmmd", "fit", *common, "--trainer.max_steps", "12",
                             "--run_name", "killed"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (run / "step=0000002.ckpt").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL  # it was killed, not finished
    killed_at = read_checkpoint(run / "last.ckpt")["global_step"]  # the last checkpoint is whole
    assert 1 <= killed_at < 12  # last.ckpt may trail the newest step=N file by one save
    fit(common, "--trainer.max_steps", "12", "--run_name", "killed", "--ckpt_path", "last")
    a, b = weights(straight / "last.ckpt"), weights(run / "last.ckpt")
    assert read_checkpoint(run / "last.ckpt")["global_step"] == 12
    for key, value in a.items():
        assert torch.allclose(value, b[key], rtol=0, atol=1e-6), key


def test_validation_logs_compare_metrics_and_elapsed_time_to_metrics_csv(fit_args):
    """val/style_swd, val/content_distance and time/elapsed_s reach the logged metrics and <run>/metrics.csv,
    and a resume keeps the earlier rows and continues the clock from the checkpoint."""
    import csv

    def validations(run: Path) -> list[dict[str, float]]:
        with open(run / "metrics.csv", newline="") as f:
            return [{k: float(r[k]) for k in ("step", "val/style_swd", "val/content_distance", "time/elapsed_s")}
                    for r in csv.DictReader(f) if r.get("val/style_swd")]

    common = [*fit_args, "--trainer.val_check_interval", "2", "--run_name", "r"]
    cli, run = fit(common, "--trainer.max_steps", "4")
    logged = cli.trainer.logged_metrics
    assert all(torch.isfinite(logged[k]) for k in ("val/style_swd", "val/content_distance", "time/elapsed_s"))
    first = validations(run)
    assert len(first) == 2  # after steps 2 and 4
    assert all(v["val/style_swd"] > 0 and v["val/content_distance"] > 0 for v in first)
    assert 0 < first[0]["time/elapsed_s"] < first[1]["time/elapsed_s"]
    stored = read_checkpoint(run / "last.ckpt")["callbacks"]["ElapsedTime"]["elapsed_s"]
    assert 0 < stored <= first[1]["time/elapsed_s"]
    fit(common, "--trainer.max_steps", "6", "--ckpt_path", "last")
    second = validations(run)
    assert second[:2] == first and len(second) == 3
    assert second[2]["time/elapsed_s"] > stored


def test_validation_scores_are_the_compare_metrics(make_image):
    """The logged val/style_swd and val/content_distance are fastmmd compare's style_sw and content of the outputs."""
    from fastmmd.base.images import read_image
    from fastmmd.losses.metrics import evaluate_features
    from fastmmd.train.callbacks import ValidationScores
    from fastmmd.vgg.features import CONTENT_LAYERS, STYLE_LAYERS

    style = make_image("style.png", 64, 48, seed=99)
    module = StyleTransferModule([str(style)], image_size=32, network_width=8, residual_blocks=1, vgg_weights="random",
                                 vgg_width_divisor=8)
    photos = [torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    trainer = L.Trainer(logger=False, accelerator="cpu", enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[ValidationScores()])
    logged = trainer.validate(module, torch.utils.data.DataLoader(photos, batch_size=2))[0]
    vgg = module.criterion.vgg
    with torch.no_grad():
        style_features = vgg(read_image(style, 32).unsqueeze(0))  # the style at the validation size
        expected = [evaluate_features(vgg(module.network(p[None]).mul(255).round().div(255)), style_features, STYLE_LAYERS,
                                      vgg(p[None]), CONTENT_LAYERS) for p in photos]
    assert logged["val/style_swd"] == pytest.approx(sum(e["style_sw"] for e in expected) / 3, rel=1e-4)
    assert logged["val/content_distance"] == pytest.approx(sum(e["content"] for e in expected) / 3, rel=1e-4)


def test_init_from_starts_from_another_networks_weights_with_a_fresh_optimizer(fit_args, tmp_path):
    from fastmmd.__main__ import main
    from fastmmd.model.files import read_network

    _, source_run = fit(fit_args, "--trainer.max_steps", "3", "--run_name", "source")
    source = source_run / "last.ckpt"
    exported = tmp_path / "source.pt"
    assert main(["export", str(source), "--output", str(exported)]) == 0
    source_net, _ = read_network(source)
    for path in (source, exported):  # a training checkpoint or an exported network
        module = StyleTransferModule(["unread.png"], vgg_weights="random", vgg_width_divisor=8, network_width=8,
                                     residual_blocks=1, init_from=str(path))
        state = module.network.state_dict()
        assert all(torch.equal(state[k], v) for k, v in source_net.state_dict().items())
    cli, run = fit(fit_args, "--model.init_from", str(source), "--trainer.max_steps", "2", "--run_name", "warm")
    ckpt = read_checkpoint(run / "last.ckpt")  # the step and Adam's moments start fresh
    assert ckpt["global_step"] == 2 and ckpt["optimizer_states"][0]["state"][0]["step"] == 2
    assert ckpt["fastmmd"]["init_from"] == "last.ckpt"


def test_init_from_a_different_layout_or_a_bad_file_is_one_line(fit_args, tmp_path, capsys):
    from fastmmd.__main__ import main

    _, source_run = fit(fit_args, "--trainer.max_steps", "1", "--run_name", "source")
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    for path, words in ((source_run / "last.ckpt", "network_width"), (junk, "not a fastmmd"),
                        (tmp_path / "missing.ckpt", "does not exist")):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            main(["fit", *fit_args, "--model.network_width", "4", "--model.init_from", str(path),
                  "--trainer.max_steps", "1", "--run_name", f"bad-{path.stem}"])
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2 and len(err) == 1 and words in err[0], err
        assert not (tmp_path / "runs" / f"bad-{path.stem}").exists()  # nothing left behind


def test_the_test_loop_logs_under_test(fit_args):
    _, run = fit(fit_args, "--trainer.max_steps", "1", "--run_name", "r")
    cli = build_cli(["test", *fit_args, "--ckpt_path", str(run / "last.ckpt")])
    logged = cli.trainer.logged_metrics
    assert "test/total" in logged and torch.isfinite(logged["test/total"])
    assert not any(k.startswith("val/") for k in logged)


@pytest.mark.slow
def test_compiled_training_keeps_the_checkpoint_format(fit_args, monkeypatch):
    """``model.compile``: the network and VGG are compiled in place (``nn.Module.compile``) and the
    checkpoint holds plain ``network.*`` keys that an uncompiled network loads.

    The compiler here is TorchDynamo with AOTAutograd (``backend="aot_eager"``): the same graph capture,
    module wrapping and joint forward/backward graph as the default inductor backend, without
    inductor's C++ code generation, which cost 140-190 s cold on the 2-core CPU for this tiny network
    and is no part of the checkpoint format (inductor itself runs in scripts/bench_train.py's
    ``compile-*`` variants, scripts/gpu_check.sh)."""
    compiled = []
    compile_ = torch.nn.Module.compile

    def aot_eager(module, *args, **kwargs):
        compiled.append(type(module).__name__)
        return compile_(module, *args, **{**kwargs, "backend": "aot_eager"})

    monkeypatch.setattr(torch.nn.Module, "compile", aot_eager)
    cli, run = fit(fit_args, "--model.compile", "true", "--trainer.max_steps", "2", "--run_name", "compiled")
    assert sorted(compiled) == ["TransformerNet", "VGGFeatures"], compiled
    ckpt = read_checkpoint(run / "last.ckpt")
    assert ckpt["global_step"] == 2 and all(k.startswith("network.") and "_orig_mod" not in k for k in ckpt["state_dict"])
    net, _ = network_from_checkpoint(run / "last.ckpt")  # loads into a plain, uncompiled network
    assert torch.isfinite(net(torch.rand(1, 3, 20, 28))).all()


@pytest.mark.parametrize("crop", [False, True])
def test_stability_loss_is_logged_with_the_temporal_error_and_resumes_exactly(fit_args, crop):
    """model.stability_weight adds train/stability (Gupta et al.) to the loss; every validation logs
    val/temporal_error; the term's random shifts (sub-pixel, or whole-pixel crops with
    model.stability_crop) and noise resume exactly."""
    common = [*fit_args, "--model.stability_weight", "50", "--trainer.val_check_interval", "2",
              "--checkpoint.every_n_train_steps", "100", "--model.stability_crop", str(crop).lower(),
              "--model.stability_shift", "3" if crop else "1"]
    cli, straight = fit(common, "--trainer.max_steps", "4", "--run_name", "straight")
    logged = cli.trainer.logged_metrics
    assert logged["train/stability_step"] > 0 and logged["val/temporal_error"] > 0
    assert "val/stability" not in logged  # a training term only
    assert read_checkpoint(straight / "last.ckpt")["fastmmd"]["stability_weight"] == 50
    fit(common, "--trainer.max_steps", "2", "--run_name", "split")
    _, split = fit(common, "--trainer.max_steps", "4", "--run_name", "split", "--ckpt_path", "last")
    a, b = weights(straight / "last.ckpt"), weights(split / "last.ckpt")
    for key, value in a.items():
        assert torch.allclose(value, b[key], rtol=0, atol=1e-6), key


def test_stability_weight_must_be_a_finite_non_negative_number(make_image):
    style = make_image("style.png", 64, 64, seed=99)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(UserError, match="stability_weight"):
            StyleTransferModule([str(style)], stability_weight=bad, vgg_weights="random", vgg_width_divisor=8)


def test_loss_jitter_scores_a_random_crop_of_output_and_photo_alike_and_resumes_exactly(fit_args, make_image):
    """model.loss_jitter J: the criterion sees output and photo cut by J px at one random offset
    per step (the same for both; VGG's grid no longer sits on the network's); validation does not
    jitter; the offsets resume exactly."""
    style = make_image("style.png", 64, 64, seed=99)
    module = StyleTransferModule([str(style)], image_size=32, network_width=8, residual_blocks=1, vgg_weights="random",
                                 vgg_width_divisor=8, loss_jitter=3)
    seen = []
    module.criterion.forward = lambda scored, photo, **_: seen.append((scored, photo)) or {"total": scored.mean()}
    batch = torch.rand(2, 3, 32, 40)
    offsets = set()
    for _ in range(24):
        generated, _ = module._terms(batch, jitter=3)
        scored, photo = seen[-1]
        assert scored.shape[-2:] == photo.shape[-2:] == (29, 37)
        dy, dx = next((y, x) for y in range(4) for x in range(4) if torch.equal(photo, batch[..., y:y + 29, x:x + 37]))
        assert torch.equal(scored, generated[..., dy:dy + 29, dx:dx + 37])
        offsets.add((dy, dx))
    assert len(offsets) > 4  # random, not one fixed crop
    module._terms(batch)
    assert seen[-1][0].shape[-2:] == (32, 40)  # no jitter where none is asked (validation)
    for bad in (-1, 16):
        with pytest.raises(UserError, match="loss_jitter"):
            StyleTransferModule([str(style)], loss_jitter=bad, vgg_weights="random", vgg_width_divisor=8)
    common = [*fit_args, "--model.loss_jitter", "3", "--checkpoint.every_n_train_steps", "100"]
    _, straight = fit(common, "--trainer.max_steps", "4", "--run_name", "straight")
    fit(common, "--trainer.max_steps", "2", "--run_name", "split")
    _, split = fit(common, "--trainer.max_steps", "4", "--run_name", "split", "--ckpt_path", "last")
    a, b = weights(straight / "last.ckpt"), weights(split / "last.ckpt")
    for key, value in a.items():
        assert torch.allclose(value, b[key], rtol=0, atol=1e-6), key
