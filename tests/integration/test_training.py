"""Feed-forward training through the real CLI (:func:`fastmmd.train.cli.build_cli`): a fit of two fused
losses logs every term and writes a small checkpoint that loads back, odd sizes keep their size, a NaN
stops the run with its last good checkpoint, warm starts, the test loop, compiled training.

All runs use the VGG stand-in (widths / 8, random weights), a width-8 network and 32 px crops of
synthetic photos. Each loss alone and the module's own parts: tests/unit/test_training.py; resuming
(plain, and with every stateful feature at once): tests/integration/test_resume.py.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from PIL import Image

from fastmmd.base.errors import NonFiniteLossError
from fastmmd.model.files import network_from_checkpoint, read_checkpoint
from fastmmd.train.callbacks import StylizedImageWriter
from fastmmd.train.cli import build_cli
from fastmmd.train.module import StyleTransferModule


def fit(args: list[str], *extra: str):
    cli = build_cli(["fit", *args, *extra])
    return cli, Path(cli.trainer.log_dir)


def test_a_fit_logs_every_term_and_its_checkpoint_holds_only_the_network_and_loads_back(fit_args):
    """Two fused losses (each loss alone: tests/unit/test_training.py), a cosine schedule and periodic
    checkpoints: the terms of both methods are logged, last.ckpt holds the final step, the network,
    Adam's moments and the settings (no VGG), and loads back into a plain network and a full module."""
    cli, run = fit(fit_args, "--model.loss.method", "bn+poly", "--model.loss.fusion_weights", "[0.5,0.5]",
                   "--trainer.max_steps", "4", "--trainer.val_check_interval", "2", "--checkpoint.every_n_train_steps",
                   "3", "--model.lr_schedule", "cosine", "--run_name", "r")
    assert run.name == "r" and (run / "config.yaml").is_file() and (run / "last.ckpt").is_file()
    metrics = cli.trainer.logged_metrics
    assert torch.isfinite(metrics["train/total_step"]) and torch.isfinite(metrics["val/total"])
    assert all(f"train/style/{m}_step" in metrics for m in ("bn", "poly"))
    grid = Image.open(run / "grids" / "latest.png")  # content row over stylized row
    assert grid.size[1] == 2 * 32 + 3 * 2
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


def test_init_from_starts_from_another_networks_weights_with_a_fresh_optimizer(plain_run, fit_args, tmp_path):
    from fastmmd.__main__ import main
    from fastmmd.model.files import read_network

    source = plain_run[1] / "last.ckpt"  # a trained run (12 steps)
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


def test_init_from_a_different_layout_or_a_bad_file_is_one_line(plain_run, fit_args, tmp_path, capsys):
    from fastmmd.__main__ import main

    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    for path, words in ((plain_run[1] / "last.ckpt", "network_width"), (junk, "not a fastmmd"),
                        (tmp_path / "missing.ckpt", "does not exist")):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            main(["fit", *fit_args, "--model.network_width", "4", "--model.init_from", str(path),
                  "--trainer.max_steps", "1", "--run_name", f"bad-{path.stem}"])
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2 and len(err) == 1 and words in err[0], err
        assert not (tmp_path / "runs" / f"bad-{path.stem}").exists()  # nothing left behind


def test_the_test_loop_logs_under_test(plain_run, fit_args):
    cli = build_cli(["test", *fit_args, "--ckpt_path", str(plain_run[1] / "last.ckpt")])
    logged = cli.trainer.logged_metrics
    assert "test/total" in logged and torch.isfinite(logged["test/total"])
    assert not any(k.startswith("val/") for k in logged)


@pytest.mark.slow
@pytest.mark.heavy(5)
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
    cli, run = fit(fit_args, "--model.compile", "true", "--trainer.max_steps", "2", "--trainer.num_sanity_val_steps", "0",
                   "--run_name", "compiled")
    assert sorted(compiled) == ["TransformerNet", "VGGFeatures"], compiled
    ckpt = read_checkpoint(run / "last.ckpt")
    assert ckpt["global_step"] == 2 and all(k.startswith("network.") and "_orig_mod" not in k for k in ckpt["state_dict"])
    net, _ = network_from_checkpoint(run / "last.ckpt")  # loads into a plain, uncompiled network
    assert torch.isfinite(net(torch.rand(1, 3, 20, 28))).all()
