"""``/health``: for load balancers and monitors; answers as soon as the default model is loaded."""

from __future__ import annotations

from fastapi import APIRouter

from astroclassify.web.deps import PoolDep

router = APIRouter(tags=["health"])


@router.get("/health")
def health(pool: PoolDep) -> dict:
    return {"status": "ok", "model": pool.default}
