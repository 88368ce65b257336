"""Contributions (labels with their images and provenance), peers' cursors, and this installation's id."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from astroclassify.store.tables import ApiKey, Contribution, Feedback, IngestedItem, Peer, Property

__all__ = ["Contributions", "Peers", "installation_id"]

PUBLISHED = "published_feedback_id"


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

    def unpublished_feedback(self) -> list[Feedback]:
        """Corrections made since the last ``publish`` (oldest first), with their records.

        A watermark rather than a comparison with every published uid: peers read pages often,
        and each read publishes first.
        """
        mark = self.session.get(Property, PUBLISHED)
        q = select(Feedback).where(Feedback.id > int(mark.value if mark else 0))
        q = q.options(selectinload(Feedback.classification)).order_by(Feedback.id)
        return [fb for fb in self.session.scalars(q) if fb.classification]

    def shareable(self, feedback: Sequence[Feedback]) -> list[Feedback]:
        """The corrections whose maker chose to share: the web collection's, and key holders' who opted in."""
        sharing = {f"key:{i}" for i in self.session.scalars(select(ApiKey.id).where(ApiKey.share.is_(True)))}
        return [fb for fb in feedback if fb.classification.owner is None or fb.classification.owner in sharing]

    def provenance(self, classification_ids: Sequence[int]) -> dict[int, tuple[str, str]]:
        """Licence and credit of archive images by their classification id (uploads have none recorded)."""
        if not classification_ids:
            return {}
        q = select(IngestedItem.classification_id, IngestedItem.license, IngestedItem.credit).where(
            IngestedItem.classification_id.in_(list(classification_ids))
        )
        return {cid: (licence or "", credit or "") for cid, licence, credit in self.session.execute(q) if cid}

    def publish(self, rows: Sequence[Contribution], upto: int) -> int:
        """Store ``rows`` and mark corrections up to ``upto`` done (published, or not shareable), at once.

        Returns how many were stored: 0 when another process published the same corrections first.
        """
        self.session.add_all(rows)
        mark = self.session.get(Property, PUBLISHED)
        if mark is None:
            self.session.add(Property(name=PUBLISHED, value=str(upto)))
        elif int(mark.value) < upto:
            mark.value = str(upto)
        try:
            self.session.commit()
        except IntegrityError:
            self.session.rollback()
            return 0
        return len(rows)

    def page(self, since: int, limit: int) -> list[Contribution]:
        q = select(Contribution).where(Contribution.id > since).order_by(Contribution.id).limit(limit)
        return list(self.session.scalars(q))

    def by_uid(self, uid: str) -> Contribution | None:
        return self.session.scalar(select(Contribution).where(Contribution.uid == uid))

    def uids(self, origin: str) -> set[str]:
        return set(self.session.scalars(select(Contribution.uid).where(Contribution.origin == origin)))

    def by_pixels(self, pixels_sha256: str) -> Contribution | None:
        return self.session.scalar(select(Contribution).where(Contribution.pixels_sha256 == pixels_sha256).limit(1))

    def by_digests(self, image_sha256: str, pixels_sha256: str) -> Contribution | None:
        """A contribution whose file has these bytes and these decoded pixels."""
        q = select(Contribution).where(
            Contribution.image_sha256 == image_sha256, Contribution.pixels_sha256 == pixels_sha256
        )
        return self.session.scalar(q.limit(1))

    def held_from(self, via: str) -> tuple[int, list[str]]:
        """How many contributions arrived from one peer, and the image files they brought (each once)."""
        count = int(self.session.scalar(select(func.count()).where(Contribution.via == via)) or 0)
        names = self.session.scalars(select(Contribution.stored_name).where(Contribution.via == via).distinct())
        return count, list(names)

    def votes_on(self, pixels_sha256: str, via: str) -> int:
        q = select(func.count()).where(Contribution.pixels_sha256 == pixels_sha256, Contribution.via == via)
        return int(self.session.scalar(q) or 0)

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
