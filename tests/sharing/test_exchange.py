"""Collections in Galaxy Zoo's layout: export, import (idempotent), and what a hostile table cannot do."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from astroclassify.errors import DataError
from astroclassify.preparation.dataset import load_dataset
from astroclassify.sharing.exchange import export_collection, import_collection
from astroclassify.sharing.votes import aggregate_votes
from astroclassify.store import open_store
from tests.conftest import make_sky, write_image


def _collection(root, rows):
    root.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), root / "labels.parquet")
    return root


def test_votes_travel_as_galaxy_zoo_tables_and_back(tmp_path):
    src = tmp_path / "gz"
    write_image(src / "images/a.png", make_sky("galaxy", 64, 1))
    write_image(src / "images/b.png", make_sky("nebula", 64, 2))
    _collection(
        src,
        [
            {"id_str": "a", "file": "images/a.png", "class_galaxy": 3, "class_nebula": 1, "credit": "Zoo volunteers"},
            {"id_str": "b", "file": "images/b.png", "class_galaxy": 0, "class_nebula": 2, "credit": ""},
        ],
    )
    with open_store(tmp_path / "one") as store:
        first = import_collection(store, src)
        assert (first.images, first.votes, first.refused) == (2, 6, {})
        assert import_collection(store, src).votes == 0  # importing again adds no vote
        votes = sorted(aggregate_votes(store), key=lambda v: -v.contributors)
        assert votes[0].counts == {"galaxy": 3, "nebula": 1} and votes[0].fractions == {"galaxy": 0.75, "nebula": 0.25}
        assert votes[0].consensus == "galaxy" and votes[0].credits == ["Zoo volunteers"]
        out = export_collection(store, tmp_path / "out")
    table = pq.read_table(out.path / "labels.parquet").to_pylist()
    assert set(table[0]) >= {
        "id_str",
        "file",
        "class_galaxy",
        "class_galaxy_fraction",
        "class_nebula",
        "class_total-votes",
        "consensus",
        "agreement",
    }
    assert sorted((r["class_galaxy"], r["class_nebula"], r["class_total-votes"]) for r in table) == [
        (0, 2, 2),
        (3, 1, 4),
    ]
    ds = load_dataset(out.path)  # the export is a dataset train reads, the fractions as soft labels
    assert ds.labels == ["galaxy", "nebula"] and ds.tag_names == ["galaxy", "nebula"]
    with open_store(tmp_path / "two") as store:
        again = import_collection(store, out.path)
        assert again.votes == 6 and sorted(v.counts.get("galaxy", 0) for v in aggregate_votes(store)) == [0, 3]


def test_a_hostile_table_is_refused_row_by_row(tmp_path):
    outside = write_image(tmp_path / "outside.png", make_sky("galaxy", 64, 3))
    src = tmp_path / "bad"
    write_image(src / "ok.png", make_sky("galaxy", 64, 4))
    (src / "fake.png").parent.mkdir(parents=True, exist_ok=True)
    (src / "fake.png").write_bytes(b"GIF89a but not really")
    _collection(
        src,
        [
            {"file": "ok.png", "class_galaxy": 1, "class_nebula": 0},
            {"file": f"../{outside.name}", "class_galaxy": 1, "class_nebula": 0},  # outside its folder
            {"file": "fake.png", "class_galaxy": 1, "class_nebula": 0},  # not an image
            {"file": "ok.png", "class_galaxy": -5, "class_nebula": 0},  # a negative count
            {"file": "ok.png", "class_galaxy": 10**9, "class_nebula": 0},  # a flood in one cell
            {"file": "missing.png", "class_galaxy": 1, "class_nebula": 0},
        ],
    )
    with open_store(tmp_path / "home") as store:
        result = import_collection(store, src)
        assert result.votes == 1 and result.refused == {
            "file outside the collection's folder": 1,
            "not an image we accept": 1,
            "vote count not an integer in 0..10000": 2,
            "image file missing": 1,
        }
        (src / "labels.parquet").write_bytes(b"PAR1 damaged")
        with pytest.raises(DataError, match="not a readable Parquet table"):
            import_collection(store, src)


def test_an_import_reads_bounded_decodes_each_file_once_and_keeps_what_it_read(tmp_path):
    import time

    src = tmp_path / "big"
    write_image(src / "a.png", make_sky("galaxy", 64, 5))
    write_image(src / "b.png", make_sky("nebula", 64, 6))
    n = 60_000  # rows naming one image: decoded once, 50 votes at most, fractions kept
    table = pa.table(
        {"file": ["a.png"] * n, "class_galaxy": [30 + i % 5000 for i in range(n)], "class_nebula": [10] * n}
    )
    pq.write_table(table, src / "labels.parquet", row_group_size=20_000)
    with open_store(tmp_path / "home") as store:
        started = time.monotonic()
        result = import_collection(store, src)
        assert time.monotonic() - started < 30
        assert result.images == 1 and result.votes == 50 and result.rows == n
        assert result.refused == {"over 50 votes on one image from this collection": n - 11}
        (votes,) = aggregate_votes(store)
        assert votes.counts == {"galaxy": 40, "nebula": 10}  # the first rows' votes, up to 50
    single = tmp_path / "single"
    write_image(single / "a.png", make_sky("galaxy", 64, 5))
    pq.write_table(
        pa.table({"file": ["a.png"], "class_galaxy": [300], "class_nebula": [100]}), single / "labels.parquet"
    )
    with open_store(tmp_path / "scaled") as store:
        assert import_collection(store, single).votes == 50
        (votes,) = aggregate_votes(store)
        assert votes.counts == {"galaxy": 38, "nebula": 12}  # 300:100 scaled to 50 votes, fractions kept

    # A footer that declares more than an import takes is refused before a page is decoded.
    bomb = pa.table({"file": ["a.png" + " " * (4 * 2**20)], "class_galaxy": [1]})  # 4 MB that zstd makes 200 bytes
    pq.write_table(bomb, src / "labels.parquet", compression="zstd")
    assert (src / "labels.parquet").stat().st_size < 10_000
    with open_store(tmp_path / "home") as store:
        with pytest.raises(DataError, match="decodes to 4 MiB, over the 1 MiB limit"):
            import_collection(store, src, max_table_bytes=2**20)
        pq.write_table(pa.table({"file": ["a.png"] * 11, "class_galaxy": [1] * 11}), src / "labels.parquet")
        with pytest.raises(DataError, match="11 rows, over the 10 an import takes"):
            import_collection(store, src, max_rows=10)

    # Two row groups, the second damaged: the first group's votes are committed and kept.
    rows = {"file": ["b.png"] * 3000, "class_galaxy": [0] * 3000, "class_nebula": [1] * 3000}
    rows["file"][2500:] = [f"c{i}.png" for i in range(500)]
    pq.write_table(pa.table(rows), src / "labels.parquet", row_group_size=2000, compression="none")
    data = bytearray((src / "labels.parquet").read_bytes())
    meta = pq.ParquetFile(src / "labels.parquet").metadata
    second = meta.row_group(1).column(0)
    start = second.dictionary_page_offset or second.data_page_offset
    data[start : start + 12] = b"\xff" * 12  # its first page header no longer parses
    (src / "labels.parquet").write_bytes(bytes(data))
    with open_store(tmp_path / "home2") as store:
        with pytest.raises(DataError, match="kept what was read"):
            import_collection(store, src)
        (kept,) = aggregate_votes(store)
    assert kept.counts == {"nebula": 1}  # the first group's rows (one image) are kept


def test_a_dictionary_encoded_text_bomb_is_never_expanded(tmp_path):
    """40 credits of 1 MB named by 3,000 rows: 40 MB in the footer, 3 GB expanded (took 6.4 GB before)."""
    import subprocess
    import sys

    src = tmp_path / "gz"
    write_image(src / "a.png", make_sky("galaxy", 64, 1))
    big = pa.array([f"{i}" + "x" * 2**20 for i in range(40)])
    credit = pa.DictionaryArray.from_arrays(pa.array([i % 40 for i in range(3000)], pa.int32()), big)
    table = pa.table({"file": ["a.png"] * 3000, "class_galaxy": [1] * 3000, "credit": credit})
    pq.write_table(table, src / "labels.parquet", compression="zstd", dictionary_pagesize_limit=2**28)
    assert (src / "labels.parquet").stat().st_size < 100_000
    script = (
        "import sys, resource, pathlib\n"
        "from astroclassify.store import open_store\n"
        "from astroclassify.sharing.exchange import import_collection\n"
        "import pyarrow.parquet\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "with open_store(pathlib.Path(sys.argv[2])) as store:\n"
        "    r = import_collection(store, pathlib.Path(sys.argv[1]))\n"
        "print(r.votes, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(src), str(tmp_path / "home")], capture_output=True, text=True, check=True
    )
    votes, grew_mb = map(int, done.stdout.split())
    assert votes == 1 and grew_mb < 600, done.stdout  # the import's own growth, past the imports
    with open_store(tmp_path / "home") as store:
        (vote,) = aggregate_votes(store)
        assert len(vote.credits[0]) == 2000  # kept as stored: its first 2,000 characters


def test_a_column_of_the_wrong_type_is_refused_before_it_is_read(tmp_path):
    src = tmp_path / "gz"
    write_image(src / "a.png", make_sky("galaxy", 64, 1))
    nested = pa.table({"file": ["a.png"], "class_galaxy": [1], "credit": pa.array([["a" * 10] * 1000])})
    pq.write_table(nested, (src / "labels.parquet"))
    with open_store(tmp_path / "home") as store, pytest.raises(DataError, match="column 'credit' is list<"):
        import_collection(store, src)
