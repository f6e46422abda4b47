"""Plumbing shared by the non-Lightning subcommands (every module of :mod:`fastmmd.commands`).

Each command module defines ``build_parser() -> ArgumentParser`` (dashed flags, help strings and a
``--config`` YAML file whose keys are the flags with underscores) and ``run(args) -> int``. The
parser here reports a bad flag or value as a :class:`~fastmmd.base.errors.UserError`, so the entry
point prints one line and exits 2 like every other user error.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Sequence
from types import NoneType, UnionType
from typing import Any, Literal

from jsonargparse import ActionConfigFile, ArgumentParser

from fastmmd.base.errors import UserError, one_line, plain_parse_error


class CommandParser(ArgumentParser):
    """A jsonargparse parser whose errors are one-line :class:`UserError` instead of usage + exit."""

    def __init__(self, prog: str, description: str, **kwargs) -> None:
        super().__init__(prog=prog, description=description, exit_on_error=False, **kwargs)
        self.add_argument("--config", action=ActionConfigFile, help="YAML file with any of these options (keys use underscores)")

    def error(self, message: str, ex: Exception | None = None):  # type: ignore[override]
        raise UserError(f"{self.prog}: {plain_parse_error(one_line(message))} (see `{self.prog} --help`)")




def add_dataclass_flags(parser: ArgumentParser, cls: type, exclude: Sequence[str] = (),
                        aliases: dict[str, str] | None = None, defaults: dict[str, Any] | None = None) -> None:
    """Adds a ``--dashed-name`` flag per field of the dataclass ``cls``, its default and help from
    the field and the class docstring's ``Attributes:``, so a command never restates a setting.

    Literal fields become choices, scalars (or optional scalars) typed flags, booleans (default
    False) switches, tuples take a comma-separated list (``relu1_1,relu2_1``) or a YAML list in
    ``--config``; fields with :data:`fastmmd.base.settings.HIDDEN` metadata stay out of ``--help``.
    Read the values back with :func:`fastmmd.base.settings.dataclass_from_args`.

    Args:
        exclude: fields the command sets itself (``compare``'s grid axes).
        aliases: an older flag name per field, still accepted (``{"method": "--loss"}``).
        defaults: this command's default for a field, where it differs from the class's
            (``compare`` runs 100 iterations, ``optimize`` 300).
    """
    import argparse

    import docstring_parser

    docs = {p.arg_name: " ".join((p.description or "").split()) for p in docstring_parser.parse(cls.__doc__ or "").params}
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in exclude:
            continue
        kind, kwargs = hints[field.name], {}
        default = (defaults or {}).get(field.name, field.default)
        scalar = [a for a in typing.get_args(kind) if a is not NoneType] if typing.get_origin(kind) in (UnionType, typing.Union) else [kind]
        if typing.get_origin(kind) is Literal:
            kwargs["choices"] = list(typing.get_args(kind))
        elif kind is bool:
            assert default is False, f"{cls.__name__}.{field.name}: a switch is off by default"
            kwargs["action"] = "store_true"
        elif len(scalar) == 1 and scalar[0] in (int, float, str):
            kwargs["type"] = scalar[0]
        flags = [f"--{field.name.replace('_', '-')}", *([aliases[field.name]] if aliases and field.name in aliases else [])]
        help_text = argparse.SUPPRESS if field.metadata.get("hidden") else docs.get(field.name)
        parser.add_argument(*flags, dest=field.name, default=default, help=help_text, **kwargs)


















def add_condition_flags(parser: Any) -> None:
    """``--style``, ``--mix``, ``--strength`` and ``--grid``: the one declaration of the inference flags."""
    group = parser.add_argument_group("networks trained on several styles or with a strength input "
                                      "(model.conditioning; `fastmmd export --info` lists them)")
    group.add_argument("--style", default=None, help="the style to draw, by name or index (default: style 0)")
    group.add_argument("--mix", default=None, help="a blend of styles, e.g. candy=0.7,wave=0.3 (names or indices; "
                       "weights >= 0, normalised to sum 1; unnamed styles get 0)")
    group.add_argument("--strength", type=float | None, default=None, help="style strength s: 0 = the content, 1 = the "
                       "trained default (the default), up to the trained maximum")
    group.add_argument("--style-image", action="append", default=None, metavar="PAINTING",
                       help="an arbitrary-style network's painting (any image file, a shipped style's name for its "
                       "painting: fastmmd data paintings, or statistics saved by --save-style as .npz); repeat it and "
                       "add --mix 0.7,0.3 to blend several")
    group.add_argument("--grid", choices=["strength", "styles"], default=None, help="instead of one output per image, "
                       "<name>_grid_<kind>.png: strength (rows: styles, columns: strengths) or styles (row a, column "
                       "b: the 50/50 blend of a and b; the diagonal: each style)")
