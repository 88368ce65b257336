"""Look-alike search speed and recall over many stored embeddings (synthetic, clustered).

Compares exact NumPy search (what astroclassify uses up to ``EXACT_LIMIT`` images) with HNSW
in hnswlib, FAISS and USearch, all at M=16, ef_construction=100, ef_search=128. Embeddings
are 65 numbers (64 principal coordinates and the residual).

    python bench/similarity.py                 # 100k and 1M vectors
    python bench/similarity.py --sizes 100000  # quicker
    python bench/similarity.py --sizes 100000 --store   # also end to end through SQLite

Prints per library: build seconds, mean ms per single query (k=10), recall@10 against exact.
"""

from __future__ import annotations

import argparse
import importlib.util
import time

import numpy as np

from astroclassify.discovery.similarity import VectorIndex

DIM = 65
K = 10
QUERIES = 200


def vectors(n: int, seed: int = 0) -> np.ndarray:
    """Clustered points on a 16-dimensional subspace plus a little noise, like real embeddings.

    (Isotropic noise in all 65 dimensions makes every point of a cluster nearly equidistant,
    which no approximate index handles and no image collection looks like.)
    """
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(42).normal(size=(16, DIM)).astype(np.float32)  # the same for data and queries
    centres = np.random.default_rng(43).normal(size=(500, 16)).astype(np.float32) * 3
    latent = centres[rng.integers(0, 500, n)] + rng.normal(size=(n, 16)).astype(np.float32)
    return (latent @ basis + 0.1 * rng.normal(size=(n, DIM))).astype(np.float32)


def timed_queries(search, queries: np.ndarray) -> tuple[float, np.ndarray]:
    rows = []
    t = time.perf_counter()
    for q in queries:
        rows.append(search(q[None]))
    return (time.perf_counter() - t) / len(queries) * 1000, np.vstack(rows)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def through_the_store(n: int) -> None:
    """``similar_images`` end to end: n records with embeddings in SQLite, queries by record id."""
    import tempfile
    from pathlib import Path

    from sqlalchemy import insert

    from astroclassify.discovery.collection import similar_images
    from astroclassify.inference.predictor import OnnxPredictor
    from astroclassify.store import open_store
    from astroclassify.store.tables import Classification, Embedding

    predictor = OnnxPredictor("dso")
    detector = predictor.detector.meta["id"]  # type: ignore[union-attr]
    data = vectors(n).astype(np.float16)
    with tempfile.TemporaryDirectory() as home, open_store(Path(home)) as store:
        t = time.perf_counter()
        with store.session() as session:
            rows = [
                {"id": i + 1, "filename": f"{i}.jpg", "stored_name": f"{i:032x}.jpg", "sha256": f"{i:064x}",
                 "image_format": "JPEG", "label": "galaxy", "confidence": 0.9, "probabilities": {"galaxy": 0.9},
                 "model_name": "dso", "model_version": "1", "anomaly_score": 0.5, "unusual": False}
                for i in range(n)
            ]  # fmt: skip
            session.execute(insert(Classification), rows)
            session.execute(
                insert(Embedding),
                [{"classification_id": i + 1, "detector": detector, "vector": data[i].tobytes()} for i in range(n)],
            )
            session.commit()
        print(f"n={n:>9,}  stored in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        similar_images(store, 1, predictor, k=K)
        print(f"n={n:>9,}  similar_images, first query (reads every embedding): {time.perf_counter() - t:.2f} s")
        t = time.perf_counter()
        for i in range(2, 52):
            similar_images(store, i, predictor, k=K)
        print(f"n={n:>9,}  similar_images, later queries: {(time.perf_counter() - t) / 50 * 1000:.1f} ms each")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--store", action="store_true", help="also time similar_images over a SQLite store")
    args = parser.parse_args()
    if args.store:
        through_the_store(args.sizes[0])
    for n in args.sizes:
        data = vectors(n)
        queries = vectors(QUERIES, seed=1)
        t = time.perf_counter()
        exact = VectorIndex.build(data, exact=True)
        build = time.perf_counter() - t
        ms, truth = timed_queries(lambda q, index=exact: index.search(q, K)[0], queries)
        print(f"n={n:>9,}  numpy exact     build {build:6.1f} s  {ms:7.2f} ms/query  recall@10 1.000")
        for name, make in LIBRARIES.items():
            if importlib.util.find_spec(name.split()[0]) is None:
                print(f"n={n:>9,}  {name:15s} not installed")
                continue
            t = time.perf_counter()
            search = make(data)
            build = time.perf_counter() - t
            ms, found = timed_queries(search, queries)
            print(
                f"n={n:>9,}  {name:15s} build {build:6.1f} s  {ms:7.2f} ms/query  recall@10 {recall(found, truth):.3f}"
            )
    print(
        "command: python bench/similarity.py --sizes "
        + " ".join(map(str, args.sizes))
        + (" --store" if args.store else "")
    )


def _hnswlib(data: np.ndarray):
    index = VectorIndex.build(data, exact=False)  # what astroclassify uses past EXACT_LIMIT
    return lambda q: index.search(q, K)[0]


def _faiss(data: np.ndarray):
    import faiss

    index = faiss.IndexHNSWFlat(DIM, 16)
    index.hnsw.efConstruction = 100
    index.add(data)
    index.hnsw.efSearch = 128
    return lambda q: index.search(q, K)[1]


def _usearch(data: np.ndarray):
    from usearch.index import Index

    index = Index(ndim=DIM, metric="l2sq", connectivity=16, expansion_add=100, expansion_search=128)
    index.add(np.arange(len(data)), data)
    return lambda q: index.search(q, K).keys.reshape(1, -1)


LIBRARIES = {"hnswlib": _hnswlib, "faiss": _faiss, "usearch": _usearch}


if __name__ == "__main__":
    main()
