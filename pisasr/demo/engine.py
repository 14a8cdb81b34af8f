"""The interactive demo: pick the fidelity / detail balance after the fact.

``DemoEngine`` holds the logic and knows nothing of Gradio, so the tests drive it directly. An upload is checked
(bytes, then pixels from the header, before anything is decoded), encoded, and both UNet passes (``eps_full`` and
``eps_pix``) run once; the result is a ``Cached`` entry in the engine's least-recently-used ``SessionCache``
(``DemoLimits.max_sessions`` entries; a browser session holds only its key). Moving a lambda slider only
recombines the cached latents and decodes (``Pipeline.render``), the same code the CLI runs, so a slider position
gives the image ``Pipeline.restore`` gives for that pair; the preview stays in memory and the full-resolution
PNG is written only when downloaded. ``pisasr/demo/app.py`` wraps the engine in a Gradio Blocks app;
``scripts/demo.py`` serves it.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from pisasr.errors import ConfigError, ImageError, PiSAError
from pisasr.inference.pipeline import UNTRAINED_NOTE, Latents, Pipeline, Prepared, plan_geometry  # noqa: F401 (re-exported)
from pisasr.inference.resize import resize_image
from pisasr.inference.sweep import contact_sheet, parse_sweep, sweep_name
from pisasr.io.images import assemble, read_image, save_image, to_pil

PRESETS = {"default (1, 1)": (1.0, 1.0), "more fidelity": (1.0, 0.5), "more detail": (1.0, 1.5)}
BOTH_PASSES = [(1.0, 1.0), (0.0, 1.0)]  # a pair needing eps_full and one needing eps_pix
PREVIEW_SIDE = 2048  # the before/after previews are at most this long (the download is always full size)
THUMBNAIL_SIDE = 512  # the preview of the upload
MAX_SWEEP_CELLS = 25  # one decode each, while the one-request queue waits
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"  # the bundled photos (in a source checkout)


@dataclass
class DemoLimits:
    """What one upload may cost and how many may be held (``--max_upload_mb``, ``--max_pixels``,
    ``--max_sessions``)."""

    max_upload_mb: float = 20.0
    max_pixels: int = 512 * 512  # input pixels: a 2048x2048 output
    max_sessions: int = 8

    def __post_init__(self):
        for flag in ("max_upload_mb", "max_pixels", "max_sessions"):
            if not getattr(self, flag) > 0:
                raise ConfigError(f"--{flag} {getattr(self, flag)}: must be positive")


@dataclass
class Cached:
    """One uploaded image after its UNet passes: everything a slider move needs.

    ``prepared`` is kept without its padded model input (only the UNet passes read it; about 40% of an
    entry); ``before`` is the upsampled input as previewed."""

    key: str
    stem: str
    prepared: Prepared
    latents: Latents
    before: Image.Image

    @property
    def nbytes(self) -> int:
        tensors = [self.prepared.image.rgb, self.prepared.image.alpha, self.prepared.reference]
        tensors += [self.prepared.alpha, self.latents.z_lr, self.latents.eps_full, self.latents.eps_pix]
        held = sum(t.numel() * t.element_size() for t in tensors if t is not None)
        return held + len(self.before.getbands()) * self.before.width * self.before.height


class SessionCache:
    """Least-recently-used ``key -> Cached`` holding at most ``capacity`` entries; ``on_evict`` is called for
    every entry that leaves (evicted or dropped). Thread-safe: page-close (unload) events bypass the queue."""

    def __init__(self, capacity: int, on_evict: Callable[[Cached], None] | None = None):
        self.capacity, self.on_evict = capacity, on_evict
        self._entries: OrderedDict[str, Cached] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, cached: Cached) -> None:
        with self._lock:
            self._entries[cached.key] = cached
            self._entries.move_to_end(cached.key)
            evicted = [
                self._entries.popitem(last=False)[1] for _ in range(len(self._entries) - self.capacity)
            ]
        for entry in evicted:
            self._left(entry)

    def get(self, key: str) -> Cached | None:
        with self._lock:
            cached = self._entries.get(key)
            if cached is not None:
                self._entries.move_to_end(key)
            return cached

    def drop(self, key: str | None) -> None:
        with self._lock:
            cached = self._entries.pop(key, None) if key is not None else None
        if cached is not None:
            self._left(cached)

    def _left(self, cached: Cached) -> None:
        if self.on_evict is not None:
            self.on_evict(cached)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(c.nbytes for c in self._entries.values())


def check_lambdas(**values: float) -> None:
    """One-line ``ConfigError`` for a non-finite lambda (``nan`` or ``inf`` decode to a black image)."""
    for name, value in values.items():
        if not math.isfinite(float(value)):
            raise ConfigError(f"{name} {value}: must be a finite number")


@contextmanager
def _named_only(path: Path) -> Iterator[None]:
    """Errors about an upload name the file, never the server folder Gradio put it in."""
    try:
        yield
    except PiSAError as exc:
        raise type(exc)(str(exc).replace(str(path), path.name)) from None


def _fit(image: Image.Image, side: int) -> Image.Image:
    if max(image.size) > side:
        image = image.copy()
        image.thumbnail((side, side), Image.Resampling.LANCZOS)
    return image


class DemoEngine:
    def __init__(self, pipe: Pipeline, workdir: str | os.PathLike, limits: DemoLimits | None = None):
        self.pipe, self.workdir, self.limits = pipe, Path(workdir), limits or DemoLimits()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cache = SessionCache(self.limits.max_sessions, on_evict=self._forget)

    @property
    def untrained(self) -> bool:
        return not self.pipe.weights

    # -- uploads ---------------------------------------------------------------------------------------------
    def check_upload(self, path: str | os.PathLike) -> Path:
        """Refuse an upload over the byte or pixel limit before it is decoded (PIL reads the size from the
        header); the pixels counted are those the model works on, after the small-input enlargement."""
        path, limits = Path(path), self.limits
        size_mb = path.stat().st_size / 2**20 if path.is_file() else 0.0
        if size_mb > limits.max_upload_mb:
            raise ImageError(
                f"{path.name}: {size_mb:.1f} MB is over the demo's upload limit of {limits.max_upload_mb:g} MB"
            )
        try:
            with Image.open(path) as img:
                width, height = img.size
        except Image.DecompressionBombError:
            raise ImageError(f"{path.name}: over the demo's limit of {limits.max_pixels:,} pixels") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            return path  # read_image says what is wrong with it
        o = self.pipe.options
        enlarged, geometry = plan_geometry(height, width, o.upscale, o.process_size)
        model_h, model_w = geometry.model_size
        if model_h * model_w > limits.max_pixels * o.upscale**2:
            what = f"{width}x{height}"
            if enlarged:
                what += f" (enlarged to {enlarged[1]}x{enlarged[0]} for the model: short side below "
                what += f"{o.process_size // o.upscale})"
            raise ImageError(
                f"{path.name}: {what} is over the demo's limit of {limits.max_pixels:,} pixels "
                f"(--max_pixels); send a smaller image"
            )
        return path

    def thumbnail(self, path: str | os.PathLike) -> Image.Image:
        """A small 8-bit preview of a checked upload, as the model will see it (EXIF orientation applied)."""
        path = self.check_upload(path)
        with _named_only(path):
            image = read_image(path)
        return _fit(to_pil(assemble(image.rgb, image.alpha, image.grayscale)), THUMBNAIL_SIDE)

    def load(self, path: str | os.PathLike, progress=None) -> Cached:
        """Check, read and pass an upload through encode and both UNet passes (the only expensive step); the
        entry goes into the cache (possibly evicting the least recently used one)."""
        path = self.check_upload(path)
        with _named_only(path):
            image = read_image(path)
        if progress is not None:
            progress(0.1, desc="encoding and running the UNet passes")
        prepared = self.pipe.prepare(image)
        latents = self.pipe.predict([prepared], BOTH_PASSES)
        prepared = replace(prepared, model_input=None)
        cached = Cached(uuid.uuid4().hex, path.stem, prepared, latents, self._before(prepared))
        self.cache.put(cached)
        if progress is not None:
            progress(1.0, desc="done")
        return cached

    def get(self, key: str) -> Cached:
        cached = self.cache.get(key)
        if cached is None:
            raise ImageError(
                f"this image is no longer held (the demo keeps the {self.limits.max_sessions} most recent "
                "uploads); upload it again"
            )
        return cached

    def drop(self, key: str | None) -> None:
        self.cache.drop(key)

    def _forget(self, cached: Cached) -> None:
        shutil.rmtree(self.workdir / cached.key, ignore_errors=True)

    # -- results ---------------------------------------------------------------------------------------------
    def _before(self, p: Prepared) -> Image.Image:
        """The upsampled input at the output size (what the model started from), as previewed."""
        reference = resize_image(p.reference, p.geometry.out_size, self.pipe.options.resample, None)
        return _fit(to_pil(reference[0]), PREVIEW_SIDE)

    def render(self, cached: Cached, lambda_pix: float, lambda_sem: float) -> tuple[torch.Tensor, float]:
        """The output [C, H, W] in [0, 1] for one pair, from the cache; returns it and the seconds it took."""
        check_lambdas(λ_pix=lambda_pix, λ_sem=lambda_sem)
        start = time.perf_counter()
        out = self.pipe.render(cached.latents, [cached.prepared], (float(lambda_pix), float(lambda_sem)))[0]
        return out, time.perf_counter() - start

    def preview(self, image: torch.Tensor) -> Image.Image:
        """An in-memory 8-bit view of a result, at most ``PREVIEW_SIDE`` long; nothing is written."""
        return _fit(to_pil(image), PREVIEW_SIDE)

    def download(self, cached: Cached, lambda_pix: float, lambda_sem: float) -> Path:
        """Render one pair and write its full-resolution PNG (16-bit and alpha kept, as the CLI) into the
        entry's own folder, replacing the entry's previous download (Gradio has copied that one already)."""
        image, _ = self.render(cached, lambda_pix, lambda_sem)
        folder = self.workdir / cached.key
        shutil.rmtree(folder, ignore_errors=True)
        target = folder / sweep_name(cached.stem, float(lambda_pix), float(lambda_sem))
        return save_image(image, target, cached.prepared.image.bit_depth)

    def sweep(self, cached: Cached, spec: str) -> Image.Image:
        pix_values, sem_values = parse_sweep(spec)
        for value in pix_values + sem_values:
            check_lambdas(λ=value)
        if len(pix_values) * len(sem_values) > MAX_SWEEP_CELLS:
            raise ConfigError(
                f"sweep {spec!r}: {len(pix_values) * len(sem_values)} pairs; the demo renders at most "
                f"{MAX_SWEEP_CELLS} (the CLI's --sweep has no limit)"
            )
        results = {(p, s): self.render(cached, p, s)[0] for p in pix_values for s in sem_values}
        return contact_sheet(results, pix_values, sem_values)


def example_photos() -> list[Path]:
    """The bundled example photos, or none where the package is installed without the repository."""
    return sorted(EXAMPLES.glob("*.png")) if EXAMPLES.is_dir() else []


def demo_workdir() -> Path:
    """A fresh temporary folder for everything the demo writes (results and Gradio's upload cache)."""
    return Path(tempfile.mkdtemp(prefix="pisasr-demo-"))
