"""A hostile peer, in process: claims checked not believed, sock puppets weigh as one, every limit of a sync."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import time
import tracemalloc

import httpx
import pytest
from PIL import Image

from astroclassify.errors import PeerError
from astroclassify.sharing.contributions import identify_image
from astroclassify.sharing.sync import peer_identity, sync
from astroclassify.sharing.votes import aggregate_votes
from astroclassify.store import open_store
from astroclassify.store.contributions import Contributions, Peers
from tests.conftest import make_sky


def png(seed: int, size: int = 48) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(make_sky("galaxy", size, seed=seed)).save(buf, format="PNG")
    return buf.getvalue()


def item(seq, data, *, origin="evil00", who="alice", answer="galaxy", uid=None, **over):
    identity = identify_image(data)
    return {
        "seq": seq,
        "uid": uid or f"{origin}-f{seq}",
        "origin": origin,
        "contributor": f"{origin}/{who}",
        "question": "class",
        "answer": answer,
        "image_sha256": identity.sha256,
        "pixels_sha256": identity.pixels_sha256,
        "image_format": "PNG",
        "licence": "CC0",
        "credit": "test",
        "made_at": "2026-12-01T10:00:00+00:00",
    } | over


class Body(httpx.SyncByteStream):
    """A body streamed as a network one is (httpx reads a plain ``content=`` eagerly, decoding it)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self):
        for i in range(0, len(self.data), 65536):
            yield self.data[i : i + 65536]


def answer(data: bytes | object, status: int = 200, **headers: str) -> httpx.Response:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return httpx.Response(status, stream=Body(raw), headers={k.replace("_", "-"): v for k, v in headers.items()})


class Peer:
    """An installation answering from memory: ``items`` and ``images`` by uid, or a raw ``page`` answer."""

    def __init__(self, items=(), images=None, *, page=None, delay=0.0):
        self.items, self.images, self.page, self.delay = list(items), dict(images or {}), page, delay

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/contributions":
            if self.page is not None:
                return self.page() if callable(self.page) else self.page
            since, limit = int(request.url.params["since"]), int(request.url.params["limit"])
            chosen = [it for it in self.items if it["seq"] > since][:limit]
            return answer({"items": chosen})
        time.sleep(self.delay)
        data = self.images.get(request.url.path.split("/")[3])
        return answer(data) if data is not None else answer(b"", 404)

    def sync(self, store, url="http://127.0.0.1:9", **kw):
        return sync(store, url, "k", transport=httpx.MockTransport(self), **kw)


def stored_items(home):
    with open_store(home) as store, store.session() as session:
        return [
            (c.uid, c.image_sha256, (store.images / c.stored_name).read_bytes()) for c in Contributions(session).all()
        ]


def test_a_claimed_digest_is_checked_against_the_bytes_not_believed(tmp_path):
    x, y = png(1), png(2)
    honest = Peer([item(1, x, origin="good01"), item(2, y, origin="good01")], {"good01-f1": x, "good01-f2": y})
    # The same pixels as x, claiming y's file digest: before, x's stored file was reused under y's name.
    forged = item(1, x, image_sha256=hashlib.sha256(y).hexdigest())
    hostile = Peer([forged], {"evil00-f1": x})
    with open_store(tmp_path) as store:
        assert honest.sync(store).received == 2
        result = hostile.sync(store, "http://127.0.0.2:9")
    assert result.refused == {"image bytes do not match their digest": 1} and result.received == 0
    for _, claimed, data in stored_items(tmp_path):
        assert hashlib.sha256(data).hexdigest() == claimed  # every stored claim is true of its file


def test_sock_puppets_and_what_a_peer_relays_weigh_as_one_installation(tmp_path):
    image = png(3)
    honest = Peer([item(1, image, origin="good01", answer="galaxy")], {"good01-f1": image})
    puppets = [item(i + 1, image, who=f"sock{i}", answer="nebula") for i in range(25)]
    # ... and relayed votes that claim third origins, dated in the far future to win "newest"
    puppets += [
        item(26 + i, image, origin=f"third{i}", answer="nebula", made_at="9999-12-31T00:00:00+00:00") for i in range(25)
    ]
    hostile = Peer(puppets, {p["uid"]: image for p in puppets})
    with open_store(tmp_path) as store:
        honest.sync(store, "http://127.0.0.2:9")
        assert hostile.sync(store, "http://localhost:9").received == 50
        (votes,) = aggregate_votes(store)
    assert votes.counts == {"galaxy": 1, "nebula": 50}
    assert votes.fractions == {"galaxy": 0.5, "nebula": 0.5}  # 50 of one peer weigh what one installation does
    assert votes.agreement <= 0.5  # no consensus over half: learn takes no label from it
    with open_store(tmp_path) as store, store.session() as session:
        assert max(c.made_at for c in Contributions(session).all()).year < 9999  # time order is ours


