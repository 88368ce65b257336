"""JSON API for discovery: look-alikes, marks, the re-learned anomaly ranking and its map."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Query
from fastapi.responses import FileResponse, JSONResponse

from astroclassify.discovery.collection import (
    MAP_POINTS,
    MapPoint,
    export_marks,
    mark_image,
)
from astroclassify.web.deps import CurrentUser, DiscoveryDep, QueriedModelDep, RecordId, StoreDep, known_query_only
from astroclassify.web.downloads import dataset_zip
from astroclassify.web.schemas import (
    MarkIn,
    MarkOut,
    NeighbourOut,
    RankedOut,
    RankingOut,
    SimilarOut,
)

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["discovery"], dependencies=[Depends(known_query_only)])


@router.get("/classifications/{record_id}/similar", response_model=SimilarOut)
def similar(
    discovery: DiscoveryDep,
    served: QueriedModelDep,
    owner: CurrentUser,
    record_id: RecordId,
    k: Annotated[int, Query(ge=1, le=100)] = 12,
) -> SimilarOut:
    """Stored images most like this one (nearest compact embeddings), nearest first."""
    result = discovery.similar(record_id, served.predictor, k=k, owner=owner)
    return SimilarOut(query=result.query, detector=result.detector, items=[NeighbourOut.of(h) for h in result.hits])


@router.post("/classifications/{record_id}/mark", response_model=MarkOut)
def mark(store: StoreDep, owner: CurrentUser, record_id: RecordId, body: MarkIn) -> MarkOut:
    """Mark an image interesting or not; earlier marks are kept, the newest counts."""
    m = mark_image(store, record_id, body.interesting, owner=owner)
    return MarkOut(
        id=m.id,
        classification_id=m.classification_id,
        interesting=m.interesting,
        owner=m.owner,
        created_at=m.created_at,
    )


@router.get("/anomalies", response_model=RankingOut)
def anomalies(
    discovery: DiscoveryDep,
    served: QueriedModelDep,
    owner: CurrentUser,
    label: Annotated[str | None, Query(max_length=64)] = None,
    source: Annotated[str | None, Query(max_length=32, description="upload, apod, esahubble, ...")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    neighbours: Annotated[int, Query(ge=0, le=12)] = 4,
) -> RankingOut:
    """Stored images, most interesting first: the anomaly score re-learned from every mark."""
    r = discovery.ranking(
        served.predictor,
        label=label or None,
        source=source or None,
        limit=limit,
        offset=offset,
        neighbours=neighbours,
        owner=owner,
    )
    items = [RankedOut.of(i) for i in r.items]
    return RankingOut(
        items=items,
        total=r.total,
        marked=r.marked,
        interesting=r.interesting,
        detector=r.detector,
        updating=r.updating,
    )


@router.get("/anomalies/map", response_model=list[MapPoint])
def anomalies_map(
    discovery: DiscoveryDep,
    served: QueriedModelDep,
    owner: CurrentUser,
    limit: Annotated[int, Query(ge=1, le=20_000, description="Most points returned: marked ones, then a sample.")] = (
        MAP_POINTS
    ),
) -> list[MapPoint]:
    """Stored images on a 2-D map of the embeddings (x and y in [0, 1]).

    The ``X-Map-Layout`` header says how: ``tsne``, or ``pca`` while the t-SNE of a large
    collection is computed in the background.
    """
    points, method = discovery.map(served.predictor, owner=owner, limit=limit)
    # Plain dicts straight to JSON: validating thousands of points cost more than finding them.
    return JSONResponse([p.to_dict() for p in points], headers={"X-Map-Layout": method})  # type: ignore[return-value]


@router.get("/marks/export", response_class=FileResponse, responses={200: {"content": {"application/zip": {}}}})
def export(store: StoreDep, owner: CurrentUser, background: BackgroundTasks) -> FileResponse:
    """Marked images as a zip of a dataset folder (label: interesting or boring; who and when)."""
    return dataset_zip(background, "marks", lambda out: export_marks(store, out, owner=owner))
