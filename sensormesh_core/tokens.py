"""Bearer credentials: device tokens and operator API keys, issued once,
stored only as a hash, sent as `authorization: Bearer <credential>`.

Each kind has its own prefix, so a leaked one is recognisable (in a log, a
commit, a secret scanner's rules) and a service can tell which kind it was
handed before any lookup. Both are 256 random bits, so a plain SHA-256 is enough to store them (no
salt or slow hash is needed against guessing), and the hash doubles as the
lookup key: authenticating a call is one indexed read, cached by ingest.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

TOKEN_PREFIX = "smdt_"  # noqa: S105 - "sensormesh device token": recognisable in logs and secret scanners
API_KEY_PREFIX = "smak_"  # "sensormesh API key"
AUTHORIZATION_KEY = "authorization"


def new_token() -> str:
    """A fresh device token."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_api_key() -> str:
    """A fresh operator API key."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def is_device_token(credential: str) -> bool:
    """Whether `credential` has the device tokens' prefix."""
    return credential.startswith(TOKEN_PREFIX)


def is_api_key(credential: str) -> bool:
    """Whether `credential` has the API keys' prefix."""
    return credential.startswith(API_KEY_PREFIX)


def hash_token(token: str) -> bytes:
    """What the database stores for `token` (a device token or an API key)."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The token from `authorization: Bearer <token>` call metadata, if present."""
    for key, value in metadata or ():
        if key.lower() != AUTHORIZATION_KEY:
            continue
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        scheme, _, token = text.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


def write_token_file(path: Path, token: str) -> None:
    """Write `token` readable by its owner only (0600), atomically: a crash leaves the old file or none."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
