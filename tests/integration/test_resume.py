"""Resuming a fit (``--ckpt_path last``) gives the run that never stopped: a plain run, and one run with
every stateful feature at once (conftest.STATEFUL_RUN: paintings and strengths drawn per photo, EMA
weight averaging, the stability term, the loss jitter, the Gaussian MMD's random features, a step
schedule, the data sampler's place mid-epoch and across the epoch's end, the clock and metrics.csv).

A run killed with SIGKILL resumes the same way: tests/e2e/test_processes.py.
"""

from __future__ import annotations

import pytest
import torch

from conftest import metrics_rows
from fastmmd.model.files import read_checkpoint, read_network
from fastmmd.train.cli import build_cli
from fastmmd.train.module import CONDITION_RNG_KEY, RNG_KEY, STABILITY_RNG_KEY, StyleTransferModule


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], what: str = "state_dict") -> None:
    assert a.keys() == b.keys(), what
    for key, value in a.items():
        assert torch.allclose(value, b[key], rtol=0, atol=1e-6), (what, key)


def test_resume_equals_uninterrupted_run(plain_run, tmp_path):
    """fit 12 steps == fit 6, then ``--ckpt_path last`` to 12 (6 is mid-epoch: 8 batches per epoch
    here): the weights and Adam's moments, and the network did train."""
    args, straight = plain_run
    common = [*args, "--runs_dir", str(tmp_path / "runs")]
    build_cli(["fit", *common, "--trainer.max_steps", "6", "--run_name", "split"])
    build_cli(["fit", *common, "--trainer.max_steps", "12", "--run_name", "split", "--ckpt_path", "last"])
    a, b = read_checkpoint(straight / "last.ckpt"), read_checkpoint(tmp_path / "runs" / "split" / "last.ckpt")
    assert a["global_step"] == b["global_step"] == 12
    assert_same_weights(a["state_dict"], b["state_dict"])
    moments_a = [s["exp_avg"] for s in a["optimizer_states"][0]["state"].values()]
    moments_b = [s["exp_avg"] for s in b["optimizer_states"][0]["state"].values()]
    assert all(torch.allclose(x, y, rtol=0, atol=1e-6) for x, y in zip(moments_a, moments_b, strict=True))
    # and the network actually changed from its initialisation
    assert not torch.equal(b["state_dict"]["network.encoder.0.1.weight"],
                           StyleTransferModule(["x.png"], network_width=8, residual_blocks=1, vgg_weights="random",
                                               vgg_width_divisor=8).state_dict()["network.encoder.0.1.weight"])


def test_every_stateful_feature_resumes_exactly(stateful_run):
    """The same photos, paintings, crops, strengths, stability shifts and noise, jitter offsets and
    random features after the resume: the average and the trained network, the optimizer, the
    schedule and every generator end where the uninterrupted run's do; the validations before the
    resume stay in metrics.csv and the clock goes on from the checkpoint."""
    a, b = read_checkpoint(stateful_run["straight"]), read_checkpoint(stateful_run["split"])
    assert a["global_step"] == b["global_step"] == 10
    # weight averaging (fastmmd's NetworkEMA): the checkpoint's network (what export and stylize read) is the
    # average, the trained network rides along network-only (no VGG), and a resume restores both
    for ckpt in (a, b):
        assert all(k.startswith("network.") for k in ckpt["state_dict"])
        assert set(ckpt["current_model_state"]) == set(ckpt["state_dict"])
    key = "network.encoder.0.1.weight"
    assert not torch.allclose(a["state_dict"][key], a["current_model_state"][key])  # decay 0.5: the average lags
    for entry in ("state_dict", "current_model_state"):
        assert_same_weights(a[entry], b[entry], entry)
    moments = [[s["exp_avg"] for s in c["optimizer_states"][0]["state"].values()] for c in (a, b)]
    assert all(torch.allclose(x, y, rtol=0, atol=1e-6) for x, y in zip(*moments, strict=True))
    assert a["lr_schedulers"][0]["last_epoch"] == b["lr_schedulers"][0]["last_epoch"] == 10
    assert a["lr_schedulers"][0]["_last_lr"] == b["lr_schedulers"][0]["_last_lr"] == [3e-3 * 0.5 ** 3]
    for generator in (RNG_KEY, STABILITY_RNG_KEY, CONDITION_RNG_KEY):  # every draw of the run was made
        assert torch.equal(a[generator], b[generator]), generator
    net, _ = read_network(stateful_run["straight"])
    assert torch.equal(net.state_dict()[key.removeprefix("network.")], a["state_dict"][key])
    # model.stability_weight adds train/stability (Gupta et al.); every validation logs val/temporal_error
    logged = stateful_run["logged"]
    assert logged["train/stability_step"] > 0 and logged["val/temporal_error"] > 0
    assert "val/stability" not in logged  # a training term only
    assert a["fastmmd"]["stability_weight"] == 50 and a["fastmmd"]["loss"] == "gaussian"
    # val/style_swd, val/content_distance and time/elapsed_s reach the logged metrics and metrics.csv
    assert all(logged[k] == logged[k] and logged[k] > 0 for k in ("val/style_swd", "val/content_distance",
                                                                  "time/elapsed_s"))
    straight = metrics_rows(stateful_run["straight"].parent)
    assert [r["step"] for r in straight] == [3, 7]  # after 4 and 8 steps
    assert all(r["val/style_swd"] > 0 and r["val/content_distance"] > 0 for r in straight)
    assert 0 < straight[0]["time/elapsed_s"] < straight[1]["time/elapsed_s"]
    first, resumed = stateful_run["first"], metrics_rows(stateful_run["split"].parent)
    assert len(first["rows"]) == 1 and first["rows"][0]["time/elapsed_s"] <= first["elapsed_s"]
    assert resumed[:1] == first["rows"] and len(resumed) == 2  # the earlier row kept, one more
    assert resumed[1]["time/elapsed_s"] > first["elapsed_s"]  # the clock went on from the checkpoint
    for k in ("val/style_swd", "val/content_distance"):  # and validated the same network
        assert resumed[1][k] == pytest.approx(straight[1][k], rel=1e-4), k
