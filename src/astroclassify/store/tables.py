"""Tables. Pydantic schemas for the API live in ``web``; these are storage only."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "Alert",
    "AlertDelivery",
    "ApiKey",
    "Base",
    "Classification",
    "Contribution",
    "Embedding",
    "Feedback",
    "IdempotencyKey",
    "IngestRun",
    "IngestedItem",
    "Mark",
    "Peer",
    "Property",
]


class Base(DeclarativeBase):
    pass


class Classification(Base):
    """One classified image: the upload's provenance and the model's answer."""

    __tablename__ = "classifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)
    filename: Mapped[str] = mapped_column(String(255))  # as the user sent it; escape when shown
    stored_name: Mapped[str] = mapped_column(String(64), unique=True)  # generated, never user-chosen
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    image_format: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(64), index=True)
    confidence: Mapped[float] = mapped_column(Float, index=True)
    probabilities: Mapped[dict] = mapped_column(JSON)
    model_name: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(32))
    owner: Mapped[str | None] = mapped_column(String(64), index=True, default=None)  # API key id, if any
    # Test-time augmentation the answer was computed with (none, rot4, rot4flip); NULL before 0.2.
    tta: Mapped[str | None] = mapped_column(String(16), default=None)
    # How unusual the image is, in [0, 1] (discovery/detectors.py); NULL: no detector, or before 0.3.
    anomaly_score: Mapped[float | None] = mapped_column(Float, index=True, default=None)
    unusual: Mapped[bool | None] = mapped_column(Boolean, default=None)
    # A model with tag heads: tag -> probability or predicted vote fraction; NULL: none (or before 0.4).
    tags: Mapped[dict | None] = mapped_column(JSON, default=None)

    feedback: Mapped[list[Feedback]] = relationship(back_populates="classification", order_by="Feedback.id")
    marks: Mapped[list[Mark]] = relationship(back_populates="classification", order_by="Mark.id")
    embedding: Mapped[Embedding | None] = relationship(back_populates="classification")


class Embedding(Base):
    """A record's compact embedding (float16 bytes), for look-alikes, ranking and the map.

    Only embeddings under the same ``detector`` (its projection's id) are comparable.
    """

    __tablename__ = "embeddings"

    classification_id: Mapped[int] = mapped_column(ForeignKey("classifications.id"), primary_key=True)
    detector: Mapped[str] = mapped_column(String(32), index=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)

    classification: Mapped[Classification] = relationship(back_populates="embedding")


class Mark(Base):
    """A person's verdict on an image: interesting or not. Never overwritten; the newest counts."""

    __tablename__ = "marks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    classification_id: Mapped[int] = mapped_column(ForeignKey("classifications.id"), index=True)
    interesting: Mapped[bool] = mapped_column(Boolean)
    owner: Mapped[str | None] = mapped_column(String(64), default=None)  # API key name, or None for local use
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    classification: Mapped[Classification] = relationship(back_populates="marks")


class Feedback(Base):
    """A user's correction; never overwritten, so the history of answers is kept."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    classification_id: Mapped[int] = mapped_column(ForeignKey("classifications.id"), index=True)
    label: Mapped[str] = mapped_column(String(64))
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    classification: Mapped[Classification] = relationship(back_populates="feedback")


class ApiKey(Base):
    """An API key: only its SHA-256 is stored; the key itself is shown once at creation.

    A name is unique among keys in use; a revoked key keeps its name, which a new key may take.
    """

    __tablename__ = "api_keys"
    __table_args__ = (
        Index(
            "ux_api_keys_active_name",
            "name",
            unique=True,
            sqlite_where=text("revoked_at IS NULL"),
            postgresql_where=text("revoked_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(16), index=True)  # public part, for lookup
    key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    # "client" (classify, own records) or "peer" (another installation: reads shared labels only).
    scope: Mapped[str] = mapped_column(String(16), default="client", server_default="client")
    # Whether the corrections its holder makes are shared with peers (their choice, off by default).
    share: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("0"))


class IdempotencyKey(Base):
    """An ``Idempotency-Key`` a client sent with an upload, and the record it created.

    A retried request (after a dropped connection) with the same key gets that record back
    instead of creating a second one. ``owner`` is ``""`` for anonymous use, so the unique
    constraint also holds there (SQL treats NULLs as all different).
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("owner", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), default="")
    key: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))  # of the upload: the same key with other bytes is refused
    classification_id: Mapped[int] = mapped_column(ForeignKey("classifications.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)


class IngestedItem(Base):
    """One archive item (an APOD day, an ESA/Hubble image) with its provenance and what became of it.

    ``status``: ``stored`` (image kept), ``duplicate`` (same or nearly the same pixels as
    ``duplicate_of``; kept and reported, not dropped), ``recorded`` (a video or other day:
    metadata only) or ``failed`` (``error`` says why; the next run tries again).
    """

    __tablename__ = "ingested_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(128), unique=True)  # apod:2020-06-09, esahubble:heic0506a
    source: Mapped[str] = mapped_column(String(32), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    error: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    date: Mapped[dt.date | None] = mapped_column(Date, index=True, default=None)
    title: Mapped[str] = mapped_column(Text, default="")
    media_type: Mapped[str] = mapped_column(String(16), default="image")
    page_url: Mapped[str] = mapped_column(Text, default="")
    image_url: Mapped[str | None] = mapped_column(Text, default=None)
    hires_url: Mapped[str | None] = mapped_column(Text, default=None)
    video_url: Mapped[str | None] = mapped_column(Text, default=None)
    thumbnail_url: Mapped[str | None] = mapped_column(Text, default=None)
    credit: Mapped[str] = mapped_column(Text, default="")
    license: Mapped[str] = mapped_column(Text, default="")
    explanation: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str] = mapped_column(String(64), default="", index=True)
    stored_name: Mapped[str | None] = mapped_column(String(64), default=None)
    image_format: Mapped[str | None] = mapped_column(String(16), default=None)
    sha256: Mapped[str | None] = mapped_column(String(64), index=True, default=None)  # of the file's bytes
    pixels_sha256: Mapped[str | None] = mapped_column(String(64), index=True, default=None)  # of decoded pixels
    fingerprint: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)  # near-duplicate search
    width: Mapped[int | None] = mapped_column(Integer, default=None)
    height: Mapped[int | None] = mapped_column(Integer, default=None)
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("ingested_items.id"), default=None)
    duplicate_kind: Mapped[str | None] = mapped_column(String(16), default=None)  # exact | near
    # indexed: discovery joins every stored embedding to its archive item (migration 0004)
    classification_id: Mapped[int | None] = mapped_column(ForeignKey("classifications.id"), index=True, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )

    classification: Mapped[Classification | None] = relationship()


