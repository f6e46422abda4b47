"""The repository stands on its own: no committed file names a path outside it.

A recipe, script, README or docs command that reads a sibling folder of this machine's layout, or
an absolute path of one machine, fails on a fresh clone. Folders come from the command line
(``--data.root DIR``, ``--model.style_images '[painting.jpg]'``, a script's argument) or from files
inside the repository. Only tests that build such a path on purpose (to check that it is refused or
resolved) are allowed, one line each.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEXT_SUFFIXES = {".yaml", ".yml", ".sh", ".md", ".py", ".toml", ".json", ".txt", ".cfg", ".ini"}
#: a parent folder; this machine's data folder; absolute paths of a machine's home or work folders
OUTSIDE = re.compile(r"\.\./|\bshared" r"/data\b|(?<![\w.~-])/(?:work|root|home|Users|mnt)/")
#: (file, text on the line) that may leave the repository: tests that build such paths on purpose
#: (split in two literals here, so that this file does not name them itself).
ALLOWED = {
    ("tests/integration/test_cli.py", '"..' '/escape"'),              # --run_name must refuse it
    ("tests/unit/test_data.py", ".." "/imgs/"),              # a file list with paths relative to the list, in tmp_path
    ("tests/integration/test_outputs.py", '"./sub/..' '/a.png"'),      # the same output spelled two ways
    ("tests/integration/test_zoo.py", '"..' '/x.pt"'),              # a manifest pointing outside its folder is refused
    ("tests/integration/test_serve.py", '"..' '/..' '/holiday clip.mp4"'),   # an upload's name is only a name
    ("tests/integration/test_serve.py", '"..' '/cond.ckpt"'),       # the page cannot name a file
    ("tests/integration/test_serve.py", '"..' '/..' '/etc/passwd"'),  # nor a token that is a path
    ("tests/integration/test_serve.py", '"/static/..' '/app.py"'),  # nor a static file outside its folder
}


def tracked_text_files() -> list[str]:
    """Tracked files, and new ones git does not ignore, that are text by their suffix (or in .ci/)."""
    try:
        listing = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                                 capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return sorted(f for f in set(listing.splitlines())
                  if (Path(f).suffix in TEXT_SUFFIXES or f.startswith(".ci/")) and (ROOT / f).is_file())


#: a Markdown link's target: ``[text](target)``
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _without_links_inside(name: str, line: str) -> str:
    """``line`` less the Markdown links of file ``name`` whose targets are files of the repository
    (a docs page linking the README one folder up stays inside it; a sibling folder or a missing file does not)."""
    def drop(match: re.Match) -> str:
        target = match.group(1).split("#", 1)[0]
        resolved = ((ROOT / name).parent / target).resolve() if target else None
        inside = resolved is not None and resolved.is_relative_to(ROOT) and resolved.exists()
        return "]()" if inside else match.group(0)
    return LINK.sub(drop, line)


def paths_leaving_the_repository(files: list[str]) -> list[str]:
    """``file:line: text`` for every line naming a path outside the repository, less :data:`ALLOWED`
    and Markdown links to the repository's own files."""
    found = []
    for name in files:
        for number, line in enumerate((ROOT / name).read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if (OUTSIDE.search(_without_links_inside(name, line))
                    and not any(name == f and text in line for f, text in ALLOWED)):
                found.append(f"{name}:{number}: {line.strip()[:120]}")
    return found


def test_no_committed_file_names_a_path_outside_the_repository():
    files = tracked_text_files()
    assert {"README.md", "configs/cpu.yaml", "scripts/gpu_check.sh", "tests/unit/test_repository.py"} <= set(files)
    found = paths_leaving_the_repository(files)
    assert not found, "paths outside the repository (take them from the command line):\n" + "\n".join(found)


def test_the_check_sees_each_kind_of_outside_path(tmp_path, monkeypatch):
    """The pattern catches what it is for, and leaves URLs and in-repository paths alone."""
    bad = ["root: .." "/photos", "style_images: [.." "/shared" "/data/styles/candy.jpg]", "cd /" "work/main",
           "PHOTOS=/" "root/data", "see /" "home/me/photos"]
    good = ["root: data/samples/photos", "https://example.org/home/page", "http://host/work/x", "docs/benchmarks.md",
            "~/.cache/huggingface", "a/b/c.jpg"]
    assert all(OUTSIDE.search(line) for line in bad), [line for line in bad if not OUTSIDE.search(line)]
    assert not any(OUTSIDE.search(line) for line in good), [line for line in good if OUTSIDE.search(line)]
    assert all(any(f == name and text in (ROOT / name).read_text() for f, text in ALLOWED) for name, _ in ALLOWED)
    up = ".." "/"
    assert not OUTSIDE.search(_without_links_inside("docs/losses.md", f"back to the [README]({up}README.md#install)"))
    for link in (f"[data]({up}{up}photos/x.jpg)", f"[gone]({up}NO_SUCH_FILE.md)"):  # outside, or no such file
        assert OUTSIDE.search(_without_links_inside("docs/losses.md", link)), link
