"""End-to-end tests: real processes (the console script, DDP, signals, memory limits, torch alone), the
page in a browser, and the scripts as their docstrings run them."""
