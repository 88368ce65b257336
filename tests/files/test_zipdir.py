"""Zip limits checked from the end record, before ``zipfile`` lists a single entry."""

import io
import struct
import time
import tracemalloc
import zipfile

import pytest

from astroclassify.errors import FileTooLargeError
from astroclassify.files.zipdir import open_zip_within, read_zip_directory


def directory_only_zip(entries: int, *, stated: int | None = None, zip64: bool = False) -> bytes:
    """A zip that is all central directory (what an attacker sends): ``entries`` empty files.

    ``stated``: the count the end record claims, when it lies. zipfile opens such a file,
    parsing every entry, as a real archive of that many empty files.
    """
    names = [f"{i:07d}".encode() for i in range(entries)]
    header = struct.Struct("<4s6H3L5H2L")
    directory = b"".join(
        header.pack(b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, len(n), 0, 0, 0, 0, 0, 0) + n for n in names
    )
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, len(names[0]), 0) + names[0]
    count = entries if stated is None else stated
    if not zip64:
        end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(directory), len(local), 0)
        return local + directory + end
    at = len(local) + len(directory)
    record64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, len(directory), len(local))
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, at, 1)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return local + directory + record64 + locator + end


def test_the_end_record_is_read_as_zipfile_reads_the_archive():
    for zip64 in (False, True):
        data = directory_only_zip(300, zip64=zip64)
        assert read_zip_directory(io.BytesIO(data)).entries == 300
        assert len(zipfile.ZipFile(io.BytesIO(data)).infolist()) == 300  # a real zip to zipfile too
    real = io.BytesIO()
    with zipfile.ZipFile(real, "w") as zf:
        zf.writestr("a.txt", "x")
        zf.comment = b"c" * 1000
    assert read_zip_directory(real).entries == 1
    with open_zip_within(real, 1) as zf:
        assert zf.namelist() == ["a.txt"]
    with pytest.raises(zipfile.BadZipFile):
        read_zip_directory(io.BytesIO(b"PK\x03\x04 not really a zip"))


def test_a_huge_directory_is_refused_before_it_is_parsed():
    """1 M entries (47 MB): zipfile's own open took about 0.5 GB and seconds; refused in microseconds."""
    for data in (directory_only_zip(65_000), directory_only_zip(1_000_000, zip64=True)):
        tracemalloc.start()
        start = time.perf_counter()
        with pytest.raises(FileTooLargeError, match="lists (65000|1000000) entries"):
            open_zip_within(io.BytesIO(data), 200)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert elapsed < 0.2 and peak < 1_000_000
    # The record under-states the count: the directory's size gives it away.
    with pytest.raises(FileTooLargeError, match="too long for 200 entries"):
        open_zip_within(io.BytesIO(directory_only_zip(60_000, stated=1)), 200)
    with pytest.raises(FileTooLargeError, match="over 200 entries"):
        open_zip_within(io.BytesIO(directory_only_zip(5_000, stated=1)), 200)
