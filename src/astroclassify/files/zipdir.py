"""A zip's size, read from its end-of-central-directory record before anything is listed.

``zipfile.ZipFile`` parses the whole central directory when it opens: a 255 MB archive
listing 5 M entries costs 2.3 GB and 22 s before any limit can be checked. The record at the
end of the file (and its zip64 form) states the entry count and the directory's size in a few
dozen bytes, so both are checked first. ``zipfile`` reads the directory by its byte size, not
by the stated count, so the size is capped too: a record that under-states the count cannot
smuggle in a long directory. The standard library offers no way to read the record alone,
hence this small parser of the published format (PKWARE APPNOTE 4.3.14-4.3.16).
"""

from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass
from typing import BinaryIO

from astroclassify.errors import FileTooLargeError

__all__ = ["MAX_DIRECTORY_BYTES_PER_ENTRY", "ZipDirectory", "open_zip_within", "read_zip_directory"]

# A directory entry is 46 bytes plus its name, extra field and comment; 4 KiB an entry is
# far above what real archives use and keeps the parse of a capped count cheap.
MAX_DIRECTORY_BYTES_PER_ENTRY = 4096
_EOCD = struct.Struct("<4s4H2LH")  # signature, disk, cd disk, entries here, entries, cd size, cd offset, comment
_LOCATOR = struct.Struct("<4sLQL")  # zip64 locator: signature, disk, offset of the zip64 record, disks
_EOCD64 = struct.Struct("<4sQ2H2L4Q")  # signature, size, versions, disks, entries here, entries, cd size, offset
_MAX_TAIL = _EOCD.size + 0xFFFF  # the record plus the longest comment


@dataclass(frozen=True)
class ZipDirectory:
    entries: int  # as the archive states it
    directory_bytes: int


def read_zip_directory(fh: BinaryIO) -> ZipDirectory:
    """The entry count and directory size of a seekable zip; ``zipfile.BadZipFile`` if there is no record.

    Leaves the file at offset 0.
    """
    try:
        size = fh.seek(0, 2)
        tail_start = max(0, size - _MAX_TAIL)
        fh.seek(tail_start)
        tail = fh.read()
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < _EOCD.size:
            raise zipfile.BadZipFile("no end-of-central-directory record")
        _, _, _, _, entries, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, at)
        end = tail_start + at  # the directory ends before its record
        if (entries == 0xFFFF or cd_size == 0xFFFFFFFF) and at >= _LOCATOR.size:
            sig, _, record_offset, _ = _LOCATOR.unpack_from(tail, at - _LOCATOR.size)
            if sig == b"PK\x06\x07":
                fh.seek(record_offset)
                record = fh.read(_EOCD64.size)
                if record_offset >= end or len(record) < _EOCD64.size or not record.startswith(b"PK\x06\x06"):
                    raise zipfile.BadZipFile("zip64 locator points at no zip64 record")
                _, _, _, _, _, _, _, entries, cd_size, cd_offset = _EOCD64.unpack(record)
                end = record_offset
        if cd_offset + cd_size > end:
            raise zipfile.BadZipFile("the central directory lies outside the file")
        return ZipDirectory(int(entries), int(cd_size))
    finally:
        fh.seek(0)


def open_zip_within(fh: BinaryIO, max_entries: int, name: str = "archive") -> zipfile.ZipFile:
    """``zipfile.ZipFile(fh)`` once its record says it lists at most ``max_entries`` entries.

    Raises
    ------
    FileTooLargeError
        The stated count, or the directory's size, is over what ``max_entries`` allows.
    zipfile.BadZipFile
        Not a zip (no end-of-central-directory record), or one ``zipfile`` cannot read.
    """
    directory = read_zip_directory(fh)
    if directory.entries > max_entries:
        raise FileTooLargeError(f"{name}: the zip lists {directory.entries} entries; the limit is {max_entries}")
    if directory.directory_bytes > max(1, max_entries) * MAX_DIRECTORY_BYTES_PER_ENTRY:
        raise FileTooLargeError(
            f"{name}: the zip's directory is {directory.directory_bytes} bytes, too long for {max_entries} entries"
        )
    archive = zipfile.ZipFile(fh)
    if len(archive.infolist()) > max_entries:  # the record under-stated the count
        archive.close()
        raise FileTooLargeError(f"{name}: the zip holds over {max_entries} entries")
    return archive
