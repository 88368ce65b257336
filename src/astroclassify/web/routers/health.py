"""``/health``: for load balancers and monitors; answers as soon as the default model is loaded."""

from __future__ import annotations

from fastapi import APIRouter

from astroclassify.web.deps import PoolDep

router = APIRouter(tags=["health"])


@router.get("/health")
def health(pool: PoolDep) -> dict:
    """``ok``, or ``degraded`` with the models that cannot be served (the others serve on)."""
    broken = pool.broken()
    return {"status": "degraded" if broken else "ok", "model": pool.default} | ({"broken": broken} if broken else {})
