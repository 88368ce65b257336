from concurrent.futures import ThreadPoolExecutor

import pytest

from astroclassify.errors import StoreError
from astroclassify.store.classifications import ClassificationQuery, Classifications
from astroclassify.store.db import make_engine, make_sessionmaker
from astroclassify.store.images import save_image
from astroclassify.store.tables import Classification


def _row(i: int, label: str = "galaxy", confidence: float = 0.9, owner: str | None = None) -> Classification:
    return Classification(
        filename=f"img{i}.jpg",
        stored_name=f"{i:032x}.jpg",
        sha256="0" * 64,
        image_format="JPEG",
        label=label,
        confidence=confidence,
        probabilities={label: confidence},
        model_name="dso",
        model_version="1",
        owner=owner,
    )


@pytest.fixture()
def sessions(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    yield make_sessionmaker(engine)
    engine.dispose()


def test_add_get_search_and_paginate(sessions):
    with sessions() as s:
        repo = Classifications(s)
        for i in range(30):
            repo.add(_row(i, "galaxy" if i % 3 else "nebula", confidence=i / 30))
        rows, total = repo.search(ClassificationQuery(label="nebula"))
        assert total == 10 and all(r.label == "nebula" for r in rows)
        rows, total = repo.search(ClassificationQuery(min_confidence=0.5, sort="least_confident", per_page=5, page=2))
        assert total == 15 and [round(r.confidence, 3) for r in rows] == [round(i / 30, 3) for i in range(20, 25)]
        newest, _ = repo.search(ClassificationQuery(per_page=1))
        assert newest[0].filename == "img29.jpg"
        with pytest.raises(StoreError, match="unknown sort"):
            repo.search(ClassificationQuery(sort="random"))


def test_feedback_is_appended_never_overwritten(sessions):
    with sessions() as s:
        repo = Classifications(s)
        rec = repo.add(_row(1))
        repo.add_feedback(rec.id, "nebula", "dust lanes")
        repo.add_feedback(rec.id, "galaxy")
    with sessions() as s:  # a new session reads what was committed
        rec = Classifications(s).get(rec.id)
        assert [f.label for f in rec.feedback] == ["nebula", "galaxy"]
        assert rec.feedback[0].comment == "dust lanes"
        with pytest.raises(StoreError, match="not found"):
            Classifications(s).add_feedback(999, "galaxy")
        with pytest.raises(StoreError, match="non-empty"):
            Classifications(s).add_feedback(rec.id, "  ")


def test_owners_see_only_their_records(sessions):
    with sessions() as s:
        repo = Classifications(s)
        mine = repo.add(_row(1, owner="alice"))
        repo.add(_row(2, owner="bob"))
        assert repo.search(ClassificationQuery(owner="alice"))[1] == 1
        with pytest.raises(StoreError, match="not found"):
            repo.get(mine.id, owner="bob")


def test_concurrent_writers_lose_nothing(sessions):
    def write(worker: int) -> list[int]:
        ids = []
        for j in range(10):
            with sessions() as s:
                ids.append(Classifications(s).add(_row(worker * 100 + j)).id)
        return ids

    with ThreadPoolExecutor(20) as pool:
        ids = [i for chunk in pool.map(write, range(20)) for i in chunk]
    assert len(ids) == len(set(ids)) == 200
    with sessions() as s:
        assert Classifications(s).search(ClassificationQuery(per_page=1))[1] == 200


def test_saved_images_get_generated_names(tmp_path):
    name = save_image(b"\xff\xd8\xff data", "JPEG", tmp_path / "uploads")
    assert name.endswith(".jpg") and len(name) == 36
    assert (tmp_path / "uploads" / name).read_bytes() == b"\xff\xd8\xff data"
    assert [p.name for p in (tmp_path / "uploads").iterdir()] == [name]  # no temp files left
