"""Every `fastmmd` command the README and the docs pages show still parses: its subcommand exists and
every flag and value it passes is one the command takes today (LightningCLI commands through
``--print_config``, which also merges their config files). A renamed flag or config key then fails
here, in the quick loop, instead of in a reader's terminal. The commands also run, at a tiny size
(tests/e2e/test_docs_run.py), except the few that cannot run here: those are only parsed here."""

from __future__ import annotations

import importlib

import pytest
from documented import documented_commands

from fastmmd.__main__ import COMMANDS, LIGHTNING_COMMANDS
from fastmmd.train.cli import run_lightning

COMMANDS_SHOWN = documented_commands()


def test_the_pages_show_commands_of_every_kind():
    shown = {c.argv[0] for c in COMMANDS_SHOWN if c.argv}
    assert {"fit", "stylize", "export", "optimize", "compare", "evaluate", "models", "serve", "data"} <= shown, shown


@pytest.mark.parametrize("command", COMMANDS_SHOWN, ids=[c.where for c in COMMANDS_SHOWN])
def test_a_documented_command_parses(command, capsys):
    name, rest = command.argv[0], list(command.argv[1:])
    if name in LIGHTNING_COMMANDS:
        assert run_lightning(name, [*rest, "--print_config"]) == 0, command.where
        return
    assert name in COMMANDS, f"{command.where}: no command {name!r}"
    module = importlib.import_module(COMMANDS[name][0])
    module.build_parser().parse_args(rest)  # a flag or value the command does not take raises UserError
