"""The training module alone (no Trainer): every loss gives finite terms and logs its own names, the
targets are made where the VGG is, one batch overfits, the loss jitter crops, bad settings, atomic
checkpoint writes. Fits through the real CLI: tests/integration/test_training.py and test_resume.py."""

from __future__ import annotations

import pytest
import torch

from fastmmd.base.errors import UserError
from fastmmd.losses import StyleLoss
from fastmmd.train.callbacks import AtomicCheckpointIO
from fastmmd.train.module import StyleTransferModule


def tiny_module(style, **kwargs) -> StyleTransferModule:
    return StyleTransferModule([str(style)], **{"image_size": 32, "network_width": 8, "residual_blocks": 1,
                                                "vgg_weights": "random", "vgg_width_divisor": 8, **kwargs})


@pytest.mark.parametrize("loss", ["gram", "linear", "poly", "gaussian", "bn", "bn+poly"])
def test_every_loss_gives_finite_terms_under_the_names_it_logs(make_image, loss):
    """What ``fit`` logs per step (``train/<name>``) for each loss; one CLI fit (bn+poly, two methods
    fused) runs the logging itself: tests/integration/test_training.py."""
    module = tiny_module(make_image("style.png", 64, 64, seed=99), loss=StyleLoss(method=loss))
    module._ensure_style()
    methods = ["bn", "poly"] if loss == "bn+poly" else [loss]
    assert module.metric_names == ["total", "style", "content", "tv", *(f"style/{m}" for m in methods)]
    batch = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    generated, terms = module._terms(batch)
    assert generated.shape == batch.shape and set(module.metric_names) <= set(terms)
    assert all(torch.isfinite(terms[name]).all() for name in module.metric_names)
    terms["total"].mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in module.network.parameters() if p.grad is not None)


@pytest.mark.parametrize("method", ["gram", "gaussian", "bn+poly"])
def test_configure_model_computes_the_targets_where_the_vgg_is_whatever_the_default_device(make_image, method):
    """The Trainer calls configure_model under its device's default-device context (CUDA on a GPU)
    while the module is still on the CPU: every target must be made on the VGG's device (here "meta"
    stands in for the foreign default, which the CPU-only CI cannot create)."""
    module = tiny_module(make_image("style.png", 64, 64), loss=StyleLoss(method=method))
    with torch.device("meta"):
        module.configure_model()
    buffers = dict(module.criterion.named_buffers())
    assert module.criterion.has_style and any(name.startswith("target__") for name in buffers)
    assert all(b.device.type == "cpu" and torch.isfinite(b).all() for b in buffers.values())


def test_overfitting_one_batch_lowers_the_loss(make_image):
    style = make_image("style.png", 64, 64, seed=99)
    torch.manual_seed(0)
    module = tiny_module(style, network_width=16, lr=1e-2)
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


def test_stability_weight_must_be_a_finite_non_negative_number(make_image):
    style = make_image("style.png", 64, 64, seed=99)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(UserError, match="stability_weight"):
            StyleTransferModule([str(style)], stability_weight=bad, vgg_weights="random", vgg_width_divisor=8)


@pytest.mark.parametrize("crop", [False, True])
def test_the_stability_term_is_positive_and_drawn_from_its_own_generator(make_image, crop):
    """model.stability_weight's term (Gupta et al.): random sub-pixel shifts, or whole-pixel crops with
    model.stability_crop, and noise, all from the generator a checkpoint saves (the resume of the
    whole training state: tests/integration/test_resume.py)."""
    module = tiny_module(make_image("style.png", 64, 64, seed=99), stability_weight=50, stability_crop=crop,
                         stability_shift=3 if crop else 1)
    module._ensure_style()
    assert module.metric_names[-1] == "stability"
    batch = torch.rand(2, 3, 32, 40, generator=torch.Generator().manual_seed(1))
    draw = module._draw(batch)
    generated, _ = module._terms(batch, draw)
    state = module.stability_generator.get_state()
    first = module._stability(batch, generated, draw)
    assert first.shape == (2,) and (first > 0).all()
    module.stability_generator.set_state(state)
    assert torch.equal(module._stability(batch, generated, draw), first)  # the same draws from the same state


def test_loss_jitter_scores_a_random_crop_of_output_and_photo_alike(make_image):
    """model.loss_jitter J: the criterion sees output and photo cut by J px at one random offset
    per step (the same for both; VGG's grid no longer sits on the network's); validation does not
    jitter (the offsets' resume: tests/integration/test_resume.py)."""
    style = make_image("style.png", 64, 64, seed=99)
    module = tiny_module(style, loss_jitter=3)
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


@pytest.mark.parametrize("precision, compile, on", [("32-true", False, True), ("32", False, True),
                                                    ("bf16-mixed", False, False), ("32-true", True, False)])
def test_vgg_runs_nnpack_only_in_fp32_uncompiled_where_the_cpu_rule_says_so(make_image, monkeypatch, precision,
                                                                            compile, on):
    """What fit does when it starts (use_fast_convolutions): NNPACK where the CPU rule says it is
    faster, only in fp32 (bf16 autocast runs oneDNN) and never compiled (inductor cannot trace it)."""
    import fastmmd.train.module as module_file

    module = tiny_module(make_image("style.png", 64, 64, seed=99), compile=compile)
    monkeypatch.setattr(torch, "_nnpack_available", lambda: True, raising=False)
    for rule in (True, False):
        monkeypatch.setattr(module_file, "cpu_nnpack_is_faster", lambda rule=rule: rule)
        assert module.use_fast_convolutions(precision) is (on and rule)
        assert module.criterion.vgg.nnpack is (on and rule)
