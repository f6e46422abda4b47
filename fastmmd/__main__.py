"""``fastmmd`` console script: one entry point, two kinds of subcommand.

``fit``/``validate``/``test``/``predict`` go to LightningCLI (:mod:`fastmmd.train.cli`); ``optimize``,
``export``, ``stylize``, ``compare``, ``evaluate``, ``models``, ``data`` and ``serve`` go to their
modules in :mod:`fastmmd.commands` (``build_parser``/``run``). Modules are imported only for the
command that runs, so ``stylize`` never imports Lightning, and ``stylize`` with an ``.onnx`` model on a
CPU not even torch (:mod:`fastmmd.infer.fast_stylize`). This is the only place that turns a :class:`~fastmmd.base.errors.UserError`
into one stderr line and exit code 2.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from fastmmd.base.errors import UserError, did_you_mean, exit_on_user_error, sigterm_unwinds

LIGHTNING_COMMANDS = {
    "fit": "train a feed-forward stylization network (LightningCLI; --config configs/quickstart.yaml)",
    "validate": "run validation of a trained network (LightningCLI)",
    "test": "run the test loop (LightningCLI)",
    "predict": "stylize a dataset with a checkpoint (LightningCLI)",
}
COMMANDS = {
    "optimize": ("fastmmd.commands.optimize", "per-image (Gatys-style) optimization with any style loss"),
    "distill": ("fastmmd.commands.distill", "train a small, fast student network to reproduce a trained one"),
    "export": ("fastmmd.commands.export", "export a trained network to TorchScript / torch.export (.pt2) / ONNX"),
    "stylize": ("fastmmd.commands.stylize", "stylize images with an exported model or a checkpoint"),
    "compare": ("fastmmd.commands.compare", "compare style losses on your images: grid.png + report"),
    "evaluate": ("fastmmd.commands.evaluate", "score trained networks against per-image optimization: grid.png + report"),
    "models": ("fastmmd.commands.models", "list the trained styles shipped with fastmmd (use one by name: stylize NAME photo.jpg)"),
    "data": ("fastmmd.commands.data", "fetch training photos (fastmmd data coco DIR) or the shipped styles' paintings (fastmmd data paintings)"),
    "serve": ("fastmmd.commands.serve", "a local web page: drop a photo, pick a style, move a slider, download (extra: serve)"),
}


def usage() -> str:
    lines = ["usage: fastmmd COMMAND [options]   (fastmmd COMMAND --help for a command's options)", "", "commands:"]
    for name, text in LIGHTNING_COMMANDS.items():
        lines.append(f"  {name:<9} {text}")
    for name, (_, text) in COMMANDS.items():
        lines.append(f"  {name:<9} {text}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one subcommand; returns its exit code (0 success, 1 partial failure, 2 user error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] == "--version":
        from fastmmd import __version__

        print(f"fastmmd {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    with exit_on_user_error():
        if command not in LIGHTNING_COMMANDS and command not in COMMANDS:
            hint = did_you_mean(command, [*LIGHTNING_COMMANDS, *COMMANDS])
            raise UserError(f"unknown command {command!r}{hint} (fastmmd --help lists them)")
        from fastmmd.base.outputs import cleanup_on_failure, remove_created
        from fastmmd.base.unpickling import weights_only_loads

        # No unrestricted unpickling anywhere in the command (libraries included), and a failed
        # command leaves no folder it created empty behind (fastmmd.base.outputs).
        with weights_only_loads(), cleanup_on_failure() as created:
            if command in LIGHTNING_COMMANDS:
                from fastmmd.train.cli import run_lightning

                code = run_lightning(command, rest)
            else:  # SIGTERM unwinds like Ctrl-C (LightningCLI has its own SIGTERM handling)
                with sigterm_unwinds():
                    code = None
                    if command == "stylize":  # an .onnx model on the CPU runs without torch
                        from fastmmd.infer.fast_stylize import run_fast

                        code = run_fast(rest)
                    if code is None:
                        module = importlib.import_module(COMMANDS[command][0])
                        code = int(module.run(module.build_parser().parse_args(rest)) or 0)
            if code:
                remove_created(created)
            return code
    return 0  # not reached: exit_on_user_error raises SystemExit


if __name__ == "__main__":
    raise SystemExit(main())
