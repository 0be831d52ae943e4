"""WeCom (企业微信) callback encryption (doc "加解密方案说明").

* ``EncodingAESKey``: 43 characters; ``AESKey = Base64_Decode(key + "=")``, 32 bytes.
* AES-256-CBC, IV = the first 16 bytes of the key, PKCS#7 padding to a
  multiple of **32** bytes (not the AES block size).
* plaintext = 16 random bytes + message length (4 bytes, network order) +
  message + ReceiveId (the corp id; checked on decrypt).
* ``msg_signature`` = SHA1 hex of the token, timestamp, nonce and ciphertext
  sorted as strings and concatenated.

URL check: GET ``msg_signature, timestamp, nonce, echostr`` → verify, decrypt,
answer the bare plaintext. Messages: POST XML with ``<Encrypt>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
import time
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from defusedxml import DefusedXmlException, ElementTree  # type: ignore[import-untyped]

from engine.ports import WebhookVerificationError

BLOCK = 32
MAX_AGE = 300  # seconds a callback's timestamp may be off


class WecomCryptoError(WebhookVerificationError):
    """Signature, decryption, padding or corp id check failed. ``code`` follows
    the official sample's numbers (-40001 signature … -40005 corp id)."""


def signature(token: str, timestamp: str, nonce: str, encrypted: str) -> str:
    """``msg_signature`` of a callback."""
    return hashlib.sha1("".join(sorted([token, str(timestamp), str(nonce), encrypted])).encode()).hexdigest()


def _pad(data: bytes) -> bytes:
    n = BLOCK - len(data) % BLOCK
    return data + bytes([n]) * n


def _unpad(data: bytes) -> bytes:
    if not data:
        raise WecomCryptoError("empty plaintext", code="-40007")
    n = data[-1]
    if not 1 <= n <= BLOCK or data[-n:] != bytes([n]) * n:
        raise WecomCryptoError("bad padding", code="-40007")
    return data[:-n]


