"""Turn parse_mode markup into displayed text plus entities, failing like Telegram does.

Telegram returns (and shows) the text with markup removed and reports malformed markup
as ``400 Bad Request: can't parse entities: ...``. Bots that echo user text without
escaping fail exactly there, so the sandbox must fail the same way. The parsers cover
the documented syntax; exotic corners (expandable quotes, nested pre/code rules) are
approximated.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

from ._json import JsonDict
from .errors import ApiError, bad_request


def utf16_len(text: str) -> int:
    """Entity offsets and lengths are measured in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def parse_formatted(text: str, parse_mode: str | None) -> tuple[str, list[JsonDict]]:
    """Return (displayed text, entities) for text sent with the given parse_mode."""
    mode = (parse_mode or "").lower()
    if not mode:
        return text, []
    if mode == "html":
        return _HtmlParser(text).run()
    if mode in ("markdownv2", "markdown"):
        return _MarkdownParser(text, strict=mode == "markdownv2").run()
    raise bad_request("unsupported parse_mode")


def _entity_error(reason: str) -> ApiError:
    return bad_request(f"can't parse entities: {reason}")


def _byte_offset(src: str, index: int) -> int:
    # Telegram reports positions as UTF-8 byte offsets into the original text.
    return len(src[:index].encode("utf-8"))


@dataclass(slots=True)
class _Open:
    name: str
    entity_type: str | None
    start: int
    byte: int
    extra: JsonDict = field(default_factory=dict)


class _Output:
    """Accumulates displayed text and the entities closed over it."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.offset = 0
        self.entities: list[JsonDict] = []

    def add(self, chunk: str) -> None:
        self.parts.append(chunk)
        self.offset += utf16_len(chunk)

    def close(self, opened: _Open) -> None:
        length = self.offset - opened.start
        # Telegram silently drops empty entities.
        if opened.entity_type is not None and length > 0:
            entity: JsonDict = {
                "type": opened.entity_type,
                "offset": opened.start,
                "length": length,
            }
            self.entities.append({**entity, **opened.extra})

    def result(self) -> tuple[str, list[JsonDict]]:
        ordered = sorted(self.entities, key=lambda e: (e["offset"], -e["length"]))
        return "".join(self.parts), ordered


_HTML_TYPES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_TAG_RE = re.compile(r"<(/?)([^\s>/]*)([^>]*)>")
_ATTR_RE = re.compile(r"""([a-zA-Z_-]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""")
_CHAR_REF_RE = re.compile(r"&(#[0-9]{1,7}|#x[0-9a-fA-F]{1,6}|lt|gt|amp|quot);")


class _HtmlParser:
    def __init__(self, src: str) -> None:
        self.src = src
        self.out = _Output()
        self.stack: list[_Open] = []

    def run(self) -> tuple[str, list[JsonDict]]:
        i = 0
        while i < len(self.src):
            if self.src[i] == "<":
                i = self._tag(i)
            elif self.src[i] == "&":
                i = self._char_ref(i)
            else:
                end = min(_find(self.src, "<", i), _find(self.src, "&", i))
                self.out.add(self.src[i:end])
                i = end
        if self.stack:
            raise _entity_error(
                f'Can\'t find end tag corresponding to start tag "{self.stack[-1].name}"'
            )
        return self.out.result()

    def _char_ref(self, i: int) -> int:
        match = _CHAR_REF_RE.match(self.src, i)
        if match is None:
            # Telegram keeps a bare '&' as text.
            self.out.add("&")
            return i + 1
        self.out.add(html.unescape(match.group(0)))
        return match.end()

    def _tag(self, i: int) -> int:
        match = _TAG_RE.match(self.src, i)
        byte = _byte_offset(self.src, i)
        if match is None:
            raise _entity_error(f"Unclosed start tag at byte offset {byte}")
        name = match.group(2).lower()
        if match.group(1):
            self._close_tag(name, byte)
        else:
            self._open_tag(name, match.group(3), byte)
        return match.end()

    def _open_tag(self, name: str, attr_text: str, byte: int) -> None:
        attrs = {
            m.group(1).lower(): m.group(2) or m.group(3) or m.group(4) or ""
            for m in _ATTR_RE.finditer(attr_text)
        }
        entity_type = _HTML_TYPES.get(name)
        if entity_type is None or (name == "span" and attrs.get("class") != "tg-spoiler"):
            raise _entity_error(f'Unsupported start tag "{name}" at byte offset {byte}')
        opened = _Open(name, entity_type, self.out.offset, byte)
        if name == "a":
            opened.entity_type = "text_link" if attrs.get("href") else None
            opened.extra = {"url": attrs.get("href", "")}
        elif name == "tg-emoji":
            opened.extra = {"custom_emoji_id": attrs.get("emoji-id", "")}
        elif name == "code" and self.stack and self.stack[-1].name == "pre":
            # <pre><code class="language-x"> is one pre entity with a language.
            opened.entity_type = None
            language = attrs.get("class", "").removeprefix("language-")
            if language:
                self.stack[-1].extra["language"] = language
        self.stack.append(opened)

    def _close_tag(self, name: str, byte: int) -> None:
        if not self.stack:
            raise _entity_error(f"Unexpected end tag at byte offset {byte}")
        top = self.stack.pop()
        if top.name != name:
            raise _entity_error(
                f'Unmatched end tag at byte offset {byte}, expected "</{top.name}>", '
                f'found "</{name}>"'
            )
        self.out.close(top)


def _find(src: str, needle: str, start: int) -> int:
    index = src.find(needle, start)
    return len(src) if index < 0 else index


_V2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MARKERS = (
    ("||", "spoiler"),
    ("__", "underline"),
    ("*", "bold"),
    ("_", "italic"),
    ("~", "strikethrough"),
)
_LEGACY_MARKERS = (("*", "bold"), ("_", "italic"))
_ENTITY_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "text_link": "TextUrl",
    "code": "Code",
    "pre": "Pre",
    "blockquote": "Blockquote",
}


class _MarkdownParser:
    """MarkdownV2 when strict, legacy Markdown otherwise."""

    def __init__(self, src: str, *, strict: bool) -> None:
        self.src = src
        self.strict = strict
        self.out = _Output()
        self.stack: list[_Open] = []

    def run(self) -> tuple[str, list[JsonDict]]:
        i = 0
        while i < len(self.src):
            i = self._step(i)
        self._close_quote()
        if self.stack:
            raise self._unclosed(self.stack[-1])
        return self.out.result()

    def _step(self, i: int) -> int:
        ch = self.src[i]
        escapable = self._escapable(i + 1)
        if ch == "\\" and escapable:
            self.out.add(self.src[i + 1])
            return i + 2
        if ch == "`":
            return self._code(i)
        if ch == "[":
            self.stack.append(_Open("[", "text_link", self.out.offset, _byte_offset(self.src, i)))
            return i + 1
        if ch == "]" and any(o.name == "[" for o in self.stack):
            return self._link_end(i)
        if self.strict and ch in ">\n":
            return self._quote(i)
        marker = self._marker(i)
        if marker is not None:
            self._toggle(marker[0], marker[1], i)
            return i + len(marker[0])
        if self.strict and ch in _V2_RESERVED:
            raise _entity_error(
                f"Character '{ch}' is reserved and must be escaped with the preceding '\\'"
            )
        self.out.add(ch)
        return i + 1

    def _escapable(self, j: int) -> bool:
        if j >= len(self.src):
            return False
        if self.strict:
            return 0 < ord(self.src[j]) < 127
        return self.src[j] in "_*`["

    def _marker(self, i: int) -> tuple[str, str] | None:
        for token, entity_type in _MARKERS if self.strict else _LEGACY_MARKERS:
            if self.src.startswith(token, i):
                return token, entity_type
        return None

    def _toggle(self, token: str, entity_type: str, i: int) -> None:
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index].name == token:
                self.out.close(self.stack.pop(index))
                return
        if not self.strict and self.stack:
            # Legacy Markdown has no nesting: other markers inside an entity are text.
            self.out.add(token)
            return
        self.stack.append(_Open(token, entity_type, self.out.offset, _byte_offset(self.src, i)))

    def _code(self, i: int) -> int:
        fence = "```" if self.src.startswith("```", i) else "`"
        end = self._find_unescaped(fence, i + len(fence))
        if end < 0:
            entity_type = "pre" if fence == "```" else "code"
            raise self._unclosed(_Open(fence, entity_type, 0, _byte_offset(self.src, i)))
        body = self.src[i + len(fence) : end]
        extra: JsonDict = {}
        if fence == "```":
            first, newline, rest = body.partition("\n")
            if newline and first and not any(c.isspace() for c in first):
                extra["language"], body = first, rest
        body = re.sub(r"\\([`\\])", r"\1", body) if self.strict else body
        opened = _Open(fence, "pre" if fence == "```" else "code", self.out.offset, 0, extra)
        self.out.add(body)
        self.out.close(opened)
        return end + len(fence)

    def _link_end(self, i: int) -> int:
        index = max(k for k, o in enumerate(self.stack) if o.name == "[")
        opened = self.stack.pop(index)
        if not self.src.startswith("(", i + 1):
            if self.strict:
                raise _entity_error(
                    f"Can't find end of TextUrl entity at byte offset {opened.byte}"
                )
            return i + 1
        close = self._find_unescaped(")", i + 2)
        if close < 0:
            raise self._unclosed(opened)
        opened.extra = {"url": re.sub(r"\\([)\\])", r"\1", self.src[i + 2 : close])}
        self.out.close(opened)
        return close + 1

    def _quote(self, i: int) -> int:
        # '>' at a line start opens/continues a blockquote; a line without it ends one.
        if self.src[i] == "\n":
            if not self.src.startswith(">", i + 1):
                self._close_quote()
            self.out.add("\n")
            return i + 1
        if i > 0 and self.src[i - 1] != "\n":
            raise _entity_error(
                "Character '>' is reserved and must be escaped with the preceding '\\'"
            )
        if not any(o.name == ">" for o in self.stack):
            self.stack.append(_Open(">", "blockquote", self.out.offset, _byte_offset(self.src, i)))
        return i + 1

    def _close_quote(self) -> None:
        for index, opened in enumerate(self.stack):
            if opened.name == ">":
                self.out.close(self.stack.pop(index))
                return

    def _find_unescaped(self, token: str, start: int) -> int:
        j = start
        while j < len(self.src):
            if self.strict and self.src[j] == "\\":
                j += 2
                continue
            if self.src.startswith(token, j):
                return j
            j += 1
        return -1

    def _unclosed(self, opened: _Open) -> ApiError:
        if not self.strict:
            return _entity_error(
                f"Can't find end of the entity starting at byte offset {opened.byte}"
            )
        name = _ENTITY_NAMES.get(opened.entity_type or "", "the")
        return _entity_error(f"Can't find end of {name} entity at byte offset {opened.byte}")
