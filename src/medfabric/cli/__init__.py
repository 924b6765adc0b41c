"""The ``medfabric`` command: one module per command group, each a thin wrapper over a library."""
