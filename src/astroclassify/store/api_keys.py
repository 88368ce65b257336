"""API keys: only their hashes are stored; a name is unique among the keys in use."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from astroclassify.errors import RecordNotFoundError, StoreError
from astroclassify.store.tables import ApiKey

if TYPE_CHECKING:
    from astroclassify.store import Store

__all__ = ["SCOPES", "ApiKeys", "create_api_key", "list_api_keys", "revoke_api_key"]

# client: classify and read its own records; peer: another installation, reads shared labels only.
SCOPES = ("client", "peer")


class ApiKeys:
    """Create, verify and revoke API keys of the form ``ac_<prefix>_<secret>``.

    Keys are 256-bit random secrets, so a plain SHA-256 is enough to store them (a slow
    password hash protects guessable passwords, which these are not); lookup goes by the
    public prefix and comparison is constant-time.
    """

    def __init__(self, session: Session) -> None:
        self.session = session

    def create(self, name: str, *, scope: str = "client", share: bool = False) -> tuple[ApiKey, str]:
        if scope not in SCOPES:
            raise StoreError(f"key scope {scope!r} is not one of {', '.join(SCOPES)}")
        if share and scope != "client":
            raise StoreError("only a client key's holder makes corrections to share")
        if not re.fullmatch(r"[A-Za-z0-9_.@-]{1,64}", name):
            raise StoreError(f"key name {name!r} must be 1-64 letters, digits or _.@-")
        if self._active(name) is not None:
            raise StoreError(f"a key named {name!r} is in use; revoke it first or choose another name")
        prefix, secret = secrets.token_hex(4), secrets.token_urlsafe(32)
        key = f"ac_{prefix}_{secret}"
        digest = hashlib.sha256(key.encode()).hexdigest()
        record = ApiKey(name=name, prefix=prefix, key_hash=digest, scope=scope, share=share)
        self.session.add(record)
        self.session.commit()
        return record, key

    def verify(self, key: str) -> ApiKey | None:
        parts = key.split("_", 2)
        if len(parts) != 3 or parts[0] != "ac":
            return None
        digest = hashlib.sha256(key.encode()).hexdigest()
        for record in self.session.scalars(
            select(ApiKey).where(ApiKey.prefix == parts[1], ApiKey.revoked_at.is_(None))
        ):
            if hmac.compare_digest(record.key_hash, digest):
                return record
        return None

    def revoke(self, name: str) -> ApiKey:
        record = self._active(name)
        if record is None:
            if self.session.scalar(select(ApiKey).where(ApiKey.name == name).limit(1)) is not None:
                raise RecordNotFoundError(f"API key {name!r} is already revoked")
            raise RecordNotFoundError(f"API key {name!r} not found")
        record.revoked_at = dt.datetime.now(dt.UTC)
        self.session.commit()
        return record

    def _active(self, name: str) -> ApiKey | None:
        return self.session.scalar(select(ApiKey).where(ApiKey.name == name, ApiKey.revoked_at.is_(None)))

    def all(self) -> list[ApiKey]:
        return list(self.session.scalars(select(ApiKey).order_by(ApiKey.id)))

    def sharing_owners(self) -> set[str]:
        """Owner ids (``key:<id>``) whose holders chose to share their corrections."""
        return {f"key:{i}" for i in self.session.scalars(select(ApiKey.id).where(ApiKey.share.is_(True)))}


def create_api_key(store: Store, name: str, *, scope: str = "client", share: bool = False) -> tuple[ApiKey, str]:
    """A new key for ``name``: its record, and the key itself (shown once; only its hash is stored).

    ``scope="peer"`` makes a key for another installation: it reads the labels shared here
    (``/api/contributions``) and nothing else. ``share=True`` publishes the corrections this
    key's holder makes to peers; without it they stay private to the holder.
    """
    with store.session() as session:
        return ApiKeys(session).create(name, scope=scope, share=share)


def list_api_keys(store: Store) -> list[ApiKey]:
    """Every key's record (names, prefixes, dates; never the keys)."""
    with store.session() as session:
        return ApiKeys(session).all()


def revoke_api_key(store: Store, name: str) -> ApiKey:
    """Revoke ``name``'s key: requests with it get 401 from then on."""
    with store.session() as session:
        return ApiKeys(session).revoke(name)
