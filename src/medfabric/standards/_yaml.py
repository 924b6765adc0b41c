"""Reading YAML node trees with errors that name the file, line and column.

Shared by the catalog loaders (`elements.py`, `model.py`) and the quality rules: each passes
its own file name.
"""

from __future__ import annotations

import yaml


class CatalogError(Exception):
    """A catalog file is missing or malformed; the message names file, line and column."""


def compose(text: str, file: str) -> yaml.Node:
    """The node tree of a YAML document; a syntax error or an empty document is a
    :class:`CatalogError` naming ``file``, line and column."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        at = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else file
        raise CatalogError(f"{at}: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise CatalogError(f"{file}: {exc}") from exc
    if root is None:
        raise CatalogError(f"{file}:1:1: empty file")
    return root


def where(file: str, node: yaml.Node) -> str:
    """``file:line:column`` of a node (1-based)."""
    return f"{file}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"


def mapping(file: str, node: yaml.Node, allowed: set[str] | None) -> dict[str, yaml.Node]:
    """Keys to value nodes; ``allowed=None`` accepts any key (checked later by the caller)."""
    if not isinstance(node, yaml.MappingNode):
        raise CatalogError(f"{where(file, node)}: expected a mapping")
    out: dict[str, yaml.Node] = {}
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode):
            raise CatalogError(f"{where(file, key)}: keys must be plain strings")
        if allowed is not None and key.value not in allowed:
            raise CatalogError(f"{where(file, key)}: unknown key {key.value!r}")
        if key.value in out:
            raise CatalogError(f"{where(file, key)}: duplicate key {key.value!r}")
        out[key.value] = value
    return out


def text(file: str, fields: dict[str, yaml.Node], key: str, owner: yaml.Node) -> str:
    """A required, non-empty scalar, stripped."""
    node = fields.get(key)
    if node is None:
        raise CatalogError(f"{where(file, owner)}: missing key {key!r}")
    if not isinstance(node, yaml.ScalarNode) or not str(node.value).strip():
        raise CatalogError(f"{where(file, node)}: {key!r} must be a non-empty string")
    return str(node.value).strip()
