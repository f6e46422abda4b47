"""The loss settings are declared once (fastmmd.losses.StyleLoss) and every command exposes them alike."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from fastmmd.apps import compare, evaluate, optimize
from fastmmd.train.cli import run_lightning
from fastmmd.losses import StyleLoss

FIELDS = {f.name for f in dataclasses.fields(StyleLoss)}
DEFAULTS = dataclasses.asdict(StyleLoss())
#: command -> the StyleLoss fields it sets itself instead of taking them as flags
COMMANDS = {"optimize": (optimize, ()), "evaluate": (evaluate, ()), "compare": (compare, compare.GRID_AXES)}


def _loss_actions(parser) -> dict[str, object]:
    return {a.dest: a for a in parser._actions if a.dest in FIELDS}


@pytest.mark.parametrize("command", COMMANDS)
def test_command_flags_are_the_declared_settings(command):
    module, own = COMMANDS[command]
    parser = module.build_parser()
    actions = _loss_actions(parser)
    assert set(actions) == FIELDS - set(own)
    defaults = parser.get_defaults()
    for name in actions:
        assert defaults[name] == DEFAULTS[name], f"{command} --{name.replace('_', '-')}"
        assert f"--{name.replace('_', '-')}" in actions[name].option_strings
    help_of = {name: a.help for name, a in actions.items()}
    reference = {name: a.help for name, a in _loss_actions(optimize.build_parser()).items()}
    assert all(help_of[n] == reference[n] and help_of[n] for n in help_of)  # help from the one docstring


def test_fit_exposes_the_same_settings(fit_args, capsys):
    assert run_lightning("fit", [*fit_args, "--print_config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)["model"]["loss"]
    assert set(printed) == FIELDS
    assert StyleLoss(**printed) == StyleLoss()


def test_one_default_per_setting_on_purpose():
    # the two that used to disagree between commands (criterion 1.0 / fit 5.0; optimize 1e-3 / fit 0)
    assert StyleLoss().style_weight == 5.0 and StyleLoss().tv_weight == 0.0
    docs = StyleLoss.__doc__ or ""
    assert all(f"    {name}:" in docs for name in FIELDS), "every setting says why its default"


def test_old_loss_flag_still_works():
    args = optimize.build_parser().parse_args(["--content", "c.jpg", "--style", "s.jpg", "--loss", "bn+poly",
                                               "--style-layers", "relu1_1,relu2_1", "--fusion-weights", "0.3,0.7"])
    from fastmmd.commands.parsing import dataclass_from_args

    loss = dataclass_from_args(StyleLoss, args)
    assert (loss.method, loss.style_layers, loss.fusion_weights) == ("bn+poly", ("relu1_1", "relu2_1"), (0.3, 0.7))


def test_hyperparameters_are_plain_data():
    assert StyleLoss.of(dataclasses.asdict(StyleLoss(method="bn", style_layers=["relu2_1"]))) == StyleLoss(
        method="bn", style_layers=("relu2_1",))
