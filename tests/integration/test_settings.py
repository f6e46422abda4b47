"""``fastmmd fit`` exposes the declared loss settings (fastmmd.losses.StyleLoss) like every other command
(tests/unit/test_settings.py)."""

from __future__ import annotations

import dataclasses

import yaml

from fastmmd.losses import StyleLoss
from fastmmd.train.cli import run_lightning

FIELDS = {f.name for f in dataclasses.fields(StyleLoss)}


def test_fit_exposes_the_same_settings(fit_args, capsys):
    assert run_lightning("fit", [*fit_args, "--print_config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)["model"]["loss"]
    assert set(printed) == FIELDS
    assert StyleLoss(**printed) == StyleLoss()
