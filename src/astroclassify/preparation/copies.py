"""Cropped copies of known images, found by keypoints (ORB) that agree on one similarity transform.

Thumbnail fingerprints (``splits.copies_of``) catch re-encoded, resized, dimmed, grey and
mirrored or rotated copies, but a copy cropped to 80-90 % of the frame moves every thumbnail
pixel: 53 % of such copies of the dso gold set passed. Keypoints survive crops, rotations and
scale; a copy is declared only when enough of them fit one rotation + scale + shift (RANSAC),
which two different pictures of sky do not (bench/gold_copies.py measures both sides).
OpenCV is used rather than scikit-image's ORB because it matches 75k descriptors in
milliseconds; it comes with the ``evaluate`` extra.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["KEYPOINT_INLIERS", "CropIndex", "keypoints"]

SIDE = 320  # pixels on the longer side, where keypoints are found
FEATURES = 500
KEYPOINT_INLIERS = 25  # copies: median 180 inliers; other pictures rarely reach 20 (bench/gold_copies.py)
RATIO = 0.8  # Lowe's ratio test on the two nearest descriptors


def keypoints(image) -> tuple[np.ndarray, np.ndarray]:
    """ORB keypoints of a Pillow image: positions (N, 2) in a ``SIDE``-pixel frame and descriptors (N, 32)."""
    import cv2
    from PIL import Image

    grey = image.convert("L")
    scale = SIDE / max(grey.size)
    size = (max(16, round(grey.size[0] * scale)), max(16, round(grey.size[1] * scale)))
    pixels = np.asarray(grey.resize(size, Image.Resampling.BILINEAR))
    orb = cv2.ORB_create(nfeatures=FEATURES, fastThreshold=10, edgeThreshold=15)  # type: ignore[attr-defined]
    found, described = orb.detectAndCompute(pixels, None)
    if described is None:
        return np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8)
    return np.array([k.pt for k in found], np.float32), np.asarray(described)


@dataclass
class CropIndex:
    """Keypoints of reference images, to ask whether a picture is a crop (or turn, or mirror) of one."""

    points: np.ndarray  # (M, 2) float32
    descriptors: np.ndarray  # (M, 32) uint8
    owner: np.ndarray  # (M,) index of the reference each keypoint belongs to

    @classmethod
    def of(cls, refs: Sequence[tuple[np.ndarray, np.ndarray]]) -> CropIndex:
        points = [p for p, _ in refs] or [np.zeros((0, 2), np.float32)]
        descriptors = [d for _, d in refs] or [np.zeros((0, 32), np.uint8)]
        owner = np.concatenate([np.full(len(d), i) for i, (_, d) in enumerate(refs)] or [np.zeros(0, int)])
        return cls(np.concatenate(points), np.concatenate(descriptors), owner.astype(int))

    def match(self, image, *, inliers: int = KEYPOINT_INLIERS) -> int | None:
        """The reference ``image`` copies (cropped, turned or mirrored), or None."""
        import cv2
        from PIL import Image

        if not len(self.descriptors):
            return None
        matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
        for view in (image, image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)):  # ORB is not mirror-invariant
            pts, des = keypoints(view)
            if len(des) < inliers:
                continue
            good = [
                m for m, n in (p for p in matcher.knnMatch(des, self.descriptors, k=2) if len(p) == 2)
                if m.distance < RATIO * n.distance
            ]  # fmt: skip
            owners = np.array([self.owner[m.trainIdx] for m in good], int)
            for ref in np.bincount(owners).argsort()[::-1][:3] if len(owners) else ():
                chosen = [m for m in good if self.owner[m.trainIdx] == ref]
                if len(chosen) < inliers:
                    break
                src = np.array([pts[m.queryIdx] for m in chosen], np.float32)
                dst = np.array([self.points[m.trainIdx] for m in chosen], np.float32)
                _, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=4.0)
                if mask is not None and int(mask.sum()) >= inliers:
                    return int(ref)
        return None
