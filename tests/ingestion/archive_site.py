"""A local stand-in for apod.nasa.gov, api.nasa.gov and esahubble.org, with fault injection.

- ``/apod/``: the real saved APOD pages from ``../shared/data/apod/html`` with their recorded
  content type, ETag and Last-Modified (304 on a matching conditional request).
  ``archivepix.html`` is the real saved index (days from 2015-01-01 to 2023-02-11, and a link
  to ``archivepixFull.html``), with the days published after it (``add_day``, and the saved
  pages of 2024 and 2025) on top, as the live site adds them. No copy of the full archive
  was saved: ``archivepixFull.html`` is the real index with the older saved days (1995)
  below it, in the same line format; ``full_archive = False`` makes it answer 404. A day
  the indexes list without a saved page is made from a real page (``ap230210.html``) with
  date, title and image swapped, as are the days added with ``add_day`` (so faults can be
  attached to them).
- ``/apod/image/...``: a deterministic synthetic picture per path (JPEG, PNG or GIF by
  extension); ``aliases`` serve one path's picture at another (exact or near duplicates).
- ``/planetary/apod``: the recorded API bodies with their status codes, chosen by the query.
- ``/images/...``: ESA/Hubble listing and image pages generated in the live site's structure
  (documented in ``astroclassify/ingest/esahubble.py``) and ``/archives/images/<size>/<id>.jpg``.
- Faults by path while ``faults_on``: ``500``, ``429`` (Retry-After), ``timeout`` (answers
  after ``slow_s``), ``drop`` (closes mid-body), ``html`` (HTML served as image/jpeg),
  ``loop`` (redirects to itself), ``huge`` (declares 2 GB), ``truncated`` (half a JPEG with a
  correct length), ``trickle`` (status line and headers at a byte every 0.1 s), ``trickle_body``
  (headers at once, the body at a byte every 0.1 s) and ``endless`` (a body with no length
  that never ends; ``sent[path]`` counts its bytes). ``*_once`` variants fail only the first
  request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

APOD_TEMPLATE_DAY = "ap230210.html"
LAST_MODIFIED = "Fri, 10 Feb 2023 05:00:00 GMT"


def picture(seed_text: str, size=(320, 240)) -> Image.Image:
    """A synthetic sky: stars and an elliptical glow placed by the seed."""
    seed = int(hashlib.sha256(seed_text.encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng(seed)
    w, h = size
    img = Image.new("RGB", size, (0, 0, 0))
    draw = ImageDraw.Draw(img)
    for _ in range(80):
        x, y = rng.integers(0, w), rng.integers(0, h)
        draw.point((int(x), int(y)), fill=tuple(int(v) for v in rng.integers(120, 255, 3)))
    cx, cy, rx, ry = rng.integers(60, w - 60), rng.integers(50, h - 50), rng.integers(15, 55), rng.integers(10, 40)
    draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=tuple(int(v) for v in rng.integers(80, 255, 3)))
    return img.filter(ImageFilter.GaussianBlur(2))


_BOMBS: dict[str, tuple[bytes, str]] = {}


def bomb(kind: str) -> tuple[bytes, str]:
    """A compressed body and its Content-Encoding: ``gzip_bomb`` (64 MB decoded), ``gzip_gzip_bomb`` (512 MB), ``br``."""
    if kind not in _BOMBS:
        import gzip
        import zlib

        if kind == "br":
            _BOMBS[kind] = (b"\x1b\x00\x00", "br")
        else:
            size = 64 * 2**20 if kind == "gzip_bomb" else 512 * 2**20
            deflater = zlib.compressobj(9, zlib.DEFLATED, 31)
            zeros = b"\0" * 2**24
            inner = b"".join(deflater.compress(zeros) for _ in range(size // len(zeros))) + deflater.flush()
            _BOMBS[kind] = (inner, "gzip") if kind == "gzip_bomb" else (gzip.compress(inner, 9), "gzip, gzip")
    return _BOMBS[kind]


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


class ArchiveSite:
    def __init__(self, apod_dir: Path) -> None:
        self.apod_dir = apod_dir
        self.manifest = {m["file"]: m for m in json.loads((apod_dir / "html" / "manifest.json").read_text())}
        self.days: dict[dt.date, tuple[str, bytes]] = {}  # date -> (title, page bytes)
        for name in self.manifest:
            m = re.fullmatch(r"ap(\d{6})\.html", name)
            if m:
                date = dt.datetime.strptime(m.group(1), "%y%m%d").date()
                page = (apod_dir / "html" / name).read_bytes()
                title = re.search(rb"<title>\s*APOD:[^-\xe2]*[-\xe2\x80\x93]+\s*(.*?)\s*\n?</title>", page, re.S)
                self.days[date] = (title.group(1).decode("utf-8", "replace").strip() if title else name, page)
        real_index = (apod_dir / "html" / "archivepix.html").read_text(encoding="latin-1")
        self.index_titles = {
            dt.datetime.strptime(m.group(1), "%y%m%d").date(): m.group(2)
            for m in re.finditer(r'<a href="ap(\d{6})\.html">(.*?)</a>', real_index)
        }
        self.full_archive = True
        self.faults: dict[str, str] = {}
        self.faults_on = True
        self.aliases: dict[str, tuple[str, str]] = {}  # path -> (source path, "exact" | "near")
        self.slow_s = 3.0
        self.retry_after = "1"
        self.log: list[tuple[float, str, str, dict]] = []  # (time, method, path, headers)
        self.esa: dict[str, list[dict]] = {}
        self.robots = "User-agent: *\nDisallow: /apod/private/\n"
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.url = ""
        self.image_delay_s = 0.0  # slows every image download (interrupt tests)
        self.sent: dict[str, int] = {}  # bytes of an endless body written before the client hung up
        self.redirects: dict[str, str] = {}  # path -> Location (a site that moved)

    # -- content ------------------------------------------------------------------------

    def add_day(self, date: dt.date, title: str, image: str | None = None) -> str:
        """A new day page in the real layout; returns its image path."""
        template = (self.apod_dir / "html" / APOD_TEMPLATE_DAY).read_text(encoding="utf-8")
        image = image or f"image/{date:%y%m}/Synthetic_{date:%Y%m%d}.jpg"
        page = template.replace("2023 February 10", f"{date.year} {date:%B} {date.day}")
        page = page.replace("ZTF meets ATLAS", title)
        page = re.sub(r"image/2302/C2022E3ZTFmeetsC2022U2Atlasbeschriftet1024\.jpg", image, page)
        page = re.sub(
            r"image/2302/C2022E3ZTFmeetsC2022U2Atlasbeschriftet\.jpg", image.replace(".jpg", "_big.jpg"), page
        )
        self.days[date] = (title, page.encode())
        return "/apod/" + image

    def add_esa_category(self, category: str, ids: list[str], per_page: int = 3) -> None:
        """Images newest first, as the live listings are: the first id is dated 2024-01-31, then a day older each."""
        self.esa[category] = [
            {"id": i, "title": f"Hubble image {i} ({category})", "date": dt.date(2024, 1, 31) - dt.timedelta(days=n)}
            for n, i in enumerate(ids)
        ]
        self.esa_per_page = per_page

    def archive_index(self, *, full: bool = False) -> bytes:
        """The real saved index; newer days on top; with ``full``, the older saved days below."""
        real = (self.apod_dir / "html" / "archivepix.html").read_text(encoding="latin-1")
        newest, oldest = max(self.index_titles), min(self.index_titles)

        def line(d: dt.date, title: str) -> str:
            return f'{d.year} {d:%B} {d.day:02d}:  <a href="ap{d:%y%m%d}.html">{title}</a><br>'

        newer = [line(d, t) for d, (t, _) in sorted(self.days.items(), reverse=True) if d > newest]
        older = [line(d, t) for d, (t, _) in sorted(self.days.items(), reverse=True) if d < oldest] if full else []
        head, _, rest = real.partition("<b>\n")
        body, _, tail = rest.partition("</b>")
        page = (
            head + "<b>\n" + "".join(x + "\n" for x in newer) + body + "".join(x + "\n" for x in older) + "</b>" + tail
        )
        return page.encode("latin-1", "replace")

    def day_page(self, date: dt.date) -> bytes | None:
        if date in self.days:
            return self.days[date][1]
        if date in self.index_titles:  # listed by the real index, not saved: made like add_day's pages
            self.add_day(date, self.index_titles[date])
            return self.days[date][1]
        return None

    def image_bytes(self, path: str) -> bytes:
        source, kind = self.aliases.get(path, (path, "exact"))
        img = picture(source)
        fmt = {"png": "PNG", "gif": "GIF"}.get(source.rsplit(".", 1)[-1].lower(), "JPEG")
        if kind == "near":  # the same picture resized and re-compressed
            return encode(img.resize((300, 225), Image.Resampling.LANCZOS), "JPEG", quality=70)
        return encode(img, fmt, **({"quality": 90} if fmt == "JPEG" else {}))

    # -- server -------------------------------------------------------------------------

    def start(self) -> str:
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                site._handle(self)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address) -> None:
                # A client that hangs up mid-answer is what the size-cap and deadline tests do.
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)

        self.server = Server(("127.0.0.1", 0), Handler)
        # A short poll: shutdown() waits up to one poll interval (0.5 s by default), once per test.
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        return self.url

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def requests_to(self, path: str) -> int:
        return sum(1 for _, _, p, _ in self.log if p == path)

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        path = url.path
        with self._lock:
            self.log.append((time.monotonic(), "GET", path, dict(h.headers)))
            first = path not in self._seen
            self._seen.add(path)
        fault = self.faults.get(path) if self.faults_on else None
        if fault and fault.endswith("_once"):
            fault = fault.removesuffix("_once") if first else None
        if fault and self._fault(h, fault, path):
            return
        if path == "/robots.txt":
            return self._send(h, 200, self.robots.encode(), "text/plain")
        if path in self.redirects:
            return self._send(h, 301, b"", "text/plain", {"Location": self.redirects[path]})
        if path.startswith("/newsite/"):  # a new layout: no classic index, no apYYMMDD.html pages
            page = b"<!doctype html><html><head><title>APOD - NASA Science</title></head><body><div id='app'>"
            return self._page(h, page + b"<a href='/newsite/2026/09/a-picture/'>A picture</a></div></body></html>")
        if path == "/wp-json/wp/v2/apod-basic":  # the announced WordPress endpoint: posts, dates ignored
            posts = [
                {"id": 1, "slug": "a-picture", "link": f"{self.url}/newsite/a/", "title": {"rendered": "A picture"},
                 "date": "2026-09-11T00:00:00"}
            ]  # fmt: skip
            return self._send(h, 200, json.dumps(posts).encode(), "application/json")
        if path.startswith("/planetary/apod"):
            return self._api(h, parse_qs(url.query))
        if path.startswith("/apod/image/"):
            time.sleep(self.image_delay_s)
            data = self.image_bytes(path)
            ctype = {"png": "image/png", "gif": "image/gif"}.get(path.rsplit(".", 1)[-1].lower(), "image/jpeg")
            return self._send(h, 200, data, ctype)
        if path in ("/apod/", "/apod/archivepix.html"):
            return self._page(h, self.archive_index())
        if path == "/apod/archivepixFull.html" and self.full_archive:
            return self._page(h, self.archive_index(full=True))
        m = re.fullmatch(r"/apod/ap(\d{6})\.html", path)
        if m:
            date = dt.datetime.strptime(m.group(1), "%y%m%d").date()
            page = self.day_page(date)
            if page is not None:
                return self._page(h, page)
        m = re.fullmatch(r"/apod/(?:calendar|lib)/(\w+)\.html|/apod/(ap_faq)\.html", path)
        if m:
            name = {"allyears": "calendar_allyears.html", "ca2301": "calendar_ca2301.html"}.get(m.group(1) or "", "")
            name = name or (f"lib_{m.group(1)}.html" if m.group(1) else "ap_faq.html")
            if (self.apod_dir / "html" / name).is_file():
                return self._page(h, (self.apod_dir / "html" / name).read_bytes())
        if path.startswith("/images/") or path.startswith("/archives/images/"):
            return self._esa(h, path)
        self._send(h, 404, b"<html><body>404 Not Found</body></html>", "text/html")

    def _page(self, h, body: bytes) -> None:
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if h.headers.get("If-None-Match") == etag:
            return self._send(h, 304, b"", None, {"ETag": etag})
        self._send(h, 200, body, "text/html; charset=UTF-8", {"ETag": etag, "Last-Modified": LAST_MODIFIED})

    def _api(self, h, q: dict) -> None:
        api = self.apod_dir / "api"
        key = q.get("api_key", [None])[0]

        def body(name: str, status: int) -> None:
            # Image links point here instead of apod.nasa.gov, so their downloads can be tested too.
            data = (api / name).read_bytes().replace(b"https://apod.nasa.gov/apod/", f"{self.url}/apod/".encode())
            self._send(h, status, data, "application/json")

        if key is None:
            return body("403-api-key-missing.json", 403)
        if key == "BAD":
            return body("403-api-key-invalid.json", 403)
        if key == "LIMITED":
            return body("429-over-rate-limit.json", 429)
        start, end, date = (q.get(k, [None])[0] for k in ("start_date", "end_date", "date"))
        if q.get("count"):
            return body("get-pods.json", 200)
        if start and end:
            if start > end:
                return body("400-bad-request-2.json", 400)
            if start <= "2021-11-08" <= end or start <= "2021-11-07" <= end:
                return body("get-pods.json", 200)
            return self._send(h, 200, b"[]", "application/json")
        if date == "1995-06-17":
            return body("404-no-data.json", 404)
        if date and date < "1995-06-16":
            return body("400-bad-request-1.json", 400)
        return body("get-pod.json", 200)

    def _esa(self, h, path: str) -> None:
        m = re.fullmatch(r"/images/archive/category/(\w+)/page/(\d+)/", path)
        if m and m.group(1) in self.esa:
            items = self.esa[m.group(1)]
            page = int(m.group(2))
            chunk = items[(page - 1) * self.esa_per_page : page * self.esa_per_page]
            if not chunk:
                return self._send(h, 404, b"<html><body>Page not found</body></html>", "text/html")
            return self._page(h, esa_listing(m.group(1), page, chunk, has_next=page * self.esa_per_page < len(items)))
        m = re.fullmatch(r"/images/([a-z0-9]+)/", path)
        if m:
            for category, items in self.esa.items():
                for item in items:
                    if item["id"] == m.group(1):
                        return self._page(h, esa_image_page(item, category))
        m = re.fullmatch(r"/archives/images/(\w+)/([a-z0-9]+)\.jpg", path)
        if m:
            return self._send(h, 200, self.image_bytes(f"/esa/{m.group(2)}.jpg"), "image/jpeg")
        self._send(h, 404, b"<html><body>Page not found</body></html>", "text/html")

    def _fault(self, h, fault: str, path: str) -> bool:
        if fault == "500":
            self._send(h, 500, b"<html><body>Internal Server Error</body></html>", "text/html")
        elif fault == "429":
            self._send(h, 429, b"Too Many Requests", "text/plain", {"Retry-After": self.retry_after})
        elif fault == "timeout":
            time.sleep(self.slow_s)
            return False  # then answers normally, too late
        elif fault == "drop":
            data = self.image_bytes(path)
            h.send_response(200)
            h.send_header("Content-Type", "image/jpeg")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data[: len(data) // 2])
            h.wfile.flush()
            h.close_connection = True
        elif fault == "html":
            self._send(h, 200, b"<!DOCTYPE html><html><body>Gateway login</body></html>", "image/jpeg")
        elif fault == "loop":
            self._send(h, 302, b"", "text/plain", {"Location": path})
        elif fault in ("gzip_bomb", "gzip_gzip_bomb", "br"):
            # 64 MB of zeros as one gzip layer, or 512 MB as two stacked layers (a few KB on the wire).
            body, encoding = bomb(fault)
            self._send(h, 200, body, "image/jpeg", {"Content-Encoding": encoding})
        elif fault == "huge":
            h.send_response(200)
            h.send_header("Content-Type", "image/jpeg")
            h.send_header("Content-Length", str(2 * 1024**3))
            h.end_headers()
            h.wfile.write(b"\xff\xd8\xff" + b"\0" * 1024)
            h.close_connection = True
        elif fault == "truncated":
            data = self.image_bytes(path)
            self._send(h, 200, data[: len(data) // 2], "image/jpeg")
        elif fault in ("trickle", "trickle_body", "endless"):
            head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
            body = b"User-agent: *\nAllow: /\n" * 10_000
            try:
                if fault == "trickle":
                    for byte in head + body:
                        h.wfile.write(bytes([byte]))
                        h.wfile.flush()
                        time.sleep(0.1)
                elif fault == "trickle_body":
                    h.wfile.write(head)
                    for byte in body:
                        h.wfile.write(bytes([byte]))
                        h.wfile.flush()
                        time.sleep(0.1)
                else:
                    h.wfile.write(head)
                    chunk = b"# " + b"x" * 65533 + b"\n"
                    self.sent[path] = 0
                    while self.sent[path] < 3 * 1024**3:
                        h.wfile.write(chunk)
                        self.sent[path] += len(chunk)
            except OSError:
                pass  # the client gave up, as it should
            h.close_connection = True
        else:
            raise ValueError(fault)
        return True

    @staticmethod
    def _send(h, status: int, body: bytes, ctype: str | None, headers: dict | None = None) -> None:
        h.send_response(status)
        if ctype:
            h.send_header("Content-Type", ctype)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if body:
            h.wfile.write(body)


def esa_listing(category: str, page: int, items: list[dict], has_next: bool) -> bytes:
    entries = ",\n".join(
        f"""    {{
        id: '{i["id"]}',
        title: '{i["title"].replace("'", "&#39;")}',
        width: 4000,
        height: 3000,
        src: 'https://cdn.esahubble.org/archives/images/thumb300y/{i["id"]}.jpg',
        url: '/images/{i["id"]}/',
        potw: ''
    }}"""
        for i in items
    )
    nxt = f'<a href="/images/archive/category/{category}/page/{page + 1}/">Next</a>' if has_next else ""
    return f"""<!DOCTYPE html><html lang="en"><head><title>Images | ESA/Hubble</title></head>
