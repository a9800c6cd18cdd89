"""JSON to and from text on the hot path (every update stored, every message queued and
sent): orjson, a tenth of the standard library's cost to write and a third to read
(bench/FINDINGS.md, fifteenth round).

What orjson refuses to write, the standard library writes as it always did: a lone UTF-16
surrogate (which a Telegram message may carry), integer dict keys, integers beyond 64 bits;
what it cannot read (a lone surrogate escape), the standard library reads. Dates and
dataclasses are refused, as the standard library refuses them (orjson would quietly write
them). Two differences remain, neither met in what the bot writes: orjson reads an integer
beyond 64 bits as a float, and writes NaN as null. Output is compact, with non-ASCII
characters as UTF-8 rather than \\u escapes; no reader compares the text itself."""

from __future__ import annotations

import json
from typing import Any

import orjson

_STRICT = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def dumps_bytes(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=_STRICT)
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode("utf-8", "surrogatepass")


def dumps(value: Any) -> str:
    try:
        return orjson.dumps(value, option=_STRICT).decode("utf-8")
    except TypeError:
        return json.dumps(value, separators=(",", ":"))


def loads(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
