"""Markdown tables from benchmarks/results/*.jsonl (the raw figures the benchmark scripts append).

python -m benchmarks.report
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def rows(name: str) -> list[dict]:
    path = RESULTS / name
    return (
        [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    )


def table(headers: list[str], body: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def main() -> None:
    infer = rows("infer.jsonl")
    single = [r for r in infer if r["suite"] == "single"]
    if single:
        print(f"Machine: {single[0]['machine']}\n")
        print(table(
            ["mode (lambda_pix, lambda_sem)", "dtype", "channels_last", "load s", "s / image", "GFLOP", "achieved GFLOP/s",
             "matmul peak GFLOP/s", "time / FLOP-bound", "peak RSS GB"],
            [[tuple(r["pair"]), r["dtype"], r["channels_last"], r["load_s"], r["seconds"], r["gflop"], r["achieved_gflops"],
              r["matmul_peak_gflops"], r["vs_flop_bound"], r["peak_mem_gb"]] for r in single],
        ))  # fmt: skip
        print()
    sweep = [r for r in infer if r["suite"] == "sweep"]
    if sweep:
        print(
            table(
                ["3x3 sweep s", "nine default runs s", "speed-up", "peak RSS GB"],
                [[r["sweep_3x3_s"], r["nine_default_runs_s"], r["speedup"], r["peak_mem_gb"]] for r in sweep],
            )
        )
        print()
    large = [r for r in infer if r["suite"] == "large"]
    if large:
        print(
            table(
                ["output", "dtype", "latent tile", "VAE tile", "s", "peak RSS GB"],
                [
                    [
                        f"{r['out_size']}x{r['out_size']}",
                        r["dtype"],
                        r["latent_tile"],
                        r["vae_tile"],
                        r["seconds"],
                        r["peak_mem_gb"],
                    ]
                    for r in large
                ],
            )
        )
        print()
    train_rows = rows("train.jsonl")
    train = [r for r in train_rows if r["suite"] == "train_step"]
    if train:
        print(
            table(
                ["stage", "crop", "batch", "gradient checkpointing", "s / step", "peak RSS GB"],
                [
                    [
                        r["stage"],
                        r["crop"],
                        r["batch"],
                        r["gradient_checkpointing"],
                        r["seconds_per_step"],
                        r["peak_rss_gb"],
                    ]
                    for r in train
                ],
            )
        )
        print()
    tagger = [r for r in train_rows if r["suite"] == "tagger"]
    if tagger:
        print(
            table(
                ["on-the-fly tagging (CLIP-L/14 image tower)", "crop", "batch", "dtype", "s / batch", "s / crop"],
                [["data.tagger", r["crop"], r["batch"], r["dtype"], r["seconds_per_batch"], r["seconds_per_crop"]]
                 for r in tagger],
            )
        )  # fmt: skip
        print()
    degradation = RESULTS / "degradation.md"
    if degradation.is_file():
        print(degradation.read_text())


if __name__ == "__main__":
    main()
