"""`python -m app` does what the `sdgraph` command does."""

from app.cli import entry

entry()
