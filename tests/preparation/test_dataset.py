import pytest

from astroclassify.errors import DataError
from astroclassify.preparation.dataset import check_dataset, load_dataset
from tests.conftest import make_sky, write_image


def _manifest(root, text):
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.csv").write_text(text)
    return root


def test_manifest_problems_are_listed_not_raised(tmp_path):
    root = tmp_path / "ds"
    write_image(root / "a.png", make_sky("galaxy"))
    write_image(root / "b.png", make_sky("nebula"))
    _manifest(
        root,
        "file,label,note\na.png,galaxy,x\nb.png,nebula,y\nmissing.png,galaxy,z\na.png,galaxy,dup\n,galaxy,\nb.png,,\n../outside.png,galaxy,\n",
    )
    ds = load_dataset(root)
    assert [s.label for s in ds.samples] == ["galaxy", "nebula"]
    assert ds.extra_columns == ["note"]
    assert ds.samples[0].meta["note"] == "x"
    text = "\n".join(ds.problems)
    for expected in (
        "missing.png: file not found",
        "duplicate row",
        "empty 'file'",
        "empty 'label'",
        "leaves the dataset folder",
    ):
        assert expected in text


def test_wrong_columns_and_bad_csv(tmp_path):
    with pytest.raises(DataError, match="missing column.*label"):
        load_dataset(_manifest(tmp_path / "a", "path,class\nx.png,galaxy\n"))
    bad = tmp_path / "b"
    bad.mkdir()
    (bad / "manifest.csv").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DataError):
        load_dataset(bad)
    with pytest.raises(DataError, match="not found"):
        load_dataset(tmp_path / "nothing")


def test_folder_per_label_layout(tmp_path):
    write_image(tmp_path / "galaxy" / "g1.png", make_sky("galaxy"))
    write_image(tmp_path / "nebula" / "n1.jpg", make_sky("nebula"), "JPEG")
    (tmp_path / "nebula" / "readme.txt").write_text("notes")
    ds = load_dataset(tmp_path)
    assert ds.class_counts() == {"galaxy": 1, "nebula": 1}
    assert any("readme.txt" in p for p in ds.problems)


def test_check_finds_corrupt_checksum_duplicate_and_unknown_label(tmp_path):
    root = tmp_path / "ds"
    write_image(root / "a.png", make_sky("galaxy"))
    (root / "b.png").write_bytes((root / "a.png").read_bytes())
    (root / "c.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    _manifest(root, "file,label,sha256\na.png,galaxy,\nb.png,nebula,deadbeef\nc.png,star,\n")
    report = check_dataset(root, labels={"galaxy", "nebula"})
    text = "\n".join(report.errors)
    assert not report.ok
    assert "SHA-256 mismatch" in text
    assert "unknown label 'star'" in text
    assert "c.png: PNG data is truncated or corrupt" in text
    assert any("same bytes as a.png" in w for w in report.warnings)


def test_check_real_hubble_dso_is_clean(shared_data):
    report = check_dataset(shared_data / "hubble-dso", decode=False)
    assert report.ok, report.errors
    assert report.dataset.class_counts() == {"galaxy": 189, "nebula": 182}


def test_fraction_columns_and_tags_are_soft_labels(tmp_path):
    """Galaxy Zoo vote fractions (``*_fraction``) and ``;``-separated tags load per image; a blank is no answer."""
    from tests.conftest import make_sky, write_image

    for i in range(4):
        write_image(tmp_path / f"{i}.png", make_sky("galaxy", seed=i))
    (tmp_path / "manifest.csv").write_text(
        "file,label,ring_fraction,bar_fraction,tags,sha256\n"
        "0.png,ring,0.9,0.1,merger;dust,\n"
        "1.png,other,0.05,,dust,\n"
        "2.png,other,1.7,0.5,,\n"
        "3.png,other,abc,nan,,\n"
    )
    ds = load_dataset(tmp_path)
    assert ds.tag_names == ["bar", "dust", "merger", "ring"]
    assert ds.extra_columns == []  # sha256 is verified, fractions and tags are labels: none is "extra"
    by_file = {s.meta["file"]: s.targets for s in ds.samples}
    assert by_file["0.png"] == {"ring": 0.9, "bar": 0.1, "dust": 1.0, "merger": 1.0}
    assert by_file["1.png"] == {"ring": 0.05, "dust": 1.0, "merger": 0.0}  # no bar vote: left out, not 0
    assert by_file["2.png"] == {"bar": 0.5, "dust": 0.0, "merger": 0.0}
    assert by_file["3.png"] == {"dust": 0.0, "merger": 0.0}
    assert ds.problems == [
        "line 4: 2.png: ring_fraction is '1.7', not a fraction in [0, 1]; left out",
        "line 5: 3.png: ring_fraction is 'abc', not a fraction in [0, 1]; left out",
    ]
    assert len(ds.samples) == 4  # the hard labels are still used


def test_the_rings_collection_carries_its_vote_fractions(shared_data):
    ds = load_dataset(shared_data / "gz-decals-rings")
    assert ds.tag_names == ["featured_or_disk", "no_spiral_arms", "not_edge_on"] and ds.extra_columns == ["iauname"]
    assert all(0 <= v <= 1 for s in ds.samples for v in s.targets.values())
    report = check_dataset(shared_data / "gz-decals-rings", decode=False)
    assert report.ok and not any("sha256" in w for w in report.warnings)


def test_a_manifest_is_refused_while_it_is_read_not_after(tmp_path):
    """200k columns (1.5 MB) took `data check` to 5.7 GB; 5M rows 2.6 GB; a 20M-field header hung."""
    import time

    import pytest

    from astroclassify.errors import DataError
    from astroclassify.preparation.dataset import check_dataset

    def folder(name: str, text: str):
        root = tmp_path / name
        root.mkdir()
        (root / "manifest.csv").write_text(text)
        return root

    wide = folder("wide", "file,label," + ",".join(f"c{i}" for i in range(120_000)) + "\n" + "a.png,x\n" * 2000)
    started = time.monotonic()
    with pytest.raises(DataError, match="120,002 columns, over the 1,000"):
        check_dataset(wide)
    long_line = folder("long", "file,label" + "," * 20_000_000 + "\n")
    with pytest.raises(DataError, match="a line over 1,048,576 characters"):
        check_dataset(long_line)
    tall = folder("tall", "file,label\n" + "a.png,x\n" * 1_000_001)
    with pytest.raises(DataError, match="over 1,000,000 rows of 2 columns"):
        check_dataset(tall)
    cells = folder("cells", ",".join(["file", "label", *(f"c{i}" for i in range(998))]) + "\n" + "a.png,x\n" * 5001)
    with pytest.raises(DataError, match="over 5,000 rows of 1000 columns"):
        check_dataset(cells)
    assert time.monotonic() - started < 30
