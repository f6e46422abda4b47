"""Two-process DDP on CPU (gloo) through the real console script: weights stay in sync, data is sharded."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = '''
import hashlib, json
from pathlib import Path
import lightning as L


class Probe(L.Callback):
    """Records, per rank, a fingerprint of every training image seen and of the final weights."""

    def __init__(self, folder: str) -> None:
        self.folder, self.seen = Path(folder), []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen += [hashlib.sha1(image.numpy().tobytes()).hexdigest() for image in batch]

    def on_train_end(self, trainer, pl_module):
        digest = hashlib.sha1()
        for name, value in sorted(pl_module.network.state_dict().items()):
            digest.update(name.encode() + value.detach().contiguous().numpy().tobytes())
        record = {"rank": trainer.global_rank, "world": trainer.world_size, "weights": digest.hexdigest(),
                  "seen": self.seen, "step": trainer.global_step}
        (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
'''


@pytest.mark.slow
@pytest.mark.heavy(7)
def test_ddp_two_processes_stay_in_sync_on_disjoint_data(fit_args, tmp_path):
    """One network for two styles with a strength input (fastmmd.model.conditioning): the styles and
    strengths drawn per image ride along the sharded data, and a single-style network is the same
    loop without the draws (one DDP run covers both: each costs three process start-ups)."""
    (tmp_path / "ddp_probe.py").write_text(PROBE)
    config = tmp_path / "probe.yaml"
    config.write_text(f"trainer:\n  callbacks:\n    - class_path: ddp_probe.Probe\n      init_args:\n        folder: {tmp_path}\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    style = fit_args[fit_args.index("--model.style_images") + 1].strip("[]")
    command = [sys.executable, "-m", "fastmmd", "fit", *fit_args, "--config", str(config),
               "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.max_steps", "3",
               "--trainer.val_check_interval", "3", "--run_name", "ddp",
               "--model.style_images", f"[{style},{style}]", "--model.conditioning", "[styles, strength]"]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2] and [r["step"] for r in ranks] == [3, 3]
    assert ranks[0]["weights"] == ranks[1]["weights"]  # all-reduced gradients keep the replicas identical
    seen = [set(r["seen"]) for r in ranks]
    assert len(seen[0]) == len(seen[1]) == 3 * 2  # 3 steps x batch 2, no repeats within the epoch
    assert not seen[0] & seen[1]  # each rank trained on its own shard
    run = tmp_path / "runs" / "ddp"
    assert (run / "last.ckpt").is_file() and (run / "config.yaml").is_file() and list((run / "grids").glob("*.png"))