<body><div id="content"><h1>{category.title()}</h1>
<div class="image-list image-list-300"></div>
<script>
var images = [
{entries}
];
</script>
<div class="pagination">{nxt}</div></div></body></html>""".encode()


def esa_image_page(item: dict, category: str) -> bytes:
    i = item["id"]
    sizes = "\n".join(
        f'<div class="archive-download"><a href="/archives/images/{s}/{i}.jpg">{s}</a></div>'
        for s in ("large", "publicationjpg", "screen", "wallpaper1")
    )
    return f"""<!DOCTYPE html><html lang="en"><head><title>{item["title"]} | ESA/Hubble</title></head>
<body><div class="container"><h1>{item["title"]}</h1>
<div class="description"><p>A synthetic caption for {i}.</p></div>
<div class="credit"><p>ESA/Hubble &amp; NASA, A. Astronomer</p></div>
<div class="object-info"><h3>About the Image</h3><table>
<tr><td class="title">Id:</td><td>{i}</td></tr>
<tr><td class="title">Type:</td><td>Observation</td></tr>
<tr><td class="title">Release date:</td><td>{item["date"].day} {item["date"]:%B %Y}, 06:00</td></tr>
<tr><td class="title">Size:</td><td>4000 x 3000 px</td></tr>
<tr><td class="title">Category:</td><td><a href="/images/archive/category/{category}/">{category.title()}</a></td></tr>
</table></div>
<div class="archive-downloads">
<a href="/archives/images/original/{i}.tif">Fullsize Original</a>
{sizes}
</div></div></body></html>""".encode()
