"""Checks of the gettext catalogs: they parse, and every translation keeps its placeholders."""

from __future__ import annotations

from pathlib import Path

from babel.messages.pofile import read_po

from bot.rendering import placeholders


def check_catalogs(locales_dir: Path, locales: tuple[str, ...]) -> list[str]:
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
        for message in catalog:
            if not message.id or not message.string or isinstance(message.id, tuple):
                continue
            translation = message.string if isinstance(message.string, str) else ""
            if placeholders(str(message.id)) != placeholders(translation):
                line = message.lineno or 1
                problems.append(
                    f"{path}:{line}: placeholders differ from the source text "
                    f"{sorted(placeholders(str(message.id)))}"
                )
    return problems
