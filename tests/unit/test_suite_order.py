"""The order tests/conftest.py gives the collection (:func:`conftest.heavy_first`): under pytest-xdist's
worksteal each worker's share starts with its part of the ``heavy`` tests, shared out by weight."""

from __future__ import annotations

import pytest
from conftest import heavy_first


class Item:
    """A collected test as heavy_first sees it: a name and its ``heavy`` marker, if any."""

    def __init__(self, name: str, seconds: float | None = None) -> None:
        self.name, self.marks = name, [pytest.mark.heavy(seconds).mark] if seconds is not None else []

    def iter_markers(self, name: str):
        return iter(m for m in self.marks if m.name == name)

    def get_closest_marker(self, name: str):
        return next(self.iter_markers(name), None)

    def __repr__(self) -> str:
        return self.name


def test_each_workers_share_starts_with_its_heavy_tests_and_keeps_its_size():
    items = [Item(f"t{i}") for i in range(7)]
    items[2:2], items[6:6] = [Item("h3", 3)], [Item("h5", 5), Item("h2", 2), Item("h1", 1)]
    ordered = [i.name for i in heavy_first(items, 2)]
    assert sorted(ordered) == sorted(i.name for i in items)  # every test once
    # worksteal's shares: the first 5 of 11, then the other 6; h5 alone weighs as much as h3 + h2
    assert ordered[:5] == ["h5", "h1", "t0", "t1", "t2"] and ordered[5:] == ["h3", "h2", "t3", "t4", "t5", "t6"]
    assert [i.name for i in heavy_first(items, 1)][:4] == ["h5", "h3", "h2", "h1"]
    assert [i.name for i in heavy_first(items[:2], 2)] == ["t0", "t1"]  # nothing heavy: the order as collected
