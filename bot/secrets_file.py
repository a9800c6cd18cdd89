"""The secrets file: keys kept outside the database, so a copied database reveals nothing.

It holds the keyed-hash key that turns Telegram ids into pseudonyms and the key for
encrypting free text at rest. Generated on first run in development (with a warning);
refused in production, where losing or replacing it silently would orphan every person.

During a key rotation (bot/key_rotation.py) it also holds the earlier text keys, so text
encrypted under them stays readable until every row is re-encrypted; the pseudonym key
never rotates (pseudonyms are identities).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bot.settings import SettingsError

log = logging.getLogger(__name__)
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Secrets:
    pseudonym_key: bytes
    text_key: bytes  # new text is encrypted under this one
    # Earlier text keys, still accepted for reading while a rotation is under way.
    old_text_keys: tuple[bytes, ...] = ()

    def keyed_hash(self, purpose: str, value: str) -> str:
        """HMAC-SHA256 (hex) of `value`, separated by purpose so that a pseudonym, an
        enrolment code and an invite code can never collide or be compared."""
        message = f"{purpose}:{value}".encode()
        return hmac.new(self.pseudonym_key, message, hashlib.sha256).hexdigest()

    def pseudonym(self, telegram_user_id: int) -> str:
        """The stable pseudonym of a Telegram user (128 bits of a keyed hash shown)."""
        return self.keyed_hash("telegram-user", str(telegram_user_id))[:32]

    def encrypt_text(self, text: str) -> bytes:
        """Encrypt free text for storage (authenticated: tampering is detected)."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = _aead(self.text_key).encrypt(nonce, text.encode("utf-8"), None)
        return _AEAD_PREFIX + base64.urlsafe_b64encode(nonce + sealed)

    def decrypt_text(self, token: bytes) -> str:
        """Decrypt under the current text key or, mid-rotation, an earlier one. Raises
        InvalidToken when no key held here opens it."""
        for key in (self.text_key, *self.old_text_keys):
            try:
                return _open(key, token).decode("utf-8")
            except InvalidToken:
                continue
        raise InvalidToken

    def under_current_key(self, token: bytes) -> bool:
        """True when `token` is readable with the current text key alone."""
        try:
            _open(self.text_key, token)
        except InvalidToken:
            return False
        return True


# Text is sealed with AES-256-GCM under a key derived from the text key (one call into
# OpenSSL: a tenth of Fernet's cost, which is mostly Python, and the bot seals or opens
# every inbox and outbox row; bench/FINDINGS.md, fifteenth round). Earlier rows are Fernet
# tokens (AES-128-CBC + HMAC-SHA256, starting "gAAAAA"), still read: the prefix, outside
# base64's alphabet, tells the two apart. A key rotation rewrites both kinds as AES-GCM.
_AEAD_PREFIX = b"gcm1:"
_NONCE_BYTES = 12  # random: 2^32 seals per key keep a repeat's chance under 2^-32


def _open(key: bytes, token: bytes) -> bytes:
    if not token.startswith(_AEAD_PREFIX):
        return _fernet(key).decrypt(token)  # raises InvalidToken for anything else
    try:
        raw = base64.urlsafe_b64decode(token[len(_AEAD_PREFIX) :])
        return _aead(key).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], None)
    except (ValueError, InvalidTag):  # binascii.Error is a ValueError; so is a short nonce
        raise InvalidToken from None


@functools.lru_cache(maxsize=8)
def _aead(key: bytes) -> AESGCM:
    # Its own key, derived from the text key: one key is never used by two algorithms (the
    # text key also opens Fernet tokens written before).
    derived = hmac.new(key, b"yousaid text seal: AES-256-GCM", hashlib.sha256).digest()
    return AESGCM(derived)


@functools.lru_cache(maxsize=8)
def _fernet(key: bytes) -> Fernet:
    # Built once per key: the key bytes are in memory anyway, in the Secrets object; only the
    # current and rotating keys are used.
    return Fernet(base64.urlsafe_b64encode(key))


def _body(keys: Secrets) -> str:
    data: dict[str, object] = {
        "version": _FORMAT_VERSION,
        "pseudonym_key": base64.b64encode(keys.pseudonym_key).decode(),
        "text_key": base64.urlsafe_b64encode(keys.text_key).decode(),
    }
    if keys.old_text_keys:
        data["old_text_keys"] = [base64.urlsafe_b64encode(k).decode() for k in keys.old_text_keys]
    return json.dumps(data, indent=2) + "\n"


def replace_secrets_file(path: Path, keys: Secrets) -> None:
    """Write the secrets file anew, atomically: a new file (mode 0600) is synced to disk,
    then renamed over the old one, so a crash leaves either the old file or the new one."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # as the database's folder
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(_body(keys))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    sync_directory(path.parent)


def sync_directory(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX: fsync the directory)."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def generate_secrets_file(path: Path) -> Secrets:
    """Write a new secrets file with mode 0600; refuse to overwrite one."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # as the database's folder
    created = Secrets(secrets.token_bytes(32), secrets.token_bytes(32))
    # O_EXCL: never overwrite a key file, even if two processes start together.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(_body(created))
        # On disk before anything is encrypted under it: after a power cut an empty key
        # file beside a database already written would make that database unreadable.
        handle.flush()
        os.fsync(handle.fileno())
    sync_directory(path.parent)
    return created


def load_secrets(path_text: str, *, production: bool) -> Secrets:
    """Read the secrets file, creating it in development; errors name SECRETS_PATH."""
    path = Path(path_text)
    if not path.exists():
        if production:
            raise SettingsError(
                "SECRETS_PATH",
                f"no secrets file at {path}. In production it "
                "is never generated: restore it from backup, or create it once "
                "with: python -m bot secrets-init",
            )
        log.warning(
            "No secrets file found: generated a new one (mode 0600). Back it up: "
            "without it, pseudonyms and encrypted text cannot be read."
        )
        return generate_secrets_file(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SettingsError(
            "SECRETS_PATH", f"{path} is readable by others (mode {mode:o}); run: chmod 600 {path}"
        )
    try:
        data = json.loads(path.read_text("utf-8"))
        loaded = Secrets(
            base64.b64decode(data["pseudonym_key"]),
            base64.urlsafe_b64decode(data["text_key"]),
            tuple(base64.urlsafe_b64decode(k) for k in data.get("old_text_keys", [])),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        raise SettingsError("SECRETS_PATH", f"{path} is not a YouSaid secrets file") from None
    text_keys = (loaded.text_key, *loaded.old_text_keys)
    if len(loaded.pseudonym_key) < 32 or any(len(k) != 32 for k in text_keys):
        raise SettingsError("SECRETS_PATH", f"{path} holds keys of the wrong length")
    return loaded
