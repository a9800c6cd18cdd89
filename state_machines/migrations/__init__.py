"""Dialogue format migrations: one pure function per format version, applied at load.

People can be mid-dialogue when the format changes, so old files are upgraded rather than
rejected. Each migration takes the composed YAML node tree of version N and returns the tree
of version N+1; its docstring says why the format changed. Version 1 is the first format, so
there is nothing to migrate yet; the machinery is here so the next change is a function, not
a rewrite.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import yaml

CURRENT_SCHEMA_VERSION = 1


class Reporter(Protocol):
    def __call__(self, node: yaml.Node | None, where: str, message: str) -> None: ...


Migration = Callable[[yaml.MappingNode], yaml.MappingNode]

# from_version -> function producing from_version + 1
MIGRATIONS: dict[int, Migration] = {}


def document_version(root: yaml.Node) -> int | None:
    """The schema_version written in a document, or None when absent or not a number."""
    if not isinstance(root, yaml.MappingNode):
        return None
    for key, value in root.value:
        if (
            isinstance(key, yaml.ScalarNode)
            and key.value == "schema_version"
            and isinstance(value, yaml.ScalarNode)
            and value.value.isdigit()
        ):
            return int(value.value)
    return None


def set_document_version(root: yaml.MappingNode, version: int) -> None:
    """Rewrite the schema_version scalar in place (used by each migration's last step)."""
    for index, (key, value) in enumerate(root.value):
        if isinstance(key, yaml.ScalarNode) and key.value == "schema_version":
            new_value = yaml.ScalarNode(
                "tag:yaml.org,2002:int", str(version), value.start_mark, value.end_mark
            )
            root.value[index] = (key, new_value)


def migrate_document(root: yaml.Node, report: Reporter) -> yaml.Node:
    """Upgrade a document to CURRENT_SCHEMA_VERSION; report versions this code cannot read."""
    version = document_version(root)
    if version is None or not isinstance(root, yaml.MappingNode):
        return root  # the loader reports the missing or malformed version
    if version > CURRENT_SCHEMA_VERSION:
        report(
            root,
            "(file)",
            f"schema_version {version} is newer than this code "
            f"understands ({CURRENT_SCHEMA_VERSION}); upgrade YouSaid",
        )
        return root
    while version < CURRENT_SCHEMA_VERSION:
        migration = MIGRATIONS.get(version)
        if migration is None:
            report(root, "(file)", f"no migration from schema_version {version}")
            return root
        root = migration(root)
        version += 1
        set_document_version(root, version)
    return root
