"""Find the images among files and folders a user names, and say what was left out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from astroclassify.imaging.decode import has_image_signature

__all__ = ["FoundImages", "find_images"]


@dataclass(frozen=True)
class FoundImages:
    """Image files in input order, and the files inside folders that were skipped, with why."""

    files: list[Path]
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def skipped_summary(self) -> str:
        """One line: how many files were skipped and why, with a few names."""
        if not self.skipped:
            return ""
        names = ", ".join(p.name for p, _ in self.skipped[:3]) + (", …" if len(self.skipped) > 3 else "")
        reasons = sorted({why for _, why in self.skipped})
        return f"skipped {len(self.skipped)} file(s) in the given folders: {'; '.join(reasons)} ({names})"


def find_images(inputs: Sequence[str | Path]) -> FoundImages:
    """Files as given, plus every image inside the given folders (searched recursively).

    Inside folders a file is taken when its first bytes are those of an image format we
    decode, whatever its name; hidden files and other content are skipped and reported.
    A file named directly is always taken, so the decoder can say what is wrong with it.
    """
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for item in map(Path, inputs):
        if not item.is_dir():
            files.append(item)
            continue
        for path in sorted(p for p in item.rglob("*") if p.is_file()):
            rel = path.relative_to(item)
            if any(part.startswith(".") for part in rel.parts):
                skipped.append((path, "hidden file"))
            elif not _starts_like_image(path):
                skipped.append((path, "not an image by its content"))
            else:
                files.append(path)
    return FoundImages(files, skipped)


def _starts_like_image(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return has_image_signature(fh.read(16))
    except OSError:
        return True  # unreadable: let the decoder report it per file
