"""Unit tests: pure functions and single modules, no fits, no subprocesses, each well under a second."""
