"""Telegram-style API errors raised by method handlers and fault injection."""

from __future__ import annotations

from typing import Any

from ._json import JsonDict

# Descriptions the real Bot API uses when it has nothing more specific to say.
_DEFAULT_DESCRIPTIONS: dict[int, str] = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict",
    413: "Request Entity Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
}


def default_description(status: int, retry_after: int | None = None) -> str:
    """Return the description Telegram sends for a bare status code."""
    if status == 429:
        return f"Too Many Requests: retry after {retry_after or 1}"
    return _DEFAULT_DESCRIPTIONS.get(status, f"Error {status}")


class ApiError(Exception):
    """An error answer: becomes ``{"ok": false, "error_code": ..., ...}`` with that HTTP status."""

    def __init__(
        self,
        status: int,
        description: str | None = None,
        *,
        retry_after: int | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> None:
        if status == 429:
            # PTB only raises RetryAfter for a truthy retry_after, so never send 0.
            retry_after = max(1, retry_after or 1)
        self.status = status
        self.retry_after = retry_after
        self.description = description or default_description(status, retry_after)
        self.parameters: dict[str, Any] = dict(parameters or {})
        if retry_after is not None:
            self.parameters["retry_after"] = retry_after
        super().__init__(f"{status}: {self.description}")

    def payload(self) -> JsonDict:
        """The JSON body Telegram would answer with."""
        body: JsonDict = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def bad_request(reason: str) -> ApiError:
    """A 400 with Telegram's ``Bad Request: <reason>`` wording."""
    return ApiError(400, f"Bad Request: {reason}")


def forbidden(reason: str = "bot was blocked by the user") -> ApiError:
    """A 403 with Telegram's ``Forbidden: <reason>`` wording."""
    return ApiError(403, f"Forbidden: {reason}")
