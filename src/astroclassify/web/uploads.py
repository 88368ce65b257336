"""Reading uploads within limits: one file, or a batch of files and zips, never all in memory at once."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from typing import BinaryIO

from fastapi import UploadFile

from astroclassify.errors import FileTooLargeError
from astroclassify.files.sizes import format_bytes
from astroclassify.files.zipdir import open_zip_within
from astroclassify.inference.uploads import Upload

__all__ = ["batch_entries", "count_batch_entries", "read_upload"]

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def read_upload(upload: UploadFile, limit: int) -> bytes:
    """The upload's bytes; FileTooLargeError (413) over ``limit``, read no further than that."""
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        raise FileTooLargeError(f"{upload.filename or 'upload'}: upload is over the {format_bytes(limit)} limit")
    return data


def _is_zip(fh: BinaryIO) -> bool:
    head = fh.read(4)
    fh.seek(0)
    return head in ZIP_MAGIC


def _max_entries(max_files: int) -> int:
    """Entries a zip may list for ``max_files`` files: folders are entries too."""
    return 2 * max_files


def count_batch_entries(uploads: list[UploadFile], max_files: int) -> int:
    """How many files a batch holds (zip members counted one by one), read from zip directories only.

    A zip whose end record states more than twice ``max_files`` entries (or a longer directory)
    is refused before its directory is parsed: FileTooLargeError (413).
    """
    n = 0
    for upload in uploads:
        if _is_zip(upload.file):
            try:
                with open_zip_within(upload.file, _max_entries(max_files), upload.filename or "upload") as zf:
                    n += sum(not info.is_dir() for info in zf.infolist())
            except FileTooLargeError:
                raise
            except (zipfile.BadZipFile, OSError, ValueError):
                n += 1  # reported as one unreadable file
            finally:
                upload.file.seek(0)
        else:
            n += 1
    return n


def batch_entries(uploads: list[UploadFile], *, max_file: int, max_total: int, max_files: int) -> Iterator[Upload]:
    """Each file of a batch in order, one at a time: plain uploads, and the members of zips.

    Every file, plain or zipped, is held to ``max_file`` (the single-upload limit), zip
    members together to ``max_total`` once expanded, and a zip's listing to ``max_files``. Unsafe member names (absolute, ``..``)
    and unreadable archives are per-file errors, never a failed batch.
    """
    total = 0
    for upload in uploads:
        name = upload.filename or "upload"
        if not _is_zip(upload.file):
            try:
                yield Upload(name, read_upload(upload, max_file))
            except FileTooLargeError:
                yield Upload(name, None, f"over the {format_bytes(max_file)} limit for one file")
            continue
        try:
            archive = open_zip_within(upload.file, _max_entries(max_files), name)
        except FileTooLargeError as exc:
            yield Upload(name, None, str(exc))
            continue
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            yield Upload(name, None, f"not a readable zip archive ({exc})")
            continue
        with archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                member = info.filename
                parts = member.replace("\\", "/").split("/")
                if member.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
                    yield Upload(member, None, "unsafe file name in archive (absolute or '..'); skipped")
                    continue
                if info.file_size > max_file:
                    yield Upload(
                        member,
                        None,
                        f"expands to {format_bytes(info.file_size)}, over the {format_bytes(max_file)} limit for one file",
                    )
                    continue
                if total + info.file_size > max_total:
                    yield Upload(
                        member, None, f"the archive expands to over the {format_bytes(max_total)} limit for a batch"
                    )
                    continue
                try:
                    with archive.open(info) as fh:
                        data = fh.read(max_file + 1)  # a member that lies about its size stops here
                except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, RuntimeError, ValueError) as exc:
                    yield Upload(member, None, f"unreadable archive member ({exc})")
                    continue
                if len(data) > max_file:
                    yield Upload(member, None, f"over the {format_bytes(max_file)} limit for one file")
                    continue
                total += len(data)
                yield Upload(member, data)
