"""Envelope encryption of a restore point: a KMS data key (AES-256) + AES-GCM.

File layout (`.vbk`)::

    b"VBK1" | u32 big-endian header length | header (UTF-8 JSON) | AES-GCM ciphertext + 16-byte tag

Header: ``{"format": 1, "alg": "AES-256-GCM", "kmsKeyId": <key ARN>, "dataKey": <base64 KMS
ciphertext blob>, "nonce": <base64 12 bytes>, "context": {...}}``.

* The data key is generated per point by KMS `GenerateDataKey` with an encryption context
  (`purpose`, `service`, `point` = the point's key, i.e. service + timestamp); only its
  KMS-encrypted form is stored.
* The point's identity is bound twice: the context is in the header (so in the AES-GCM
  associated data) and KMS only decrypts the data key under the exact same context. The reader
  derives the expected context from where it found the point, never from the header, so a point
  copied or renamed under another key (an old point under a newer timestamp) is refused.
* The whole prefix (magic, length, header) is the AES-GCM associated data, so a tampered header
  (swapped data key, edited context) fails authentication just like tampered ciphertext.
* Opening requires the KMS key the reader is configured with: a point made under another key is
  refused (KMS `Decrypt` is called with `KeyId`), as is any ciphertext or tag change.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from typing import Any

from botocore.exceptions import ClientError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from functions.backup.errors import IntegrityError

MAGIC = b"VBK1"
FORMAT = 1
ALGORITHM = "AES-256-GCM"
NONCE_BYTES = 12
_MAX_HEADER = 64 * 1024


def seal(plaintext: bytes, *, kms: Any, key_id: str, context: dict[str, str]) -> bytes:
    """Encrypt `plaintext` under a fresh KMS data key; returns the complete `.vbk` bytes."""
    data_key = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256", EncryptionContext=context)
    nonce = os.urandom(NONCE_BYTES)
    header = json.dumps(
        {
            "format": FORMAT,
            "alg": ALGORITHM,
            "kmsKeyId": data_key["KeyId"],
            "dataKey": base64.b64encode(data_key["CiphertextBlob"]).decode(),
            "nonce": base64.b64encode(nonce).decode(),
            "context": context,
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    prefix = MAGIC + struct.pack(">I", len(header)) + header
    ciphertext = AESGCM(data_key["Plaintext"]).encrypt(nonce, plaintext, prefix)
    return prefix + ciphertext


def read_header(blob: bytes) -> tuple[dict[str, Any], bytes, bytes]:
    """(header, prefix, ciphertext) of a `.vbk`; IntegrityError when it is not one."""
    if len(blob) < len(MAGIC) + 4 or not blob.startswith(MAGIC):
        raise IntegrityError("not a Valerix backup (bad magic)")
    (length,) = struct.unpack(">I", blob[len(MAGIC) : len(MAGIC) + 4])
    if length > _MAX_HEADER or len(MAGIC) + 4 + length > len(blob):
        raise IntegrityError("corrupt backup header (bad length)")
    end = len(MAGIC) + 4 + length
    try:
        header = json.loads(blob[len(MAGIC) + 4 : end])
    except ValueError as exc:
        raise IntegrityError("corrupt backup header (not JSON)") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("alg") != ALGORITHM:
        raise IntegrityError("unsupported backup format")
    return header, blob[:end], blob[end:]


def _describe_mismatch(expected: dict[str, str], sealed: dict[str, Any]) -> str:
    return "; ".join(
        f"{name}: expected {expected.get(name)!r}, sealed {sealed.get(name)!r}"
        for name in sorted(set(expected) | set(sealed))
        if expected.get(name) != sealed.get(name)
    )


def unseal(blob: bytes, *, kms: Any, key_id: str, context: dict[str, str]) -> tuple[dict[str, Any], bytes]:
    """Decrypt and authenticate a `.vbk` whose identity must be `context`. Returns (header, plaintext).

    `context` is what the caller expects (built from the point's location). Raises
    IntegrityError when the sealed context differs (a copied/renamed point), the point was made
    under another KMS key, its data key does not decrypt, or AES-GCM authentication fails.
    """
    header, prefix, ciphertext = read_header(blob)
    try:
        encrypted_key = base64.b64decode(header["dataKey"], validate=True)
        nonce = base64.b64decode(header["nonce"], validate=True)
        sealed = header["context"]
    except (KeyError, ValueError, TypeError) as exc:
        raise IntegrityError("corrupt backup header (fields)") from exc
    if len(nonce) != NONCE_BYTES or not isinstance(sealed, dict):
        raise IntegrityError("corrupt backup header (nonce/context)")
    if sealed != context:
        raise IntegrityError(
            f"restore point identity mismatch ({_describe_mismatch(context, sealed)}): the point was "
            "sealed under another name, so it was copied or renamed; refusing to restore it"
        )
    try:
        # KMS checks the context too (the header check above only gives the clearer message)
        data_key = kms.decrypt(CiphertextBlob=encrypted_key, KeyId=key_id, EncryptionContext=context)["Plaintext"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise IntegrityError(
            f"the backup's data key cannot be decrypted with KMS key {key_id} ({code}): "
            "wrong key, foreign backup or tampered header"
        ) from exc
    try:
        plaintext = AESGCM(data_key).decrypt(nonce, ciphertext, prefix)
    except InvalidTag as exc:
        raise IntegrityError("AES-GCM authentication failed: the backup was altered or is wrongly keyed") from exc
    return header, plaintext
