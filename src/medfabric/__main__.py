"""``python -m medfabric …`` is the ``medfabric`` command."""

from medfabric.cli.main import app

app()
