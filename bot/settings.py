"""Settings from environment variables, validated at start with a one-line error each."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_LOCALES = ("en", "cy")
_TOKEN = re.compile(r"^\d{3,20}:[A-Za-z0-9_-]{20,64}$")
# A Telegram bot username (for t.me links), checked by every command that makes links.
BOT_USERNAME_SHAPE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{4,31}$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class SettingsError(Exception):
    """One variable is wrong; the message names it and says what to do."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


@dataclass(frozen=True)
class Settings:
    bot_token: str | None
    api_base_url: str
    database_path: str
    secrets_path: str
    sentry_dsn: str | None
    default_locale: str
    timezone: str
    environment: str
    log_level: str
    send_rate_per_second: float
    dialogues_dir: Path
    locales_dir: Path
    webhook_url: str | None = None
    webhook_secret: str | None = None
    webhook_listen: tuple[str, int] = ("127.0.0.1", 8080)
    # An unfinished check-in gets one nudge after this many hours, and closes after this
    # many days.
    checkin_nudge_hours: float = 24.0
    checkin_expire_days: float = 7.0
    # A "you said, we did" update goes to people who raised its theme this many weeks back.
    update_lookback_weeks: float = 12.0
    # A digest hides any figure about fewer than this many people (never below 5).
    digest_k: int = 10
    # Free-text answers and check-ins are deleted after this many months; safeguarding
    # requests after this many days (bot/retention.py).
    retention_months: int = 24
    safeguarding_retention_days: int = 90
    # One person's updates handled in any 10 s; beyond that they are dropped unread and the
    # person is asked to slow down (bot/flood.py). Tests that tap at machine speed raise it.
    flood_limit: int = 30

    @property
    def production(self) -> bool:
        return self.environment == "production"

    def require_token(self) -> str:
        if self.bot_token is None:
            raise SettingsError(
                "TELEGRAM_BOT_TOKEN",
                "not set. Ask @BotFather on Telegram for a bot token, then run: "
                "export TELEGRAM_BOT_TOKEN='<token>' (or try it with no token: "
                "python -m bot sandbox)",
            )
        return self.bot_token


# The sandbox's own database unless DATABASE_PATH names one: beside the real bot's, its
# sender would drain real people's queued messages into the local stand-in, and its
# invented person would join real digests and rounds.
SANDBOX_DATABASE_PATH = str(PROJECT_ROOT / "data" / "sandbox.db")
# The real bot's, unless set: in the project's folder, whichever folder a command is run
# from (`roles grant` run elsewhere made a new, empty installation there, and said granted).
DEFAULT_DATABASE_PATH = str(PROJECT_ROOT / "data" / "yousaid.db")
DEFAULT_SECRETS_PATH = str(PROJECT_ROOT / "data" / "secrets")


def for_sandbox(settings: Settings, env: Mapping[str, str]) -> Settings:
    """The settings the sandbox runs with: its own database unless one is named. Refused
    in production (the Docker image names the real database): its sender would drain
    real people's queued messages into the local stand-in."""
    if settings.production:
        raise SettingsError(
            "YOUSAID_ENV",
            "the sandbox is not run in production (it would use the real database): try "
            "it on your own machine with `make run` and no token",
        )
    if env.get("DATABASE_PATH"):
        return settings
    return replace(settings, database_path=SANDBOX_DATABASE_PATH)


# The most messages a second Telegram takes from a bot (bulk, not paid broadcasts).
_TELEGRAM_RATE = 30.0


