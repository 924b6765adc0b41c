"""medfabric: a regional health-data platform (see docs/ and DESIGN.md for the map)."""

__version__ = "0.1.0"
