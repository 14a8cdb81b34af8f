"""Batch inference over files: sharding across processes, resumable, never stopped by one bad file."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from tqdm import tqdm

from pisasr.errors import PiSAError
from pisasr.fileio import atomic_write, atomic_write_text
from pisasr.image_io import read_image, save_image
from pisasr.pipeline import Pipeline
from pisasr.sweep import contact_sheet, sweep_name


@dataclass
class BatchSummary:
    done: int = 0
    skipped: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)

    def merge(self, other: BatchSummary) -> None:
        self.done += other.done
        self.skipped += other.skipped
        self.seconds += other.seconds
        self.failures.extend(other.failures)

    def report(self) -> str:
        mean = f", {self.seconds / self.done:.2f} s per image" if self.done else ""
        lines = [
            f"{self.done} restored, {self.skipped} skipped (existing), {len(self.failures)} failed{mean}"
        ]
        lines += [f"  failed: {message}" for _, message in self.failures]
        return "\n".join(lines)


def check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise PiSAError(
            f"output folder {folder} is not writable ({exc.strerror or exc}); choose another with -o"
        ) from None


def check_unique_stems(inputs: list[Path]) -> None:
    seen: dict[str, Path] = {}
    for path in inputs:
        if path.stem in seen:
            raise PiSAError(
                f"inputs {seen[path.stem]} and {path} would both be written as {path.stem}.png; rename one"
            )
        seen[path.stem] = path


def outputs_for(stem: str, out_dir: Path, pairs: list[tuple[float, float]], sweep: bool) -> list[Path]:
    if not sweep:
        return [out_dir / f"{stem}.png"]
    return [out_dir / sweep_name(stem, p, s) for p, s in pairs] + [out_dir / f"{stem}_sweep.png"]


def run_batch(
    pipe: Pipeline,
    inputs: list[Path],
    out_dir: Path,
    pairs: list[tuple[float, float]],
    sweep_axes: tuple[list[float], list[float]] | None = None,
    skip_existing: bool = False,
    show_progress: bool = True,
) -> BatchSummary:
    """Restore each input for every pair and write the PNGs; one failure is recorded and the batch goes on."""
    summary = BatchSummary()
    for path in tqdm(inputs, desc="pisasr", unit="img", disable=not show_progress, file=sys.stderr):
        targets = outputs_for(path.stem, out_dir, pairs, sweep_axes is not None)
        if skip_existing and all(t.is_file() for t in targets):
            summary.skipped += 1
            continue
        start = time.perf_counter()
        try:
            image = read_image(path)
            results = pipe.restore(image, pairs)
            if sweep_axes is None:
                save_image(results[pairs[0]], targets[0], image.bit_depth)
            else:
                for (p, s), target in zip(pairs, targets):
                    save_image(results[(p, s)], target, image.bit_depth)
                sheet = contact_sheet(results, *sweep_axes)
                atomic_write(targets[-1], partial(sheet.save, format="PNG"))
        except PiSAError as exc:
            summary.failures.append((str(path), str(exc)))
            tqdm.write(f"error: {exc}", file=sys.stderr)
            continue
        except Exception as exc:  # a bad file must not end a long batch; the message still names it
            message = f"{path}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            summary.failures.append((str(path), message))
            tqdm.write(f"error: {message}", file=sys.stderr)
            continue
        summary.done += 1
        summary.seconds += time.perf_counter() - start
    return summary


def write_run_record(out_dir: Path, record: dict) -> None:
    """``run.json``: settings, weights hash, versions; written atomically."""
    atomic_write_text(out_dir / "run.json", json.dumps(record, indent=2, default=str))


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in ("pisasr", "torch", "diffusers", "transformers", "peft", "accelerate"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions
