"""Tables. Pydantic schemas for the API live in ``web``; these are storage only."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = ["ApiKey", "Base", "Classification", "Feedback"]


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

    feedback: Mapped[list[Feedback]] = relationship(back_populates="classification", order_by="Feedback.id")


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
    """An API key: only its SHA-256 is stored; the key itself is shown once at creation."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16), index=True)  # public part, for lookup
    key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), default=None)
