"""Pydantic schemas of the REST API (kept apart from the tables of the same names in ``store``)."""

from __future__ import annotations

import dataclasses
import datetime as dt

from pydantic import BaseModel, Field

from astroclassify.discovery.collection import Neighbour, Ranked
from astroclassify.store.tables import Classification
from astroclassify.web.credit import Credit

__all__ = [
    "BatchItem",
    "BatchResult",
    "ClassificationOut",
    "ClassificationPage",
    "CreditOut",
    "FeedbackIn",
    "FeedbackOut",
    "ModelInfo",
]


class FeedbackOut(BaseModel):
    label: str
    comment: str
    created_at: dt.datetime


class CreditOut(BaseModel):
    archive: str
    id: str
    text: str
    url: str
    license: str


class ClassificationOut(BaseModel):
    id: int
    file: str
    label: str = Field(description="The model's answer.")
    confidence: float
    probabilities: dict[str, float]
    model: str
    model_version: str
    tta: str | None = Field(
        description="Test-time augmentation the answer was computed with (none, rot4, rot4flip); null for records from before 0.2."
    )
    low_confidence: bool = Field(description="Confidence under the server's threshold: treat the label with care.")
    anomaly_score: float | None = Field(
        default=None,
        description="How unusual the image is, in [0, 1]: the share of typical images (held out from the "
        "model's training) that look less unusual. Null: the model has no anomaly detector.",
    )
    unusual: bool | None = Field(
        default=None, description="anomaly_score is over the detector's threshold (5% of typical images are)."
    )
    tags: dict[str, float] = Field(
        default_factory=dict,
        description="Soft and multi-label outputs of a model with tag heads: tag -> probability or predicted "
        "vote fraction (the morphology model: ring, featured_or_disk, not_edge_on, no_spiral_arms). "
        "Empty for a model without tags.",
    )
    interesting: bool | None = Field(
        default=None, description="A person's latest mark: interesting (true) or not (false); null if unmarked."
    )
    corrected_label: str | None = Field(default=None, description="The latest correction a person made, if any.")
    already_stored: bool = Field(
        default=False,
        description="This upload repeats an earlier one (same Idempotency-Key, or the same bytes, model and TTA): "
        "this is that earlier record, not a new one.",
    )
    explanation_url: str = Field(description="Grad-CAM overlay of this image (PNG).")
    image_url: str = Field(description="The stored image, as uploaded.")
    similar_url: str | None = Field(default=None, description="Stored images most like this one (needs an embedding).")
    credit: CreditOut | None = Field(default=None, description="Archive credit when the file name is a known id.")
    created_at: dt.datetime | None = None
    feedback: list[FeedbackOut] = []

    @classmethod
    def of(
        cls,
        row: Classification,
        *,
        credit: Credit | None,
        low_confidence_below: float,
        with_feedback: bool = False,
        already_stored: bool = False,
    ) -> ClassificationOut:
        """A stored record as the API shows it; ``low_confidence_below`` is the server's threshold."""
        return cls(
            id=row.id,
            file=row.filename,
            label=row.label,
            confidence=row.confidence,
            probabilities=row.probabilities,
            model=row.model_name,
            model_version=row.model_version,
            tta=row.tta,
            low_confidence=row.confidence < low_confidence_below,
            anomaly_score=row.anomaly_score,
            unusual=row.unusual,
            tags=row.tags or {},
            interesting=row.marks[-1].interesting if row.marks else None,
            similar_url=f"/api/classifications/{row.id}/similar" if row.embedding is not None else None,
            corrected_label=row.feedback[-1].label if row.feedback else None,
            already_stored=already_stored,
            explanation_url=f"/api/classifications/{row.id}/explanation.png",
            image_url=f"/api/classifications/{row.id}/image",
            credit=CreditOut(**dataclasses.asdict(credit)) if credit else None,
            created_at=row.created_at,
            feedback=[FeedbackOut(label=f.label, comment=f.comment, created_at=f.created_at) for f in row.feedback]
            if with_feedback
            else [],
        )


class ClassificationPage(BaseModel):
    items: list[ClassificationOut]
    total: int
    page: int
    per_page: int


class FeedbackIn(BaseModel):
    label: str = Field(min_length=1, max_length=64)
    comment: str = Field(default="", max_length=2000)


class ModelInfo(BaseModel):
    name: str
    version: str
    arch: str
    labels: list[str]
    image_size: int
    temperature: float
    tta: str = Field(description="Test-time augmentation this server applies with this model.")
    explainable: bool = Field(description="Whether the model returns Grad-CAM maps.")
    default: bool = Field(description="Used when a request names no model.")
    metrics: dict


class BatchItem(BaseModel):
    file: str
    result: ClassificationOut | None = None
    error: str | None = None


class BatchResult(BaseModel):
    items: list[BatchItem]
    classified: int
    failed: int


class NeighbourOut(BaseModel):
    id: int
    file: str
    label: str
    confidence: float
    anomaly_score: float | None
    interesting: bool | None
    distance: float = Field(description="Euclidean distance between compact embeddings (smaller: more alike).")
    image_url: str
    corrected: str | None = Field(None, description="The newest correction a person made; it outranks `label`.")

    @classmethod
    def of(cls, n: Neighbour) -> NeighbourOut:
        return cls(
            id=n.id,
            file=n.filename,
            label=n.label,
            confidence=n.confidence,
            anomaly_score=n.anomaly_score,
            interesting=n.interesting,
            distance=n.distance,
            image_url=f"/api/classifications/{n.id}/image",
            corrected=n.corrected,
        )


class SimilarOut(BaseModel):
    query: str
    detector: str = Field(description="Id of the embedding space compared in.")
    items: list[NeighbourOut]


class MarkIn(BaseModel):
    interesting: bool = Field(description="True: interesting; false: not (boring).")


class MarkOut(BaseModel):
    id: int
    classification_id: int
    interesting: bool
    owner: str | None
    created_at: dt.datetime | None


class RankedOut(BaseModel):
    id: int
    file: str
    label: str
    confidence: float
    anomaly_score: float
    score: float = Field(description="The anomaly score re-learned from people's marks, in [0, 1].")
    interesting: bool | None
    source: str
    image_url: str
    neighbours: list[NeighbourOut]

    @classmethod
    def of(cls, r: Ranked) -> RankedOut:
        return cls(
            id=r.id,
            file=r.filename,
            label=r.label,
            confidence=r.confidence,
            anomaly_score=r.anomaly_score,
            score=r.score,
            interesting=r.interesting,
            source=r.source,
            image_url=f"/api/classifications/{r.id}/image",
            neighbours=[NeighbourOut.of(n) for n in r.neighbours],
        )


class RankingOut(BaseModel):
    items: list[RankedOut]
    total: int
    marked: int
    interesting: int
    detector: str
    updating: bool = Field(
        default=False,
        description="True while the ranking is re-learned from newer marks in the background (large collections); "
        "marked images already sort to either end.",
    )
