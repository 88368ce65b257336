"""Alerts raised on archive items, and their deliveries through each notifier."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from astroclassify.store.archive import as_utc
from astroclassify.store.tables import Alert, AlertDelivery

__all__ = ["Alerts"]


class Alerts:
    def __init__(self, session: Session) -> None:
        self.session = session

    def raise_once(
        self,
        item_id: int | None,
        kind: str,
        message: str,
        payload: dict,
        notifiers: list[str],
        *,
        key: str | None = None,
    ) -> Alert | None:
        """Store an alert and a pending delivery per notifier, unless this item already has one of this kind
        (or, for an alert about no item, one with this ``key`` exists)."""
        if item_id is None and not key:
            raise ValueError("an alert about no archive item needs a key")
        same = Alert.key == key if item_id is None else (Alert.item_id == item_id) & (Alert.kind == kind)
        if self.session.scalar(select(Alert).where(same)) is not None:
            return None
        alert = Alert(item_id=item_id, kind=kind, message=message, payload=payload, key=key)
        alert.deliveries = [AlertDelivery(notifier=n) for n in notifiers]
        self.session.add(alert)
        try:
            self.session.commit()
        except IntegrityError:  # another watcher raised it first
            self.session.rollback()
            return None
        return alert

    def due(self, at: dt.datetime) -> list[AlertDelivery]:
        q = (
            select(AlertDelivery)
            .options(selectinload(AlertDelivery.alert))
            .where(AlertDelivery.status == "pending")
            .order_by(AlertDelivery.id)
        )
        return [d for d in self.session.scalars(q) if d.next_attempt_at is None or as_utc(d.next_attempt_at) <= at]

    def recent(self, limit: int = 20) -> list[Alert]:
        q = select(Alert).options(selectinload(Alert.deliveries)).order_by(Alert.id.desc()).limit(limit)
        return list(self.session.scalars(q))

    def next_retry(self) -> dt.datetime | None:
        value = self.session.scalar(
            select(func.min(AlertDelivery.next_attempt_at)).where(AlertDelivery.status == "pending")
        )
        return as_utc(value) if value else None