class IngestRun(Base):
    """One ingest run of one source: what it was asked, what it did, how long it took."""

    __tablename__ = "ingest_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(32), index=True)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    status: Mapped[str] = mapped_column(String(16), default="running")  # running | finished | failed
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    counts: Mapped[dict] = mapped_column(JSON, default=dict)  # stored / skipped / duplicate / failed
    error: Mapped[str] = mapped_column(Text, default="")


class Alert(Base):
    """Something worth a person's look: an ingested image (one per item and kind, so restarts add none),
    or a decision of the learning loop (one per ``key``)."""

    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("item_id", "kind"), UniqueConstraint("key", name="uq_alerts_key"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int | None] = mapped_column(ForeignKey("ingested_items.id"), index=True, default=None)
    key: Mapped[str | None] = mapped_column(String(160), default=None)  # alerts about no item: learn decisions
    kind: Mapped[str] = mapped_column(String(32))  # low_confidence | anomaly
    message: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)

    deliveries: Mapped[list[AlertDelivery]] = relationship(back_populates="alert", order_by="AlertDelivery.id")


class AlertDelivery(Base):
    """One alert through one notifier: retried until delivered (at least once), then never again."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (UniqueConstraint("alert_id", "notifier"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), index=True)
    notifier: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), default=None)

    alert: Mapped[Alert] = relationship(back_populates="deliveries")


class Contribution(Base):
    """One person's label for one image, made here or received from another installation.

    ``uid`` is global (``<origin>-f<feedback id>`` for ours) and never changes, so a label
    travels between installations exactly once however often it is offered; ``id`` is this
    installation's sequence, the cursor peers pull from.
    """

    __tablename__ = "contributions"
    __table_args__ = (Index("ix_contributions_image_contributor", "pixels_sha256", "contributor"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str] = mapped_column(String(96), unique=True)
    origin: Mapped[str] = mapped_column(String(64), index=True)  # the installation where it was made
    contributor: Mapped[str] = mapped_column(String(128), index=True)
    question: Mapped[str] = mapped_column(String(64), default="class")
    answer: Mapped[str] = mapped_column(String(64))
    image_sha256: Mapped[str] = mapped_column(String(64), index=True)  # of the file's bytes
    pixels_sha256: Mapped[str] = mapped_column(String(64))  # of the decoded pixels: the image's identity
    stored_name: Mapped[str] = mapped_column(String(64))
    image_format: Mapped[str] = mapped_column(String(16))
    licence: Mapped[str] = mapped_column(String(255), default="")
    credit: Mapped[str] = mapped_column(Text, default="")
    made_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    via: Mapped[str] = mapped_column(String(255), default="local")  # local, a peer's URL, or import:<name>
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Peer(Base):
    """Another installation this one pulls labels from, and how far it has read."""

    __tablename__ = "peers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(255), unique=True)
    cursor: Mapped[int] = mapped_column(Integer, default=0)  # the peer's last contribution id taken
    received: Mapped[int] = mapped_column(Integer, default=0)
    refused: Mapped[int] = mapped_column(Integer, default=0)
    last_sync_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    last_error: Mapped[str] = mapped_column(Text, default="")


class Property(Base):
    """Installation-wide values (its id)."""

    __tablename__ = "properties"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
