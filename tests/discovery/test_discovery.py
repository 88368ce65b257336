"""Discovery past the sizes answered in the request: background re-ranking, the PCA stand-in map, the graph."""

import time

import numpy as np
import pytest
from sqlalchemy import insert

from astroclassify.discovery import collection as discovery
from astroclassify.discovery.ranking import rerank
from astroclassify.inference.predictor import OnnxPredictor
from astroclassify.store import open_store
from astroclassify.store.tables import Classification, Embedding, Mark

N = 3000


@pytest.fixture
def big(tmp_path):
    """3,000 stored images and 300 marks, and a Discovery whose thresholds put all of it in the background."""
    predictor = OnnxPredictor("dso")
    detector = predictor.detector.meta["id"]
    rng = np.random.default_rng(0)
    vectors = (rng.normal(size=(N, 65)) + rng.integers(0, 5, size=(N, 1)) * 3).astype(np.float16)
    scores = rng.random(N)
    with open_store(tmp_path) as store:
        with store.session() as session:
            session.execute(
                insert(Classification),
                [
                    {"id": i + 1, "filename": f"{i}.jpg", "stored_name": f"{i:032x}.jpg", "sha256": f"{i:064x}",
                     "image_format": "JPEG", "label": "galaxy", "confidence": 0.9, "probabilities": {"galaxy": 0.9},
                     "model_name": "dso", "model_version": "1", "anomaly_score": float(scores[i]), "unusual": False}
                    for i in range(N)
                ],
            )  # fmt: skip
            session.execute(
                insert(Embedding),
                [{"classification_id": i + 1, "detector": detector, "vector": vectors[i].tobytes()} for i in range(N)],
            )
            marked = rng.choice(N, size=300, replace=False)
            session.execute(
                insert(Mark), [{"classification_id": int(c) + 1, "interesting": bool(c % 4 == 0)} for c in marked]
            )
            session.commit()
        d = discovery.Discovery(store, sync_rank_pairs=10_000, sync_map_points=50, graph_from=1000)
        yield d, predictor, vectors, scores, {int(c): bool(c % 4 == 0) for c in marked}


def _until(check, seconds: float = 60):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError("the background job did not finish")


def test_a_large_ranking_is_learned_in_the_background_and_matches_rerank(big):
    d, predictor, vectors, scores, marks = big
    first = d.ranking(predictor, limit=N, neighbours=0)
    assert first.updating and first.total == N and first.marked == 300
    order = [i.id for i in first.items]
    interesting = {c + 1 for c, v in marks.items() if v}
    boring = {c + 1 for c, v in marks.items() if not v}
    assert set(order[: len(interesting)]) == interesting and set(order[-len(boring) :]) == boring  # ends, at once
    learned = _until(lambda: (r := d.ranking(predictor, limit=N, neighbours=0)).updating is False and r)
    expected = rerank(vectors.astype(np.float32), scores, marks)
    got = np.zeros(N)
    for item in learned.items:
        got[item.id - 1] = item.score
    assert np.abs(got - expected).max() < 1e-9  # the same scores as re-ranking from scratch
    discovery.mark_image(d.store, 2, True)  # one more mark: cheap, answered in the request
    again = d.ranking(predictor, limit=5, neighbours=3)
    assert not again.updating and again.items[0].interesting is not None and len(again.items[0].neighbours) == 3


@pytest.mark.slow
def test_a_large_map_stands_in_with_pca_until_the_t_sne_is_ready(big, monkeypatch):
    from astroclassify.discovery import layout

    monkeypatch.setattr(layout, "LAYOUT_POINTS", 600)  # t-SNE on fewer images: the same path, a third of the wait
    d, predictor, *_ = big
    points, method = d.map(predictor, limit=500)
    assert method == "pca" and len(points) == 500
    assert all(0 <= p.x <= 1 and 0 <= p.y <= 1 for p in points)
    marked = {p.id for p in points if p.interesting is not None}
    assert len(marked) == 300  # every marked image is on the map, then a sample
    points, method = _until(lambda: (m := d.map(predictor, limit=500))[1] == "tsne" and m, 120)
    assert len(points) == 500


def test_look_alikes_come_from_a_graph_built_in_the_background(big):
    d, predictor, *_ = big
    exact = d.similar(10, predictor, k=10)
    _until(lambda: d.indexes and all(not i.index.exact for i in d.indexes.values()))
    graph = d.similar(10, predictor, k=10)
    assert len(graph.hits) == 10
    assert len({h.id for h in graph.hits} & {h.id for h in exact.hits}) >= 9  # recall of the graph


def test_reading_the_collection_searches_archive_items_by_index(tmp_path):
    """Without the index of migration 0004, SQLite scanned every archive item per embedding (79 s at 100k x 10k)."""
    from sqlalchemy import text

    from astroclassify.store.discovery import DiscoveryRows

    with open_store(tmp_path) as store, store.session() as session:
        sql = str(DiscoveryRows.embeddings_query("d", 0).compile(compile_kwargs={"literal_binds": True}))
        plan = " ".join(str(row[-1]) for row in session.execute(text("EXPLAIN QUERY PLAN " + sql)))
    assert "SCAN ingested_items" not in plan and "ix_ingested_items_classification_id" in plan


def test_a_map_of_two_or_three_images_spreads_them_apart_inside_the_frame():
    """They were all drawn at the centre, on top of one another (t-SNE needs four or more)."""
    from astroclassify.discovery.layout import layout

    vectors = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]], np.float32)
    for n in (2, 3):
        rows, xy = layout(vectors[:n])
        assert list(rows) == list(range(n)) and len({tuple(np.round(p, 3)) for p in xy}) == n
        assert xy.min() >= 0.25 and xy.max() <= 0.75  # away from the edges
    assert layout(vectors[:1])[1].tolist() == [[0.5, 0.5]]
