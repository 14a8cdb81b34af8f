"""Batch inference over files: sharding across processes, resumable, never stopped by one bad file."""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from tqdm import tqdm

from pisasr.errors import PiSAError, plural
from pisasr.inference.outputs import OutputNaming, already_written, save_sheet, write_output
from pisasr.inference.pipeline import Pipeline, Prepared
from pisasr.inference.sweep import contact_sheet
from pisasr.io.images import read_image


@dataclass
class BatchSummary:
    done: int = 0
    skipped: int = 0
    seconds: float = 0.0  # the whole batch's wall time
    model_seconds: float = 0.0  # spent restoring: the model's passes and decoding
    model_images: int = 0  # images those passes restored (written since, or failed when written)
    failures: list[tuple[str, str]] = field(default_factory=list)
    written: list[str] = field(default_factory=list)  # output file names, for the run record
    skipped_outputs: list[str] = field(default_factory=list)
    # PNGs written instead of a format that could not hold them
    fallbacks: list[str] = field(default_factory=list)

    def merge(self, other: BatchSummary) -> None:
        self.done += other.done
        self.skipped += other.skipped
        self.seconds += other.seconds
        self.model_seconds += other.model_seconds
        self.model_images += other.model_images
        self.failures.extend(other.failures)
        self.written.extend(other.written)
        self.skipped_outputs.extend(other.skipped_outputs)
        self.fallbacks.extend(other.fallbacks)

    def report(self) -> str:
        # time spent restoring per image restored, not the run's wall time per image written: reading, skipping
        # and failed writes (a full disk) do not inflate it
        mean = (
            f", {self.model_seconds / self.model_images:.2f} s per image restoring"
            if self.model_images
            else ""
        )
        lines = [
            f"{self.done} restored, {self.skipped} skipped (existing), {len(self.failures)} failed{mean}"
        ]
        if self.fallbacks:
            holds = "holds" if len(self.fallbacks) == 1 else "hold"
            lines.append(
                f"  note: {plural(len(self.fallbacks), 'output')} {holds} alpha or 16 bits, which the requested "
                "format cannot: "
                f"written as PNG ({', '.join(sorted(self.fallbacks)[:3])}{', ...' if len(self.fallbacks) > 3 else ''})"
            )
        lines += [f"  failed: {message}" for _, message in self.failures]
        return "\n".join(lines)


class _Inline:
    """An executor that runs each job at once in the caller's thread (``io_workers=0``)."""

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except Exception as exc:  # delivered through the future, as a pool would
            future.set_exception(exc)
        return future

    def shutdown(self, wait: bool = True) -> None:
        pass


def _failure_message(path: Path, exc: Exception) -> str:
    if isinstance(exc, PiSAError):
        return str(exc)
    return f"{path}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


@dataclass
class _Job:
    path: Path
    targets: list[Path]
    prepared: Prepared | None = None
    spec: object = None  # this image's lambda map (pisasr.regions.maps), if any


