"""The loss settings are declared once (fastmmd.losses.StyleLoss) and every command exposes them alike."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from fastmmd.apps.compare import GRID_AXES
from fastmmd.commands import compare, evaluate, optimize
from fastmmd.losses import StyleLoss
from fastmmd.train.cli import run_lightning

FIELDS = {f.name for f in dataclasses.fields(StyleLoss)}
DEFAULTS = dataclasses.asdict(StyleLoss())
#: command -> the StyleLoss fields it sets itself instead of taking them as flags
COMMANDS = {"optimize": (optimize, ()), "evaluate": (evaluate, ()), "compare": (compare, GRID_AXES)}


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
    from fastmmd.base.settings import dataclass_from_args

    loss = dataclass_from_args(StyleLoss, args)
    assert (loss.method, loss.style_layers, loss.fusion_weights) == ("bn+poly", ("relu1_1", "relu2_1"), (0.3, 0.7))


def test_hyperparameters_are_plain_data():
    assert StyleLoss.of(dataclasses.asdict(StyleLoss(method="bn", style_layers=["relu2_1"]))) == StyleLoss(
        method="bn", style_layers=("relu2_1",))


@pytest.mark.parametrize("cls", ["VGGSettings", "OptimizerSettings", "RuntimeSettings"])
def test_shared_settings_are_declared_once(cls):
    """--device, --precision, --vgg-weights, --pooling, --optimizer, --lr, --iterations, --seed, --no-progress:
    one dataclass each, the same flag, help and default in optimize, compare and evaluate (but for a
    default a command changes on purpose: compare and evaluate optimize 100 steps per image)."""
    import argparse

    from fastmmd.base import settings

    kind = getattr(settings, cls)
    names = {f.name for f in dataclasses.fields(kind)} - {"stop_tol"}  # optimize's alone (an early stop per image)
    seen = {}
    for command, (module, _) in COMMANDS.items():
        parser = module.build_parser()
        actions = {a.dest: a for a in parser._actions if a.dest in names}
        assert set(actions) == names, command
        for name, action in actions.items():
            default = parser.get_defaults()[name]
            if (command, name) != ("optimize", "iterations"):
                seen.setdefault(name, (action.help, default, action.option_strings))
                assert (action.help, default, action.option_strings) == seen[name], (command, name)
    hidden = {f.name for f in dataclasses.fields(kind) if f.metadata.get("hidden")}
    assert all((seen[n][0] == argparse.SUPPRESS) == (n in hidden) for n in seen)


@pytest.mark.parametrize("cls,bad,message", [
    ("OptimizerSettings", {"iterations": 0}, "--iterations must be at least 1"),
    ("OptimizerSettings", {"lr": float("nan")}, "--lr must be a positive number"),
    ("OptimizerSettings", {"stop_tol": -1.0}, "--stop-tol must be 0 or more"),
    ("VGGSettings", {"vgg_width_divisor": 0}, "--vgg-width-divisor must be a whole number"),
    ("RuntimeSettings", {"precision": "fp8"}, "--precision must be auto, 32 or bf16"),
])
def test_settings_validate_themselves(cls, bad, message):
    from fastmmd.base import settings
    from fastmmd.base.errors import UserError

    with pytest.raises(UserError, match=message):
        getattr(settings, cls)(**bad)
