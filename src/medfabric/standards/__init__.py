"""The standards catalog as data: code systems, value domains and the DWD model.

Public surface: :mod:`medfabric.standards.codes` (loaders), :mod:`medfabric.standards.gb11643`
(citizen ID numbers), :mod:`medfabric.standards.integrity` (cross-file checks) and
:mod:`medfabric.standards.model` (the DWD model).
This package imports nothing else of medfabric.
"""
