"""Contributions (labels with their images and provenance), peers' cursors, and this installation's id."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from astroclassify.store.tables import Contribution, Feedback, Peer, Property

__all__ = ["Contributions", "Peers", "installation_id"]


def installation_id(session: Session) -> str:
    """This installation's id (made on first use): the origin of the labels its people make."""
    value = session.get(Property, "installation_id")
    if value is not None:
        return value.value
    session.add(Property(name="installation_id", value=uuid.uuid4().hex[:16]))
    try:
        session.commit()
    except IntegrityError:  # another process made it first
        session.rollback()
    found = session.get(Property, "installation_id")
    assert found is not None
    return found.value


class Contributions:
    def __init__(self, session: Session) -> None:
        self.session = session

    def unpublished_feedback(self, origin: str) -> list[Feedback]:
        """Corrections made here that are not contributions yet (oldest first), with their records."""
        done = {uid for (uid,) in self.session.execute(select(Contribution.uid).where(Contribution.origin == origin))}
        q = select(Feedback).options(selectinload(Feedback.classification)).order_by(Feedback.id)
        return [fb for fb in self.session.scalars(q) if f"{origin}-f{fb.id}" not in done and fb.classification]

    def page(self, since: int, limit: int) -> list[Contribution]:
        q = select(Contribution).where(Contribution.id > since).order_by(Contribution.id).limit(limit)
        return list(self.session.scalars(q))

    def by_uid(self, uid: str) -> Contribution | None:
        return self.session.scalar(select(Contribution).where(Contribution.uid == uid))

    def by_image(self, image_sha256: str) -> Contribution | None:
        return self.session.scalar(select(Contribution).where(Contribution.image_sha256 == image_sha256).limit(1))

    def by_pixels(self, pixels_sha256: str) -> Contribution | None:
        return self.session.scalar(select(Contribution).where(Contribution.pixels_sha256 == pixels_sha256).limit(1))

    def votes_on(self, pixels_sha256: str, via: str) -> int:
        q = select(func.count()).where(Contribution.pixels_sha256 == pixels_sha256, Contribution.via == via)
        return int(self.session.scalar(q) or 0)

    def add(self, row: Contribution) -> bool:
        """Store one received contribution; False when its uid is already here (a repeat)."""
        self.session.add(row)
        try:
            self.session.commit()
        except IntegrityError:
            self.session.rollback()
            return False
        return True

    def all(self, question: str | None = None) -> Sequence[Contribution]:
        q = select(Contribution).order_by(Contribution.id)
        if question:
            q = q.where(Contribution.question == question)
        return list(self.session.scalars(q))


class Peers:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, url: str) -> Peer:
        peer = self.session.scalar(select(Peer).where(Peer.url == url))
        if peer is None:
            peer = Peer(url=url, cursor=0, received=0, refused=0, last_error="")
            self.session.add(peer)
            self.session.commit()
        return peer

    def all(self) -> list[Peer]:
        return list(self.session.scalars(select(Peer).order_by(Peer.url)))
