"""Prompts for GT images from a transformers model, written as JSONL ``{"path": ..., "prompt": ...}``.

Two tasks: ``caption`` (an image-to-text model; default ``Salesforce/blip-image-captioning-large``) and ``tags``
(zero-shot image classification over a tag vocabulary, the top-k tags joined by ", ", close to the RAM tags the
official training used; default ``openai/clip-vit-large-patch14`` over pisasr's built-in vocabulary). Training can
tag each crop on the fly instead (``data.tagger``, ``pisasr.data.tagging``). Resumable: paths already in the output
are skipped and new lines are appended batch by batch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from pisasr.data.tagging import DEFAULT_TAGGER, DEFAULT_TEMPLATE
from pisasr.errors import ModelLoadError
from pisasr.io.hub import offline_if_unreachable

DEFAULT_MODELS = {"caption": "Salesforce/blip-image-captioning-large", "tags": DEFAULT_TAGGER}


def done_paths(out: Path) -> set[str]:
    if not out.is_file():
        return set()
    done = set()
    for line in out.read_text().splitlines():
        try:
            done.add(json.loads(line)["path"])
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a line cut by an interrupted run is simply redone
    return done


def _load_runner(task: str, model: str, device: str):
    """transformers' pipeline for ``task``; a model that cannot be loaded is one ``ModelLoadError`` line."""
    from transformers import pipeline

    kind = {"caption": "image-to-text", "tags": "zero-shot-image-classification"}[task]
    try:
        with offline_if_unreachable(model):
            return pipeline(kind, model=model, device=device)
    except (OSError, ValueError, KeyError) as exc:
        reason = str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"cannot load the {task} model {model!r}: {reason}. Use a hub id (default {DEFAULT_MODELS[task]}) "
            "or a local folder; offline, a hub id must already be in the Hugging Face cache"
        ) from None


def extract_prompts(
    files: Sequence[Path],
    out: str | Path,
    task: str = "caption",
    model: str | None = None,
    tags: Sequence[str] = (),
    top_k: int = 8,
    batch_size: int = 8,
    device: str = "cpu",
) -> int:
    """Write prompts for ``files`` not yet in ``out``; returns how many were added."""
    out = Path(out)
    todo = [p for p in files if str(p.resolve()) not in done_paths(out)]
    if not todo:
        return 0
    if task == "tags" and not tags:
        raise ValueError("task 'tags' needs a tag vocabulary")
    runner = _load_runner(task, model or DEFAULT_MODELS[task], device)
    added = 0
    if out.is_file() and out.stat().st_size and not out.read_bytes().endswith(b"\n"):
        with out.open("a") as f:
            f.write("\n")  # end the line an interrupted run left unfinished
    with out.open("a") as f:
        for start in tqdm(range(0, len(todo), batch_size), desc="prompts", unit="batch"):
            batch = todo[start : start + batch_size]
            images = [Image.open(p).convert("RGB") for p in batch]
            if task == "caption":
                results = runner(images, batch_size=len(images))
                texts = [r[0]["generated_text"].strip() for r in results]
            else:
                results = runner(
                    images,
                    candidate_labels=list(tags),
                    hypothesis_template=DEFAULT_TEMPLATE,
                    batch_size=len(images),
                )
                texts = [", ".join(r["label"] for r in result[:top_k]) for result in results]
            for path, text in zip(batch, texts):
                f.write(json.dumps({"path": str(path.resolve()), "prompt": text}) + "\n")
            f.flush()
            added += len(batch)
    return added
