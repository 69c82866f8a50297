"""`python -m companion`: the domain's commands (workers, accounts, keys); `companion serve` is the
console script of api/cli.py."""

from companion.cli import app

app()
