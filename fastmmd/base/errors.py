"""User errors and the one place that turns them into a line on stderr and exit code 2.

Library code raises :class:`UserError` (or a subclass) with a message that names the flag or file
at fault and how to fix it. Only the command-line entry point catches it (:func:`exit_on_user_error`),
so the Python API keeps ordinary exceptions and the command line never shows a traceback for a
mistake the user can fix.
"""

from __future__ import annotations

import contextlib
import difflib
import math
import os
import re
import signal
import sys
import threading
from collections.abc import Iterable, Iterator

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")


class UserError(Exception):
    """Bad input the user can fix: a wrong path, an unreadable image, a bad option value."""


class ImageError(UserError):
    """An image that cannot be read: missing, not an image, truncated, too large, odd format."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the main thread is (:func:`sigterm_unwinds`), so a terminated command
    unwinds as an interrupted one does: every atomic writer removes its temporary ``.part`` file."""


class NonFiniteLossError(UserError):
    """A loss became NaN or Inf; the message says which term and what to lower."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'gram'?"`` for the closest of ``choices``, or ``""``: the one hint every
    "unknown name" message ends with (commands, losses, VGG layers, shipped styles)."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def one_line(message: str) -> str:
    """Collapses a message to one line (the CLI's contract is one line per error), without control
    characters: text a file put in the message (a name, a metadata value) cannot send escape
    sequences to the terminal."""
    return " ".join(_CONTROL.sub(" ", str(message)).split())


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """While active (main thread only), SIGTERM raises :class:`Terminated` instead of killing the
    process on the spot; the previous handler is restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def exit_on_user_error(prog: str = "fastmmd") -> Iterator[None]:
    """Turns a :class:`UserError` into ``prog: error: <message>`` on stderr and exit code 2.

    ``KeyboardInterrupt`` becomes one line and exit code 130 (SIGTERM, as :class:`Terminated`: 143);
    whatever the command had already written stays (every writer in fastmmd writes atomically, so nothing is half-written).
    """
    try:
        yield
    except UserError as err:
        print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None
    except Terminated:
        print(f"{prog}: terminated; files already written are complete", file=sys.stderr)
        raise SystemExit(EXIT_TERMINATED) from None
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; files already written are complete", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None


def not_a_model(path: str | os.PathLike, why: str, kind: str = "fastmmd checkpoint or model") -> UserError:
    """The one message for a file fastmmd will not read as a model: what it is not, and why."""
    return UserError(f"{str(path)!r} is not a {kind} ({why})")


_TYPE_ERROR = re.compile(r"""Parser key "([\w.-]+)":\s*Expected a <class '(float|int)'>\. Got value: (.*)$""")


def plain_parse_error(message: str, dashes: bool = True) -> str:
    """jsonargparse's "Parser key "x_y": Expected a <class 'float'>. Got value: nan" -> "--x-y must be finite, not nan".

    Args:
        dashes: flags spell ``_`` as ``-`` (fastmmd's own commands; LightningCLI keeps underscores).
    """
    match = _TYPE_ERROR.search(message)
    if not match:
        return message
    flag, kind, value = f"--{match[1].replace('_', '-') if dashes else match[1]}", match[2], match[3].strip()
    if kind == "float":
        with contextlib.suppress(ValueError):
            if not math.isfinite(float(value)):
                return f"{flag} must be finite, not {value}"
        return f"{flag} must be a number, not {value!r}"
    return f"{flag} must be a whole number, not {value!r}"