def load_settings(env: Mapping[str, str]) -> Settings:
    """Read and check every setting; raise SettingsError on the first bad one."""

    def get(name: str, default: str | None = None) -> str | None:
        value = env.get(name, "").strip()
        return value or default

    token = get("TELEGRAM_BOT_TOKEN")
    if token is not None and not _TOKEN.match(token):
        raise SettingsError(
            "TELEGRAM_BOT_TOKEN",
            "does not look like a bot token (digits, a colon, then letters and digits)",
        )
    base_url = get("TELEGRAM_API_BASE_URL", "https://api.telegram.org/bot") or ""
    parsed = urlparse(base_url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise SettingsError(
            "TELEGRAM_API_BASE_URL",
            f"'{base_url}' is not an http(s) URL, e.g. https://api.telegram.org/bot",
        )
    dsn = get("SENTRY_DSN")
    if dsn is not None and (
        urlparse(dsn).scheme not in ("http", "https") or not urlparse(dsn).username
    ):
        raise SettingsError("SENTRY_DSN", "is not a Sentry DSN (https://KEY@HOST/PROJECT)")
    locale = get("DEFAULT_LOCALE", "en") or "en"
    if locale not in SHIPPED_LOCALES:
        raise SettingsError(
            "DEFAULT_LOCALE", f"'{locale}' is not shipped; use one of {', '.join(SHIPPED_LOCALES)}"
        )
    timezone = get("TIMEZONE", "Europe/London") or "Europe/London"
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(
            "TIMEZONE", f"'{timezone}' is not a known time zone, e.g. Europe/London"
        ) from None
    environment = get("YOUSAID_ENV", "development") or "development"
    if environment not in ("development", "production"):
        raise SettingsError("YOUSAID_ENV", "must be development or production")
    log_level = (get("LOG_LEVEL", "INFO") or "INFO").upper()
    if log_level not in _LOG_LEVELS:
        raise SettingsError("LOG_LEVEL", f"must be one of {', '.join(_LOG_LEVELS)}")
    rate_text = get("SEND_RATE_PER_SECOND", "28") or "28"
    try:
        rate = float(rate_text)
    except ValueError:
        rate = 0.0
    # Above Telegram's ~30 a second every call is refused for a while (429), replies and
    # safety messages too, and the organiser's "about N minutes" is wrong. Tests and the
    # sandbox (a local server) may go faster.
    most = _TELEGRAM_RATE if environment == "production" else 1000
    if not 0.1 <= rate <= most:
        raise SettingsError(
            "SEND_RATE_PER_SECOND",
            f"must be a number from 0.1 to {most:g} (Telegram allows about 30 a second)",
        )
    webhook_url, webhook_secret, webhook_listen = _webhook_settings(get)
    # Tiny values are allowed so tests can run a day in seconds.
    nudge_hours = _number(get, "CHECKIN_NUDGE_HOURS", "24", 0.0001, 24 * 30)
    expire_days = _number(get, "CHECKIN_EXPIRE_DAYS", "7", 0.00001, 366)
    if nudge_hours >= expire_days * 24:
        raise SettingsError("CHECKIN_NUDGE_HOURS", "must be shorter than CHECKIN_EXPIRE_DAYS")
    lookback_weeks = _number(get, "UPDATE_LOOKBACK_WEEKS", "12", 1, 104)
    digest_k = _number(get, "DIGEST_K", "10", 5, 1000)
    if digest_k != int(digest_k):
        raise SettingsError("DIGEST_K", "must be a whole number from 5 to 1000")
    # Never under 13 months: the digest and yearly check-in rounds look back that far.
    retention_months = _whole(get, "RETENTION_MONTHS", "24", 13, 120)
    safeguarding_days = _whole(get, "SAFEGUARDING_RETENTION_DAYS", "90", 30, 3650)
    flood_limit = _whole(get, "FLOOD_LIMIT", "30", 5, 1_000_000)
    return Settings(
        flood_limit=flood_limit,
        retention_months=retention_months,
        safeguarding_retention_days=safeguarding_days,
        digest_k=int(digest_k),
        update_lookback_weeks=lookback_weeks,
        checkin_nudge_hours=nudge_hours,
        checkin_expire_days=expire_days,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        webhook_listen=webhook_listen,
        bot_token=token,
        api_base_url=base_url,
        database_path=get("DATABASE_PATH", DEFAULT_DATABASE_PATH) or "",
        secrets_path=get("SECRETS_PATH", DEFAULT_SECRETS_PATH) or "",
        sentry_dsn=dsn,
        default_locale=locale,
        timezone=timezone,
        environment=environment,
        log_level=log_level,
        send_rate_per_second=rate,
        dialogues_dir=Path(get("DIALOGUES_DIR", str(PROJECT_ROOT / "dialogues")) or ""),
        locales_dir=Path(get("LOCALES_DIR", str(PROJECT_ROOT / "locales")) or ""),
    )


def _number(
    get: Callable[[str, str | None], str | None], name: str, default: str, low: float, high: float
) -> float:
    text = get(name, default) or default
    try:
        value = float(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise SettingsError(name, f"must be a number from {low:g} to {high:g}")
    return value


def _whole(
    get: Callable[[str, str | None], str | None], name: str, default: str, low: int, high: int
) -> int:
    text = get(name, default) or default
    if not text.isdigit() or not low <= int(text) <= high:
        raise SettingsError(name, f"must be a whole number from {low} to {high}")
    return int(text)


# Telegram allows 1-256 characters, but the secret is all that stands between the open
# internet and updates that claim to come from any person, staff included: at least 32.
_SECRET = re.compile(r"^[A-Za-z0-9_-]{32,256}$")
_SECRET_RULE = (
    "32-256 characters of A-Z, a-z, 0-9, _ and -; make one with: "
    "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
)
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _webhook_settings(
    get: Callable[[str, str | None], str | None],
) -> tuple[str | None, str | None, tuple[str, int]]:
    """WEBHOOK_URL switches to webhook mode; then WEBHOOK_SECRET is required."""
    url = get("WEBHOOK_URL", None)
    secret = get("WEBHOOK_SECRET", None)
    listen_text = get("WEBHOOK_LISTEN", "127.0.0.1:8080") or ""
    host, _, port_text = listen_text.rpartition(":")
    if not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise SettingsError(
            "WEBHOOK_LISTEN", f"'{listen_text}' is not HOST:PORT, e.g. 0.0.0.0:8080"
        )
    if url is None:
        return None, None, (host, int(port_text))
    parsed = urlparse(url)
    local = parsed.scheme == "http" and parsed.hostname in _LOOPBACK
    if not (parsed.scheme == "https" or local) or not parsed.netloc:
        raise SettingsError("WEBHOOK_URL", "must be an https:// URL (Telegram only calls https)")
    if secret is None:
        raise SettingsError(
            "WEBHOOK_SECRET",
            f"is required with WEBHOOK_URL: {_SECRET_RULE}",
        )
    if not _SECRET.match(secret):
        raise SettingsError("WEBHOOK_SECRET", f"must be {_SECRET_RULE}")
    return url, secret, (host, int(port_text))
