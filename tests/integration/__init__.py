"""Integration tests: tiny fits, exports, every subcommand in process (``fastmmd.__main__.main``), the web API."""
