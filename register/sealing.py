"""Encryption of the register's identifying and free-text columns.

A sealed value is ``v1.<key id>.<base64url(nonce || ciphertext)>``: the
UTF-8 text encrypted with AES-256-GCM under the payload codec's key ring
(``escalation.codec``: the first key seals, every key opens, so one rotation
covers Temporal's histories and the register alike). The associated data
binds the value to its place (table, column and case reference), so a
ciphertext copied into another row or column fails to open instead of
showing one child's details on another's case.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from escalation.codec import NONCE_BYTES, CodecDecodeError, KeyRing, UnknownKeyError

VERSION = "v1"
_AAD = b"escalation-register/v1:"


class Sealer:
    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring
        self._ciphers = {key_id: AESGCM(key) for key_id, key in ring.keys.items()}

    def seal(self, text: str | None, place: str) -> str | None:
        if text is None:
            return None
        key_id = self.ring.active_id
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[key_id].encrypt(nonce, text.encode("utf-8"), _aad(key_id, place))
        return f"{VERSION}.{key_id}.{base64.urlsafe_b64encode(nonce + sealed).decode('ascii')}"

    def open(self, value: str | None, place: str) -> str | None:
        if value is None:
            return None
        version, _, rest = value.partition(".")
        key_id, _, data = rest.partition(".")
        if version != VERSION or not data:
            raise CodecDecodeError("a register value is not sealed in a known format")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise UnknownKeyError(key_id)
        try:
            raw = base64.urlsafe_b64decode(data)
            text = cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _aad(key_id, place))
        except (InvalidTag, binascii.Error, ValueError):
            raise CodecDecodeError(
                f"a register value under key id {key_id!r} failed to decrypt (altered, "
                "or moved from another row)"
            ) from None
        return text.decode("utf-8")


def _aad(key_id: str, place: str) -> bytes:
    return _AAD + key_id.encode("ascii") + b":" + place.encode("utf-8")
