"""Votes per image: one per contributor, weighted by skill on gold images, gold wins."""

import datetime as dt

from astroclassify.sharing.votes import aggregate_votes, contributor_weights
from astroclassify.store import open_store
from astroclassify.store.tables import Contribution


def _vote(uid, who, image, answer, minute=0, via="local"):
    return Contribution(
        uid=uid, origin="x", contributor=f"x/{who}", question="class", answer=answer,
        image_sha256=f"bytes-{image}", pixels_sha256=f"pixels-{image}", stored_name=f"{image}.png",
        image_format="PNG", licence="", credit="", made_at=dt.datetime(2026, 12, 1, 10, minute, tzinfo=dt.UTC), via=via,
    )  # fmt: skip


def test_skill_on_gold_weighs_votes_and_a_flood_counts_once(tmp_path):
    """Two people of this installation: each votes with their own skill."""
    with open_store(tmp_path / "home") as store:
        with store.session() as session:
            session.add_all(
                [
                    _vote("1", "good", "i1", "galaxy"), _vote("2", "good", "i2", "nebula"), _vote("3", "good", "i3", "galaxy"),
                    _vote("4", "bad", "i1", "nebula"), _vote("5", "bad", "i2", "galaxy"), _vote("6", "bad", "i3", "galaxy"),
                    _vote("7", "bad", "i3", "nebula", minute=5),  # changed their mind: the latest counts, once
                ]
            )  # fmt: skip
            session.commit()
        gold = {"bytes-i1": "galaxy", "bytes-i2": "nebula"}  # a model's gold set names files by their bytes
        votes = {v.pixels_sha256: v for v in aggregate_votes(store, gold=gold)}
        unweighted = {v.pixels_sha256: v for v in aggregate_votes(store)}
    i3 = votes["pixels-i3"]
    assert i3.counts == {"galaxy": 1, "nebula": 1} and i3.contributors == 2
    assert i3.fractions == {"galaxy": 0.75, "nebula": 0.25} and i3.consensus == "galaxy"  # 3/4 against 1/4
    tie = unweighted["pixels-i3"]
    assert tie.fractions == {"galaxy": 0.5, "nebula": 0.5}  # no gold: equal weights
    assert tie.consensus == "" and tie.agreement == 0.5  # a tie has no consensus (not the first name)
    assert votes["pixels-i2"].consensus == "nebula" and votes["pixels-i2"].gold == "nebula"
    weights = contributor_weights({("a", "p"): "x", ("b", "p"): "y", ("c", "q"): "x"}, {"a": "x", "b": "x"})
    assert weights == {"p": 0.5, "q": 0.5}  # p: 1 of 2 right -> (1+1)/(2+2); q: never checked -> prior


def test_a_peer_weighs_as_one_installation_with_its_record_on_gold(tmp_path):
    """Ten of one peer's contributors on an image are one vote, weighted by how that peer's answers did on gold."""
    rows = []
    for k in range(10):  # peer A: right on both gold images, then all say galaxy on i3
        rows += [
            _vote(f"a{k}1", f"a{k}", "i1", "galaxy", via="http://a"),
            _vote(f"a{k}2", f"a{k}", "i2", "nebula", via="http://a"),
        ]
        rows.append(_vote(f"a{k}3", f"a{k}", "i3", "galaxy", via="http://a"))
    for k in range(30):  # peer B: thirty contributors, wrong on both gold images, all say nebula on i3
        rows += [
            _vote(f"b{k}1", f"b{k}", "i1", "nebula", via="http://b"),
            _vote(f"b{k}2", f"b{k}", "i2", "galaxy", via="http://b"),
        ]
        rows.append(_vote(f"b{k}3", f"b{k}", "i3", "nebula", via="http://b"))
    with open_store(tmp_path / "home") as store:
        with store.session() as session:
            session.add_all(rows)
            session.commit()
        votes = {v.pixels_sha256: v for v in aggregate_votes(store, gold={"bytes-i1": "galaxy", "bytes-i2": "nebula"})}
        blind = {v.pixels_sha256: v for v in aggregate_votes(store)}
    i3 = votes["pixels-i3"]
    assert i3.counts == {"galaxy": 10, "nebula": 30}
    assert i3.fractions == {"galaxy": 0.75, "nebula": 0.25} and i3.consensus == "galaxy"  # A: 3/4 on gold, B: 1/4
    assert blind["pixels-i3"].fractions == {"galaxy": 0.5, "nebula": 0.5}  # without gold: one installation each


def test_the_votes_command_prints_json_lines_names_files_and_says_when_nothing_is_disputed(tmp_path):
    import json

    from tests.conftest import run_cli

    env = {"ASTROCLASSIFY_HOME": str(tmp_path / "home")}
    assert run_cli("labels", "votes", env=env).stdout.strip() == "no votes yet"
    with open_store(tmp_path / "home") as store, store.session() as session:
        session.add_all([_vote("1", "ann", "i1", "galaxy"), _vote("2", "bob", "i1", "galaxy")])
        session.commit()
    quiet = run_cli("labels", "votes", "--disputed", env=env)
    assert quiet.returncode == 0 and quiet.stdout.strip() == "no disputed images"
    lines = run_cli("labels", "votes", "--json", env=env).stdout.splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["consensus"] == "galaxy"  # one image, one line
    table = run_cli("labels", "votes", env=env).stdout
    row = next(line for line in table.splitlines() if "i1.png" in line)
    assert "people" in table and row.split()[:2] == ["i1.png", "2"]  # the stored file, two people
