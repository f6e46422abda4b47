"""Every `fastmmd` command the README and the docs pages show still parses: its subcommand exists and
every flag and value it passes is one the command takes today (LightningCLI commands through
``--print_config``, which also merges their config files). A renamed flag or config key then fails
here instead of in a reader's terminal. The commands are parsed, not run (they name the reader's own
photos and paintings); the quickstart and the tests run the same code paths on generated data."""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import pytest

from fastmmd.__main__ import COMMANDS, LIGHTNING_COMMANDS
from fastmmd.train.cli import run_lightning

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "benchmarks.md")]


def _shell_blocks(text: str) -> list[str]:
    """The bodies of the fenced ``bash``/``sh``/plain blocks of a Markdown text, and its indented
    blocks of ``fastmmd`` lines (commands inside list items)."""
    blocks, current, language = [], None, ""
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            if current is None:
                current, language = [], line.lstrip()[3:].strip()
            else:
                if language in ("", "bash", "sh", "console"):
                    blocks.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line)
    blocks += re.findall(r"\n\n((?: {4,}fastmmd .*\n(?: {6,}.*\n)*)+)", text)
    return blocks


def documented_commands() -> list[tuple[str, list[str]]]:
    """(where, argv) for every ``fastmmd ...`` line of the pages' shell blocks (continuations joined,
    comments dropped)."""
    found = []
    for page in PAGES:
        for block in _shell_blocks(page.read_text(encoding="utf-8")):
            for line in re.sub(r"\\\n\s*", " ", block).splitlines():
                line = line.strip()
                if line.startswith("fastmmd "):
                    found.append((f"{page.relative_to(ROOT)}: {line[:80]}", shlex.split(line, comments=True)[1:]))
    return found


COMMANDS_SHOWN = documented_commands()


def test_the_pages_show_commands_of_every_kind():
    shown = {argv[0] for _, argv in COMMANDS_SHOWN if argv}
    assert {"fit", "stylize", "export", "optimize", "compare", "evaluate", "models", "serve", "data"} <= shown, shown


@pytest.mark.parametrize("where, argv", COMMANDS_SHOWN, ids=[w for w, _ in COMMANDS_SHOWN])
def test_a_documented_command_parses(where, argv, capsys):
    command, rest = argv[0], argv[1:]
    if command in LIGHTNING_COMMANDS:
        assert run_lightning(command, [*rest, "--print_config"]) == 0, where
        return
    assert command in COMMANDS, f"{where}: no command {command!r}"
    module = importlib.import_module(COMMANDS[command][0])
    module.build_parser().parse_args(rest)  # a flag or value the command does not take raises UserError
