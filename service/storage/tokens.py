"""API tokens: how they are made, stored and checked.

A token is ``st_<8 hex>_<43 url-safe chars>``: the first part (the *prefix*, 32 random
bits) is public and names the token in listings and for revocation; the second is 256
random bits from ``secrets``. The store keeps only the prefix and the SHA-256 of the
whole token. A plain, fast, unsalted hash is the right one here: salts and slow hashes
(bcrypt, argon2) protect low-entropy passwords against guessing, but nobody can guess
256 random bits, and a preimage of SHA-256 is out of reach, so a stolen table yields no
usable token. A fast hash also lets the API find a token with one indexed lookup by its
hash on every request. That lookup compares hashes, not tokens, so its timing tells an
attacker nothing about a valid token; the one comparison against a secret held in
memory (the admin token from the environment) uses ``hmac.compare_digest``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy.orm import Session

from service.storage import tenants
from service.storage.tables import ApiTokenRow

TOKEN_PREFIX = "st_"
SECRET_BYTES = 32


def hash_token(token: str) -> str:
    """The SHA-256 of ``token`` in hex: what the store keeps."""
    return hashlib.sha256(token.encode()).hexdigest()


def same_hash(a: str, b: str) -> bool:
    """Constant-time equality of two hashes."""
    return hmac.compare_digest(a.encode(), b.encode())


def new_token() -> tuple[str, str]:
    """A fresh ``(token, prefix)``."""
    prefix = f"{TOKEN_PREFIX}{secrets.token_hex(4)}"
    return f"{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}", prefix


@dataclass(frozen=True)
class IssuedToken:
    """A token just issued: ``token`` is shown once and never stored."""

    row: ApiTokenRow
    token: str


def issue_token(session: Session, *, tenant_id: int | None, name: str, now: float) -> IssuedToken:
    """A new token of ``tenant_id`` (None: an admin token)."""
    token, prefix = new_token()
    row = tenants.add_token(
        session,
        tenant_id=tenant_id,
        name=name,
        prefix=prefix,
        token_hash=hash_token(token),
        now=now,
    )
    return IssuedToken(row=row, token=token)


def revoke_token(session: Session, *, ref: str, now: float) -> ApiTokenRow:
    """Revoke the token with id or prefix ``ref`` (revoking twice keeps the first time)."""
    row = tenants.get_token(session, ref=ref)
    if row.revoked_at is None:
        row.revoked_at = now
    return row
