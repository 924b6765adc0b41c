"""The standards catalog as data: code systems, value domains and (later) the DWD model.

Public surface: :mod:`medfabric.standards.codes` (loaders), :mod:`medfabric.standards.gb11643`
(citizen ID numbers) and :mod:`medfabric.standards.integrity` (cross-file checks).
This package imports nothing else of medfabric.
"""