def test_aliases_of_one_peer_share_its_vote_cap(tmp_path):
    image = png(4)
    first = [item(i + 1, image, who=f"sock{i}", answer="nebula") for i in range(40)]
    second = [item(i + 1, image, who=f"puppet{i}", answer="nebula", uid=f"evil00-g{i}") for i in range(40)]
    images = {p["uid"]: image for p in first + second}
    assert peer_identity("http://localhost:9") == peer_identity("http://127.0.0.1:9/".rstrip("/"))
    with open_store(tmp_path) as store:
        a = Peer(first, images).sync(store, "http://localhost:9")
        b = Peer(second, images).sync(store, "http://127.0.0.1:9")
    assert a.received + b.received == 50
    assert b.refused == {"over 50 votes on one image from this peer (flood)": 30}


def test_newest_vote_per_contributor_is_the_one_we_received_last(tmp_path):
    image = png(5)
    items = [
        item(1, image, who="carol", answer="nebula", made_at="9999-12-31T00:00:00+00:00"),
        item(2, image, who="carol", answer="galaxy", made_at="2020-01-01T00:00:00+00:00"),
    ]
    with open_store(tmp_path) as store:
        Peer(items, {it["uid"]: image for it in items}).sync(store)
        (votes,) = aggregate_votes(store)
    assert votes.counts == {"galaxy": 1}


@pytest.mark.parametrize(
    "body, message",
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        ({"items": [{"seq": 10**30}]}, "seq is not an integer in 1..2**62"),
        (["not", "a", "page"], "not a JSON object"),
        ({"items": ["x"]}, "an item is not a JSON object"),
    ],
)
def test_a_page_that_is_no_page_stops_the_sync_with_one_line_recorded(tmp_path, body, message):
    with open_store(tmp_path) as store:
        with pytest.raises(PeerError, match=message.replace("*", r"\*")):
            Peer(page=lambda: answer(body)).sync(store)
        with store.session() as session:
            assert message in Peers(session).get("http://127.0.0.1:9").last_error


def test_a_whole_sync_has_a_deadline_and_a_byte_budget_and_then_resumes(tmp_path):
    items, images = [], {}
    for i in range(12):
        data = png(10 + i)
        items.append(item(i + 1, data))
        images[items[-1]["uid"]] = data
    slow = Peer(items, images, delay=0.25)
    with open_store(tmp_path) as store:
        started = time.monotonic()
        first = slow.sync(store, max_seconds=1.0)
        assert time.monotonic() - started < 3 and first.stopped == "deadline" and 1 <= first.received < 12
        second = Peer(items, images).sync(store, max_total_bytes=3 * len(images[items[0]["uid"]]))
        assert second.stopped == "byte budget" and 1 <= second.received <= 4
        rest = Peer(items, images).sync(store)
    assert rest.stopped == "" and first.received + second.received + rest.received == 12
    assert len(stored_items(tmp_path)) == 12


def test_a_stacked_gzip_page_is_refused_before_it_inflates(tmp_path):
    inner = gzip.compress(b"{" + b" " * (200 * 2**20) + b"}", 9)  # 200 MB of JSON in 200 KB, gzipped again
    bomb = gzip.compress(inner)
    with open_store(tmp_path) as store:
        tracemalloc.start()
        try:
            with pytest.raises(PeerError, match="Content-Encoding 'gzip, gzip' refused"):
                Peer(page=lambda: answer(bomb, content_encoding="gzip, gzip")).sync(store)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 32 * 2**20


def test_a_single_gzip_page_is_read_and_an_inflating_one_refused_at_the_page_cap(tmp_path):
    data = png(30)
    pages = iter([answer(gzip.compress(json.dumps({"items": [item(1, data)]}).encode()), content_encoding="gzip")])
    with open_store(tmp_path) as store:
        peer = Peer(images={"evil00-f1": data}, page=lambda: next(pages, answer({"items": []})))
        assert peer.sync(store).received == 1
        big = gzip.compress(b" " * (64 * 2**20))  # 64 MB of blanks: over the 4 MiB page cap as it inflates
        with pytest.raises(PeerError, match="answer over 4194304 bytes; refused"):
            Peer(page=lambda: answer(big, content_encoding="gzip")).sync(store, "http://127.0.0.3:9")
