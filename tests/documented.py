"""The ``fastmmd`` commands README.md and docs/*.md show (not docs/benchmarks.md, whose commands are
records of measurements), as the shell would pass them: the parse check
(tests/integration/test_docs_commands.py) and the run of every one of them (tests/e2e/test_docs_run.py)."""

from __future__ import annotations

import dataclasses
import glob
import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "benchmarks.md")]
_GLOB = re.compile(r"[*?\[]")


@dataclasses.dataclass(frozen=True)
class Shown:
    """One command as a page shows it.

    Attributes:
        page: the page, relative to the repository (``docs/inference.md``).
        line: the command, continuations joined and its comment dropped (``fastmmd stylize ...``).
        argv: the words after ``fastmmd``, quotes removed, globs as written.
        globs: the positions in ``argv`` of unquoted words holding ``*``, ``?`` or ``[``, which the
            shell expands before fastmmd sees them.
    """

    page: str
    line: str
    argv: tuple[str, ...]
    globs: frozenset[int]

    @property
    def where(self) -> str:
        return f"{self.page}: {self.line[:80]}"

    def expanded(self, cwd: Path) -> list[str]:
        """``argv`` as bash (no ``globstar``: ``**`` is ``*``) hands it over in ``cwd``: each glob
        replaced by its sorted matches, or kept as written where nothing matches."""
        words = []
        for i, word in enumerate(self.argv):
            matches = sorted(glob.glob(word, root_dir=cwd)) if i in self.globs else []
            words += matches or [word]
        return words


def shell_blocks(text: str) -> list[str]:
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


def documented_commands() -> list[Shown]:
    """Every ``fastmmd ...`` line of the pages' shell blocks, in page order."""
    found = []
    for page in PAGES:
        for block in shell_blocks(page.read_text(encoding="utf-8")):
            for line in re.sub(r"\\\n\s*", " ", block).splitlines():
                line = line.strip()
                if not line.startswith("fastmmd "):
                    continue
                raw = shlex.split(line, comments=True, posix=False)[1:]
                argv = tuple(shlex.split(line, comments=True)[1:])
                assert len(raw) == len(argv), line  # one word each: no quotes inside a word
                globs = frozenset(i for i, word in enumerate(raw) if word[0] not in "'\"" and _GLOB.search(word))
                found.append(Shown(str(page.relative_to(ROOT)), " ".join(["fastmmd", *raw]), argv, globs))
    return found
