"""Draw the example images shipped in ``examples/`` (the README's and the docs' examples use them).

They are made here, from formulas, so they carry no one's copyright (CC0): a spiral galaxy
(exponential disc, bulge and two logarithmic arms), an emission nebula (fractal clouds
lit in H-alpha red and O III teal), a ringed planet, and a globular star cluster, each
on a field of stars. Re-running this script writes the same files (fixed seeds).

    python bench/make_examples.py --out examples
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 384


def _grid() -> tuple[np.ndarray, np.ndarray]:
    y, x = (np.mgrid[0:SIZE, 0:SIZE] - SIZE / 2 + 0.5) / (SIZE / 2)
    return x, y


def _stars(img: np.ndarray, rng: np.random.Generator, n: int, bright: float = 1.0) -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    for _ in range(n):
        cx, cy = rng.uniform(0, SIZE, 2)
        flux = bright * rng.pareto(2.5) * 0.25
        sigma = 0.7 + 0.6 * min(flux, 2)
        colour = np.array([1.0, 0.9 + 0.1 * rng.random(), 0.75 + 0.3 * rng.random()])
        patch = flux * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
        img += patch[..., None] * colour
    return img


def _fractal(rng: np.random.Generator, power: float = 3.2) -> np.ndarray:
    """Gaussian random field with a power-law spectrum: cloud-like structure."""
    k = np.fft.fftfreq(SIZE)
    kk = np.sqrt(k[:, None] ** 2 + k[None, :] ** 2)
    kk[0, 0] = 1
    spectrum = kk ** (-power / 2) * (rng.normal(size=(SIZE, SIZE)) + 1j * rng.normal(size=(SIZE, SIZE)))
    field = np.real(np.fft.ifft2(spectrum))
    return (field - field.mean()) / field.std()


def _finish(img: np.ndarray, rng: np.random.Generator) -> Image.Image:
    img = img + rng.normal(0, 0.004, img.shape)
    img = np.arcsinh(np.clip(img, 0, None) * 6) / np.arcsinh(6)  # an asinh stretch, as astronomers display
    return Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))


def spiral_galaxy(rng: np.random.Generator) -> Image.Image:
    x, y = _grid()
    xr, yr = x / 0.8, y / 0.5  # an inclined disc filling most of the frame
    r = np.hypot(xr, yr) + 1e-6
    theta = np.arctan2(yr, xr)
    disc = np.exp(-r / 0.25)
    arms = (0.5 + 0.5 * np.cos(2 * (theta - np.log(r) / np.tan(np.radians(20))))) ** 4
    knots = np.clip(_fractal(rng, 1.5), 0, None) * arms * disc  # star-forming regions along the arms
    bulge = np.exp(-((r / 0.07) ** 0.9))
    old = 0.35 * disc + 1.2 * bulge  # yellow light of old stars
    young = 0.8 * disc * arms + 0.25 * knots  # blue light of young ones
    dust = 1 - 0.5 * disc * (1 - arms) ** 6 * (r > 0.08)
    img = np.stack([old + 0.55 * young, 0.85 * old + 0.7 * young, 0.6 * old + 1.0 * young], -1) * dust[..., None]
    return _finish(_stars(img * 0.8, rng, 50, 0.6), rng)


def emission_nebula(rng: np.random.Generator) -> Image.Image:
    x, y = _grid()
    envelope = np.exp(-((np.hypot(x, y * 1.2) / 0.75) ** 2))
    h_alpha = np.clip(_fractal(rng) * 0.35 + 0.55, 0, None) * envelope
    o_iii = np.clip(_fractal(rng, 3.6) * 0.3 + 0.35, 0, None) * np.exp(-((np.hypot(x, y) / 0.4) ** 2))
    img = np.stack([0.9 * h_alpha + 0.1 * o_iii, 0.25 * h_alpha + 0.6 * o_iii, 0.35 * h_alpha + 0.55 * o_iii], -1)
    return _finish(_stars(img * 0.6, rng, 120, 0.8), rng)


def ringed_planet(rng: np.random.Generator) -> Image.Image:
    x, y = _grid()
    tilt = np.radians(20)
    xp, yp = x * np.cos(tilt) + y * np.sin(tilt), -x * np.sin(tilt) + y * np.cos(tilt)
    r = np.hypot(xp, yp)
    body = r < 0.42
    shade = np.clip(np.sqrt(np.clip(1 - (r / 0.42) ** 2, 0, 1)) * (0.75 - 0.4 * xp), 0, 1)
    bands = 0.85 + 0.15 * np.sin(yp * 40)
    ring_r = np.hypot(xp, yp / 0.28)
    ring = (ring_r > 0.55) & (ring_r < 0.9) & ~((yp < 0) & body) & ~(ring_r > 0.68) | (ring_r > 0.72) & (ring_r < 0.9)
    ring &= ~((yp < 0) & body)
    img = np.zeros((SIZE, SIZE, 3))
    img[body] = np.array([0.95, 0.82, 0.55]) * (shade * bands)[body][:, None]
    img[ring] = np.array([0.8, 0.72, 0.55]) * 0.7
    return _finish(img * 0.9, rng)


def globular_cluster(rng: np.random.Generator) -> Image.Image:
    img = np.zeros((SIZE, SIZE, 3))
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    radii = 0.08 * SIZE * np.sqrt(rng.uniform(0, 1, 2500) ** -0.8 - 1 + 1e-3)  # King-like concentration
    angles = rng.uniform(0, 2 * np.pi, len(radii))
    for rad, ang in zip(radii, angles, strict=True):
        cx, cy = SIZE / 2 + rad * np.cos(ang), SIZE / 2 + rad * np.sin(ang)
        if not (0 <= cx < SIZE and 0 <= cy < SIZE):
            continue
        x0, x1, y0, y1 = int(max(cx - 4, 0)), int(min(cx + 5, SIZE)), int(max(cy - 4, 0)), int(min(cy + 5, SIZE))
        flux = 0.08 + rng.pareto(3) * 0.1
        colour = np.array([1.0, 0.85 + 0.1 * rng.random(), 0.6 + 0.3 * rng.random()])
        patch = flux * np.exp(-((xx[y0:y1, x0:x1] - cx) ** 2 + (yy[y0:y1, x0:x1] - cy) ** 2) / 1.6)
        img[y0:y1, x0:x1] += patch[..., None] * colour
    return _finish(_stars(img, rng, 40, 0.5), rng)


EXAMPLES = {
    "spiral-galaxy.jpg": spiral_galaxy,
    "emission-nebula.jpg": emission_nebula,
    "ringed-planet.jpg": ringed_planet,
    "globular-cluster.jpg": globular_cluster,
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="examples")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, (name, draw) in enumerate(EXAMPLES.items()):
        draw(np.random.default_rng(i)).save(out / name, quality=88)
        print(out / name)


if __name__ == "__main__":
    main()
