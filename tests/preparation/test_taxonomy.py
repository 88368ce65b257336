"""Taxonomies: built-in YAML files, user files, and what bad files say."""

import csv
from collections import Counter

import pytest

from astroclassify.errors import ConfigError, UnknownNameError
from astroclassify.preparation.dataset import load_dataset
from astroclassify.preparation.taxonomy import builtin_taxonomies, load_taxonomy


def test_builtins_load_and_gz1_maps_every_label(shared_data):
    assert {"gz1-6class", "gz1-coarse", "gz1-disk", "seed-hubble4"} <= set(builtin_taxonomies())
    lines = (shared_data / "gz1-sdss/manifest.csv").read_text().splitlines()
    raw = Counter(r["label"] for r in csv.DictReader(lines))
    samples = load_dataset(shared_data / "gz1-sdss").samples
    six, left = load_taxonomy("gz1-6class").apply(samples)
    assert not left and Counter(s.label for s in six) == raw
    coarse, left = load_taxonomy("gz1-coarse").apply(samples)
    assert left == {"dont_know": raw["dont_know"]}  # left out and counted, never relabelled
    counts = Counter(s.label for s in coarse)
    assert counts["spiral"] == raw["spiral_cw"] + raw["spiral_acw"]
    assert coarse[0].meta["source_label"] in raw
    seed, _ = load_taxonomy("seed-hubble4").apply(samples)
    assert Counter(s.label for s in seed)["irregular"] == raw["merger"]


def test_a_label_that_names_a_class_is_that_class():
    t = load_taxonomy("gz1-coarse")
    assert t.map_label("spiral_cw") == "spiral" and t.map_label("spiral") == "spiral"  # a correction, say
    assert t.map_label("dont_know") is None  # left out, as the taxonomy says


def test_mirror_index_swaps_only_chiral_classes():
    t = load_taxonomy("gz1-6class")
    labels = t.labels
    swapped = [labels[i] for i in t.mirror_index(labels)]
    assert swapped == [{"spiral_cw": "spiral_acw", "spiral_acw": "spiral_cw"}.get(x, x) for x in labels]
    assert t.mirror_index(["elliptical", "spiral_cw"]) == [0, 1]  # a mirror class absent from the data


def test_user_yaml_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("classes:\n  round: [elliptical]\n  flat: [spiral_cw, spiral_acw, edge_on]\n")
    t = load_taxonomy(path)
    assert t.name == "mine" and t.labels == ["flat", "round"] and t.map_label("edge_on") == "flat"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("classes: [a, b]", "needs a 'classes' mapping"),
        ("classes:\n  a: [x]\n  b: [x]\n", "maps to both"),
        ("classes:\n  a: [x]\n  b: [y]\nmirror:\n  a: b\n", "must be symmetric"),
        ("classes:\n  a: [x]\nmirror:\n  a: zzz\n", "does not define"),
        ("classes: {a: [x\n", "not valid YAML"),
    ],
)
def test_bad_taxonomy_files_say_what_is_wrong(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_taxonomy(path)


def test_unknown_name_lists_the_builtins():
    with pytest.raises(UnknownNameError, match="built-in: galaxy-type, gz1-6class"):
        load_taxonomy("gz2")


def test_galaxy_type_takes_each_source_by_its_label_column_or_vote_fractions(shared_data):
    """Hubble types from four sources: archive folders, a catalogue column, GZ1 labels, DECaLS votes."""
    t = load_taxonomy("galaxy-type")
    counts = {}
    for name in ("hubble-galaxy-types", "stellarium-dso", "gz1-sdss", "gz-decals-rings"):
        kept, left = t.apply(load_dataset(shared_data / name).samples)
        counts[name] = Counter(s.label for s in kept)
        if name == "stellarium-dso":
            assert set(left) == {"nebula", "star_cluster"}  # its galaxies all map, by catalogue type
    assert counts["stellarium-dso"] == {"spiral": 66, "irregular": 22, "elliptical": 11, "lenticular": 6}
    assert counts["gz1-sdss"]["irregular"] > 0 and "lenticular" not in counts["gz1-sdss"]
    assert set(counts["gz-decals-rings"]) == {"lenticular"}  # face-on disks without arms, by their votes
    assert sum(c["lenticular"] for c in counts.values()) == 111


def test_conditions_on_manifest_columns(tmp_path):
    from astroclassify.preparation.dataset import Sample

    path = tmp_path / "t.yaml"
    path.write_text("classes:\n  disk: ['disk_fraction>=0.6&arms<=0.2', 'type=S0']\n  blob: [blob]\n")
    t = load_taxonomy(path)
    rows = [
        ({"disk_fraction": "0.7", "arms": "0.1"}, "x", "disk"),
        ({"disk_fraction": "0.7", "arms": "0.5"}, "x", None),  # one condition fails
        ({"disk_fraction": "", "arms": "0.1"}, "x", None),  # no answer is not 0
        ({"type": "S0"}, "x", "disk"),
        ({"type": "S0"}, "blob", "disk"),  # a column that decides wins over the label
        ({}, "blob", "blob"),
    ]
    for meta, label, want in rows:
        assert t.map_sample(label, meta) == want, (meta, label)
    kept, left = t.apply([Sample(tmp_path / "a.png", "x", "d", {"type": "S0"}), Sample(tmp_path / "b.png", "x", "d")])
    assert [s.label for s in kept] == ["disk"] and left == {"x": 1}
    path.write_text("classes:\n  disk: ['disk_fraction>=lots']\n")
    with pytest.raises(ConfigError, match="compares with 'lots', not a number"):
        load_taxonomy(path)
