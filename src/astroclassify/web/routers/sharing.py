"""Labels shared with other installations: the contributions page peers pull, and each contribution's image.

Reading them takes a peer key even on loopback: sharing labels is a deliberate act between
installations (``astroclassify keys create PEER --peer`` on this side, ``sync --key`` on
theirs). ``RequestGuard`` refuses other keys here (403) and peer keys everywhere else.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.responses import FileResponse

from astroclassify.errors import RecordNotFoundError
from astroclassify.sharing.contributions import PAGE_LIMIT, contribution_image, contributions_page
from astroclassify.store.images import MEDIA_TYPES
from astroclassify.web.deps import CurrentUser, StoreDep, known_query_only

__all__ = ["router"]

router = APIRouter(prefix="/api/contributions", tags=["sharing"], dependencies=[Depends(known_query_only)])


def _peer(owner: str | None) -> None:
    if owner is None:
        raise HTTPException(401, "contributions are shared with API keys only: send one in the X-API-Key header")


@router.get("")
def list_contributions(
    store: StoreDep,
    owner: CurrentUser,
    since: Annotated[int, Query(ge=0, le=2**62, description="Cursor: the last `seq` you took.")] = 0,
    limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT)] = 100,
) -> dict:
    """Labels made here and received from others, after ``since``, oldest first, with provenance."""
    _peer(owner)
    return contributions_page(store, since, limit)


@router.get("/{uid}/image")
def contribution_file(
    store: StoreDep, owner: CurrentUser, uid: Annotated[str, Path(max_length=96, pattern=r"^[A-Za-z0-9._:-]+$")]
) -> FileResponse:
    """The image a contribution labels, as its contributor sent it."""
    _peer(owner)
    try:
        path, fmt = contribution_image(store, uid)
    except RecordNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    return FileResponse(path, media_type=MEDIA_TYPES.get(fmt, "application/octet-stream"))
