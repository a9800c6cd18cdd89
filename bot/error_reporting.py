"""Errors to Sentry (when SENTRY_DSN is set) and to the log, with personal data scrubbed.

Sentry events never carry local variables, request bodies, user data or breadcrumbs'
payloads; long digit runs (Telegram ids) and anything shaped like a bot token are masked in
every string that is left, except machine-made fields (event id, timestamp, release).
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)

_TOKEN = re.compile(r"\d{3,20}:[A-Za-z0-9_-]{20,}")
_LONG_NUMBER = re.compile(r"\d{5,}")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Loggers that echo request URLs (which carry the bot token) or payloads at INFO/DEBUG.
_NOISY_LOGGERS = (
    "httpx",
    "httpcore",
    "aiosqlite",
    "telegram",
    "hpack",
    "aiohttp.access",
    "transitions",
)


def scrub_text(text: str) -> str:
    return _LONG_NUMBER.sub("<number>", _TOKEN.sub("<token>", text))


# Machine-made fields, left as they are: they say nothing about a person, and masking digit
# runs in them breaks them (Sentry refuses "2026-11-26T14:43:19.<number>Z"; a release hash
# with "<number>" in it matches no release).
_MACHINE_KEYS = frozenset(
    {"event_id", "timestamp", "start_timestamp", "release", "dist", "sdk", "modules"}
    | {"trace_id", "span_id", "parent_span_id"}
)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {k: v if k in _MACHINE_KEYS else _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def scrub_event(event: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sentry before_send: drop what may identify a person, mask what may remain."""
    for key in ("request", "user", "extra", "contexts", "breadcrumbs"):
        event.pop(key, None)
    for exception in event.get("exception", {}).get("values", []):
        for frame in exception.get("stacktrace", {}).get("frames", []):
            frame.pop("vars", None)
    return dict(_scrub(event))


class ScrubbingFormatter(logging.Formatter):
    """The same masking as Sentry's, applied to every log line and traceback."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub_text(super().format(record))


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(ScrubbingFormatter(LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    apply_log_levels(level)
    # An error nobody caught is printed by Python itself, past the formatter above: masked
    # the same way (a library's message may hold the token, e.g. "The token `...` was
    # rejected").
    sys.excepthook = _scrubbed_excepthook


def _scrubbed_excepthook(
    kind: type[BaseException], error: BaseException, trace: TracebackType | None
) -> None:
    sys.stderr.write(scrub_text("".join(traceback.format_exception(kind, error, trace))))


def apply_log_levels(level: str) -> None:
    """The root logger at `level`; libraries that log URLs or payloads never below WARNING,
    even at DEBUG (the tests' log-privacy check applies the same levels)."""
    logging.getLogger().setLevel(level)
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def setup_sentry(dsn: str | None, environment: str) -> bool:
    if not dsn:
        return False
    # Imported only when configured: sentry_sdk is a fifth of a second of every start-up
    # (bench/FINDINGS.md, start-up).
    import sentry_sdk
    from sentry_sdk.integrations.logging import LoggingIntegration

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        send_default_pii=False,
        include_local_variables=False,
        max_request_body_size="never",
        before_send=scrub_event,  # type: ignore[arg-type]
        # No sentry-trace/baggage headers on our calls to Telegram: nothing of ours goes there.
        trace_propagation_targets=[],
        before_breadcrumb=lambda crumb, hint: {**crumb, "message": None, "data": None},
        # Log records become breadcrumbs only: errors are sent once, by report().
        integrations=[LoggingIntegration(level=logging.INFO, event_level=None)],
    )
    return True


def report(error: BaseException) -> None:
    """Send an error to Sentry (a no-op when Sentry is not configured)."""
    sentry_sdk = sys.modules.get("sentry_sdk")  # imported by setup_sentry, if at all
    if sentry_sdk is not None:
        sentry_sdk.capture_exception(error)


def alert(what: str) -> None:
    """Log `what` as an error and send it to Sentry: something staff must act on that is no
    exception (no one to tell of a safety request, a message Telegram refused). Log records
    alone reach Sentry only as breadcrumbs. `what` is a fixed description: never a text,
    a name or an id (it is scrubbed all the same)."""
    log.error("%s", what)
    sentry_sdk = sys.modules.get("sentry_sdk")
    if sentry_sdk is not None:
        sentry_sdk.capture_message(what, level="error")
