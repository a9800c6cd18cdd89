"""A Babel extractor for dialogue YAML, so `pybabel extract` sees every participant text.

Registered in babel.cfg. It yields the texts a person reads: `say`, `explain`, button
`label`s, command `say`s and shared `messages`, each with its line number.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

import yaml

from state_machines.definition import EXPLAIN_BUTTON_LABEL

_TEXT_KEYS = {"say", "explain", "label", "staff_say"}


def extract_dialogue_yaml(
    fileobj: IO[bytes], keywords: Any, comment_tags: Any, options: Any
) -> Iterator[tuple[int, str | None, str, list[str]]]:
    root = yaml.compose(fileobj.read().decode("utf-8"), Loader=yaml.SafeLoader)
    if root is None:
        return
    yield 1, None, EXPLAIN_BUTTON_LABEL, ["the automatic button on questions with help text"]
    yield from _walk(root, parent_key=None)


def _walk(
    node: yaml.Node, parent_key: str | None
) -> Iterator[tuple[int, str | None, str, list[str]]]:
    if isinstance(node, yaml.MappingNode):
        for key_node, value in node.value:
            key = key_node.value
            if key == "settings":
                continue
            if isinstance(value, yaml.ScalarNode) and (
                key in _TEXT_KEYS or parent_key == "messages"
            ):
                yield value.start_mark.line + 1, None, str(value.value).strip(), [str(key)]
            else:
                yield from _walk(value, key)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _walk(item, parent_key)
