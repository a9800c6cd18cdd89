"""JSON to and from text on the hot path (every update stored, every message queued and
sent): orjson, a tenth of the standard library's cost to write and a third to read
(bench/FINDINGS.md, fifteenth round). What orjson refuses, the standard library does as it
always did: a lone UTF-16 surrogate (which a Telegram message may carry: the standard
library reads "\\ud83d" alone), integer dict keys, integers beyond 64 bits. Output is
compact, with non-ASCII characters as UTF-8 rather than \\u escapes; readers never compare
the text itself."""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps_bytes(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode("utf-8", "surrogatepass")


def dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode("utf-8")
    except TypeError:
        return json.dumps(value, separators=(",", ":"))


def loads(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
