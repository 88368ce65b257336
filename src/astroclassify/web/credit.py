"""The credit line shown next to a stored image: from its archive page if it was ingested, else its name."""

from __future__ import annotations

from astroclassify.credits import Credit, credit_for, ingested_credit
from astroclassify.store.archive import IngestedItems

__all__ = ["record_credit"]


def record_credit(session, row) -> Credit | None:
    item = IngestedItems(session).by_sha256(row.sha256)
    if item is not None and item.credit:
        return ingested_credit(item.source, item.key, item.credit, item.page_url, item.license)
    return credit_for(row.filename)
