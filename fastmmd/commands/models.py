"""``fastmmd models``: the shipped styles (:mod:`fastmmd.infer.zoo`), listed without importing torch."""

from __future__ import annotations

from fastmmd.infer.zoo import ENV_VAR, print_styles


def build_parser():
    """``fastmmd models [--json]``."""
    from fastmmd.commands.parsing import CommandParser

    parser = CommandParser("fastmmd models", "List the trained styles shipped with fastmmd (checkpoints/zoo.json, or "
                           f"${ENV_VAR}/zoo.json); use one by name: fastmmd stylize NAME photo.jpg.")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    return parser


def run(args) -> int:
    """Runs ``fastmmd models``."""
    return print_styles(as_json=args.json)