class WecomCrypto:
    """Encrypts and decrypts callback messages for one app (token, key, corp id).

    ``repr`` shows only the corp id.
    """

    def __init__(self, token: str, encoding_aes_key: str, receive_id: str) -> None:
        if len(encoding_aes_key) != 43:
            raise ValueError("EncodingAESKey must be 43 characters")
        try:
            self._key = base64.b64decode(encoding_aes_key + "=", validate=True)
        except binascii.Error as exc:
            raise ValueError("EncodingAESKey is not Base64") from exc
        if len(self._key) != 32:
            raise ValueError("EncodingAESKey must decode to 32 bytes")
        self._token = token
        self.receive_id = receive_id

    def __repr__(self) -> str:
        return f"<WecomCrypto receive_id={self.receive_id!r}>"

    def _cipher(self) -> Cipher[Any]:
        return Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16]))

    def encrypt(self, message: str, *, random16: bytes | None = None) -> str:
        """Base64 ciphertext of ``message`` (``random16`` only for tests)."""
        raw = message.encode("utf-8")
        plain = (random16 or os.urandom(16)) + struct.pack(">I", len(raw)) + raw + self.receive_id.encode()
        encryptor = self._cipher().encryptor()
        return base64.b64encode(encryptor.update(_pad(plain)) + encryptor.finalize()).decode()

    def decrypt(self, encrypted: str) -> str:
        """The message inside ``encrypted``.

        Raises:
            WecomCryptoError: not Base64, bad length or padding, or a ReceiveId
                other than ours.
        """
        try:
            data = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError):
            raise WecomCryptoError("ciphertext is not Base64", code="-40010") from None
        if not data or len(data) % 16:
            raise WecomCryptoError("ciphertext length", code="-40007")
        decryptor = self._cipher().decryptor()
        plain = _unpad(decryptor.update(data) + decryptor.finalize())
        if len(plain) < 20:
            raise WecomCryptoError("plaintext too short", code="-40007")
        (length,) = struct.unpack(">I", plain[16:20])
        if 20 + length > len(plain):
            raise WecomCryptoError("message length", code="-40007")
        message, receive_id = plain[20:20 + length], plain[20 + length:]
        if not hmac.compare_digest(receive_id, self.receive_id.encode()):
            raise WecomCryptoError("ReceiveId does not match the corp id", code="-40005")
        try:
            return message.decode("utf-8")
        except UnicodeDecodeError:
            raise WecomCryptoError("message is not UTF-8", code="-40007") from None

    def check_signature(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str,
                        *, now: float | None = None, max_age: float | None = MAX_AGE) -> None:
        """Raises:
            WecomCryptoError: wrong signature (-40001) or a timestamp further
                than ``max_age`` seconds from ``now`` (replay).
        """
        expected = signature(self._token, timestamp, nonce, encrypted)
        if not hmac.compare_digest(expected, str(msg_signature).lower()):
            raise WecomCryptoError("msg_signature does not match", code="-40001")
        if max_age is not None:
            try:
                age = abs((time.time() if now is None else now) - int(timestamp))
            except ValueError:
                raise WecomCryptoError("timestamp is not a number", code="-40001") from None
            if age > max_age:
                raise WecomCryptoError("timestamp too old", code="-40001")

    def verify_url(self, msg_signature: str, timestamp: str, nonce: str, echostr: str,
                   *, now: float | None = None, max_age: float | None = MAX_AGE) -> str:
        """Check the URL-verification GET; return the plaintext to answer with.

        Raises:
            WecomCryptoError: see :meth:`check_signature` and :meth:`decrypt`.
        """
        self.check_signature(msg_signature, timestamp, nonce, echostr, now=now, max_age=max_age)
        return self.decrypt(echostr)

    def decrypt_message(self, msg_signature: str, timestamp: str, nonce: str, xml_body: bytes | str,
                        *, now: float | None = None, max_age: float | None = MAX_AGE) -> dict[str, str]:
        """Verify and decrypt a POSTed callback; return the inner XML's fields.

        Raises:
            WecomCryptoError: bad XML, no ``<Encrypt>``, a failed check.
        """
        encrypted = _xml_fields(xml_body).get("Encrypt")
        if not encrypted:
            raise WecomCryptoError("no Encrypt element", code="-40002")
        self.check_signature(msg_signature, timestamp, nonce, encrypted, now=now, max_age=max_age)
        return _xml_fields(self.decrypt(encrypted))

    def encrypt_reply(self, message: str, timestamp: str, nonce: str, *, random16: bytes | None = None) -> str:
        """A passive reply XML (``Encrypt``, ``MsgSignature``, ``TimeStamp``, ``Nonce``)."""
        encrypted = self.encrypt(message, random16=random16)
        sig = signature(self._token, timestamp, nonce, encrypted)
        return (f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt><MsgSignature><![CDATA[{sig}]]></MsgSignature>"
                f"<TimeStamp>{timestamp}</TimeStamp><Nonce><![CDATA[{nonce}]]></Nonce></xml>")


def _xml_fields(xml: bytes | str) -> dict[str, str]:
    """Top-level child elements of an XML document as text (defusedxml: no
    entities, no external references)."""
    try:
        root = ElementTree.fromstring(xml)
    except (ElementTree.ParseError, DefusedXmlException, ValueError):
        raise WecomCryptoError("body is not acceptable XML", code="-40002") from None
    # A list element (``<MemChangeList><Item>…</Item>…``) becomes its items' texts joined by commas.
    return {child.tag: (",".join((item.text or "").strip() for item in child) if len(child) else (child.text or ""))
            for child in root}


def parse_query(query: Mapping[str, str]) -> tuple[str, str, str]:
    """``(msg_signature, timestamp, nonce)`` from a callback's query string.

    Raises:
        WecomCryptoError: a parameter is missing.
    """
    try:
        return str(query["msg_signature"]), str(query["timestamp"]), str(query["nonce"])
    except KeyError as exc:
        raise WecomCryptoError(f"missing query parameter {exc.args[0]}", code="-40001") from None
