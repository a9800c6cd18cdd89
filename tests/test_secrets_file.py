"""Free text at rest (bot/secrets_file.py): sealed with AES-256-GCM since the fifteenth
benchmark round; Fernet tokens written before stay readable, under the current key or, mid
rotation, an earlier one. Anything altered, or sealed under a key not held, is refused."""

from __future__ import annotations

import os

import pytest
from cryptography.fernet import InvalidToken
from hypothesis import given
from hypothesis import strategies as st

from bot.secrets_file import Secrets, _fernet

TEXT = "Quorvath office: the buzzer is broken, I waited 40 minutes — ça va?"


def fresh() -> Secrets:
    return Secrets(os.urandom(32), os.urandom(32))


def test_sealed_text_opens_and_shows_nothing_of_itself() -> None:
    keys = fresh()
    token = keys.encrypt_text(TEXT)
    assert keys.decrypt_text(token) == TEXT
    assert token.startswith(b"gcm1:") and token.isascii()
    assert b"Quorvath" not in token and b"buzzer" not in token
    assert keys.encrypt_text(TEXT) != token  # a fresh nonce every time
    assert keys.under_current_key(token)


@given(position=st.integers(min_value=0, max_value=200), flip=st.integers(1, 255))
def test_a_changed_byte_is_refused(position: int, flip: int) -> None:
    keys = Secrets(b"p" * 32, b"t" * 32)
    token = bytearray(keys.encrypt_text(TEXT))
    position %= len(token)
    token[position] ^= flip
    altered = bytes(token)
    try:
        opened = keys.decrypt_text(altered)
    except InvalidToken:
        return
    # base64 ignores what is not in its alphabet and the padding: a byte that changes no
    # decoded bit may still open, to the same text and nothing else.
    assert opened == TEXT


def test_fernet_tokens_written_before_still_open() -> None:
    keys = fresh()
    earlier = _fernet(keys.text_key).encrypt(TEXT.encode())
    assert earlier.startswith(b"gAAAAA")
    assert keys.decrypt_text(earlier) == TEXT
    assert keys.under_current_key(earlier)


def test_mid_rotation_both_kinds_under_the_earlier_key_open() -> None:
    before = fresh()
    sealed, earlier = before.encrypt_text(TEXT), _fernet(before.text_key).encrypt(b"older")
    during = Secrets(before.pseudonym_key, os.urandom(32), (before.text_key,))
    assert during.decrypt_text(sealed) == TEXT and during.decrypt_text(earlier) == "older"
    assert not during.under_current_key(sealed)
    assert not during.under_current_key(earlier)
    assert during.under_current_key(during.encrypt_text(TEXT))


@pytest.mark.parametrize(
    "token", [b"", b"junk", b"gcm1:", b"gcm1:!!!!", b"gcm1:AAAA", b"gAAAAAjunk"]
)
def test_what_is_not_a_token_of_ours_is_refused(token: bytes) -> None:
    keys = fresh()
    with pytest.raises(InvalidToken):
        keys.decrypt_text(token)
    assert not keys.under_current_key(token)


def test_a_key_not_held_opens_nothing() -> None:
    writer, reader = fresh(), fresh()
    for token in (writer.encrypt_text(TEXT), _fernet(writer.text_key).encrypt(b"x")):
        with pytest.raises(InvalidToken):
            reader.decrypt_text(token)