def run_batch(
    pipe: Pipeline,
    inputs: list[Path],
    out_dir: Path,
    pairs: list[tuple[float, float]],
    sweep_axes: tuple[list[float], list[float]] | None = None,
    skip_existing: bool = False,
    show_progress: bool = True,
    batch_size: int = 1,
    io_workers: int = 2,
    naming: OutputNaming | None = None,
    quality: int = 95,
    summary: BatchSummary | None = None,
    regions: Callable[[Prepared], object] | None = None,
    side_files: Callable[[str], list[Path]] | None = None,
) -> BatchSummary:
    """Restore each input for every pair and write the PNGs; one failure is recorded and the batch goes on.

    Images of the same size go through the model ``batch_size`` at a time. With ``io_workers`` > 0, reading and
    preprocessing of upcoming images and the colour fix and writing of finished ones run in threads while the
    model works. A batch that fails is retried image by image, so a bad file only fails itself. An output that
    cannot be written fails its image (reported, counted in ``failures``); ``skip_existing`` skips an input only
    when all its outputs are complete images (an empty or cut file is redone). ``regions`` gives each prepared
    image its lambda map (``pisasr.regions.files``), in place of ``pairs[0]``; ``side_files(stem)`` names the other
    files an input must have for ``skip_existing`` to skip it.
    """
    naming = naming or OutputNaming()
    summary = summary if summary is not None else BatchSummary()  # filled as it goes: kept if interrupted
    start = time.perf_counter()
    jobs = []
    for path in inputs:
        targets = naming.targets(path.stem, out_dir, pairs, sweep_axes is not None)
        side = side_files(path.stem) if side_files else []  # e.g. --save_masks maps must exist too
        if skip_existing and all(already_written(t) for t in targets + side):
            summary.skipped += 1
            summary.skipped_outputs.extend(t.name for t in targets)
        else:
            jobs.append(_Job(path, targets))
    readers = ThreadPoolExecutor(io_workers, "pisasr-read") if io_workers else _Inline()
    writers = ThreadPoolExecutor(io_workers, "pisasr-write") if io_workers else _Inline()
    progress = tqdm(total=len(jobs), desc="pisasr", unit="img", disable=not show_progress, file=sys.stderr)
    writes: list[tuple[_Job, Future]] = []

    def fail(job: _Job, exc: Exception) -> None:
        message = _failure_message(job.path, exc)
        summary.failures.append((str(job.path), message))
        tqdm.write(f"error: {message}", file=sys.stderr)
        progress.update(1)

    def write(job: _Job, decoded: dict) -> None:
        """Colour-fix and write one image's outputs; each file is recorded as soon as it is on disk."""
        results = {pair: pipe.finish(job.prepared, d[None]) for pair, d in decoded.items()}
        bit_depth = job.prepared.image.bit_depth
        steps = [
            (target, partial(write_output, results[pair], target, bit_depth, quality))
            for pair, target in zip(pairs, job.targets)
        ]
        if sweep_axes is not None:
            sheet = job.targets[-1]
            steps.append((sheet, partial(save_sheet, contact_sheet(results, *sweep_axes), sheet)))
        for target, write_one in steps:
            try:
                path = write_one()
            except (OSError, ValueError) as exc:
                reason = (
                    exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
                )
                raise PiSAError(f"{job.path}: its output {target} could not be written ({reason})") from None
            summary.written.append(path.name)
            if path != target:
                summary.fallbacks.append(path.name)

    def run_model(group: list[_Job]) -> None:
        tic = time.perf_counter()
        try:
            prepared = [job.prepared for job in group]
            specs = [job.spec for job in group if job.spec is not None]
            # with maps, every image renders its own spec: the global pair would only add unused UNet passes
            latents = pipe.predict(prepared, specs if len(specs) == len(group) else pairs + specs)
            decoded = [{} for _ in group]
            for pair in pairs:
                z = pipe.combine(latents, prepared, [pair if job.spec is None else job.spec for job in group])
                for per_image, d in zip(decoded, pipe.decode(z).cpu()):
                    per_image[pair] = d
        except Exception as exc:
            if len(group) > 1:  # find the culprit: one image at a time
                for job in group:
                    run_model([job])
                return
            fail(group[0], exc)
            return
        summary.model_seconds += time.perf_counter() - tic
        summary.model_images += len(group)
        for job, per_image in zip(group, decoded):
            writes.append((job, writers.submit(write, job, per_image)))

    def drain_writes() -> None:
        while writes:
            job, future = writes.pop(0)
            try:
                future.result()
            except Exception as exc:
                fail(job, exc)
                continue
            summary.done += 1
            progress.update(1)

    def read(path: Path) -> tuple[Prepared, object]:
        prepared = pipe.prepare(read_image(path))
        return prepared, regions(prepared) if regions is not None else None

    pending = iter(jobs)
    reads: deque[tuple[_Job, Future]] = deque()
    lookahead = batch_size + 2 * max(io_workers, 1)  # images read ahead of the model, bounded for memory
    buckets: dict[tuple, list[_Job]] = {}
    try:
        while True:
            while len(reads) < lookahead and (job := next(pending, None)) is not None:
                reads.append((job, readers.submit(read, job.path)))
            if not reads:
                break
            job, future = reads.popleft()
            try:
                job.prepared, job.spec = future.result()
            except Exception as exc:
                fail(job, exc)
                continue
            bucket = buckets.setdefault(job.prepared.batch_key, [])
            bucket.append(job)
            if len(bucket) == batch_size:
                run_model(buckets.pop(job.prepared.batch_key))
            elif (
                sum(map(len, buckets.values())) > 2 * batch_size
            ):  # odd sizes do not wait for company forever
                run_model(buckets.pop(next(iter(buckets))))
            if len(writes) > 2 * max(io_workers, 1):  # bound the decoded images held in memory
                drain_writes()
        for bucket in buckets.values():
            run_model(bucket)
        drain_writes()
    finally:
        readers.shutdown(wait=True)
        writers.shutdown(wait=True)
        progress.close()
    summary.seconds = time.perf_counter() - start
    return summary


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in ("pisasr", "torch", "diffusers", "transformers", "peft", "accelerate"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions
