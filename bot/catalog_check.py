"""Checks of the gettext catalogs: every shipped language translates every participant text,
and every translation keeps its placeholders."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

from bot.babel_extract import extract_dialogue_yaml
from bot.rendering import placeholders

SOURCE_LOCALE = "en"  # the msgids are English: English needs no translation
LANGUAGE_NAMES = {"en": "English", "cy": "Welsh"}


def dialogue_texts(dialogues_dir: Path) -> list[tuple[str, int, str]]:
    """(file name, line, text) for every participant text in the dialogue files."""
    found: list[tuple[str, int, str]] = []
    for path in sorted(dialogues_dir.glob("*.yaml")):
        with path.open("rb") as handle:
            for line, _, text, _ in extract_dialogue_yaml(handle, None, None, None):
                found.append((path.name, line, text))
    return found


def check_catalogs(
    locales_dir: Path, locales: Iterable[str], texts: list[tuple[str, int, str]]
) -> list[str]:
    """Problems found, as `file:line: problem` lines (empty when all is well)."""
    problems: list[str] = []
    for locale in locales:
        path = locales_dir / locale / "LC_MESSAGES" / "messages.po"
        if not path.exists():
            problems.append(f"{path}:1: catalog missing for shipped language '{locale}'")
            continue
        try:
            with path.open("rb") as handle:
                catalog = read_po(handle, locale=locale)
        except Exception as exc:  # babel raises several types for a malformed file
            problems.append(f"{path}:1: cannot be read: {exc}")
            continue
        problems.extend(_placeholder_problems(path, catalog))
        if locale != SOURCE_LOCALE:
            problems.extend(_missing_translations(path, catalog, locale, texts))
    return problems


def _placeholder_problems(path: Path, catalog: Catalog) -> list[str]:
    problems = []
    for message in catalog:
        if not message.id or not message.string or not isinstance(message.string, str):
            continue
        source, translation = placeholders(str(message.id)), placeholders(message.string)
        if source != translation:
            problems.append(
                f"{path}:{message.lineno or 1}: placeholders {sorted(translation)} differ "
                f"from the source {sorted(source)} in {_short(str(message.id))}"
            )
    return problems


def _missing_translations(
    path: Path, catalog: Catalog, locale: str, texts: list[tuple[str, int, str]]
) -> list[str]:
    language = LANGUAGE_NAMES.get(locale, locale)
    problems = []
    for source_file, line, text in texts:
        message = catalog.get(text)
        if message is None or not message.string or message.fuzzy:
            problems.append(
                f"{path}:{message.lineno if message else 1}: no {language} translation for "
                f"{_short(text)} ({source_file}:{line}); run `make translations`"
            )
    return problems


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= 60 else flat[:57] + "...")
