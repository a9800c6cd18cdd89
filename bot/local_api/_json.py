"""Shared JSON type aliases for the local Bot API server."""

from __future__ import annotations

from typing import Any, TypeAlias

JsonDict: TypeAlias = dict[str, Any]
Params: TypeAlias = dict[str, Any]
ChatId: TypeAlias = int | str
