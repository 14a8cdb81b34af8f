"""``python scripts/demo.py [--config ...] [--base ...] [--weights ...] [--host 127.0.0.1 --port 7860]``.

Serves the Gradio demo (``pisasr/demo/engine.py``) over one ``Pipeline`` built from the same configuration as the CLI
(tiling, device, dtype); trailing ``key=value`` pairs override the config. Binds to loopback unless told
otherwise; everything it writes goes to one temporary folder, removed on exit, including on SIGTERM (what
docker and systemd send), SIGINT and SIGHUP.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time

from pisasr.cli import apply_flags, quiet_libraries, run_cli
from pisasr.config import load_config

FLAGS = {
    "base": "model.base",
    "weights": "model.weights",
    "device": "inference.device",
    "dtype": "inference.dtype",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Interactive PiSA-SR demo with live lambda sliders.")
    p.add_argument("--config", help="YAML config (default: built-in SD-Turbo defaults)")
    p.add_argument("--base", help="base model: hub id or local diffusers folder")
    p.add_argument("--weights", help="pisasr checkpoint or official .pkl")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--dtype", choices=["fp32", "fp16", "bf16"])
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--max_upload_mb", type=float, default=20.0, help="uploads above this are refused (20)")
    p.add_argument(
        "--max_pixels", type=int, default=512 * 512,
        help="uploads with more pixels are refused before decoding (262144 = 512x512, a 2048x2048 output)",
    )  # fmt: skip
    p.add_argument(
        "--max_sessions", type=int, default=8,
        help="cached uploads kept in memory, least recently used dropped first (8)",
    )  # fmt: skip
    p.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    p.add_argument("overrides", nargs="*", help="config overrides key=value, e.g. inference.latent_tile=64")
    return p


def stop_on_signals() -> None:
    """SIGTERM, SIGINT and SIGHUP end the server as Ctrl-C does, so that the ``finally`` below removes the
    temporary folder; a signal the parent made us ignore (``nohup``, ``&`` in a script) stays ignored. A second
    signal kills at once."""

    from pisasr.cli.stopping import Stopped

    def stop(signum, frame):
        signal.signal(signum, signal.SIG_DFL)
        raise Stopped(signum)  # a KeyboardInterrupt that says which signal it was

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, stop)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    apply_flags(cfg, args, FLAGS)
    from pisasr.demo.engine import EXAMPLES, UNTRAINED_NOTE, DemoEngine, DemoLimits, demo_workdir

    limits = DemoLimits(args.max_upload_mb, args.max_pixels, args.max_sessions)
    stop_on_signals()
    workdir = demo_workdir()
    try:
        os.environ["GRADIO_TEMP_DIR"] = str(workdir / "uploads")  # Gradio's own cache stays in our folder too
        from pisasr.demo.app import build_app  # imports gradio, which reads GRADIO_TEMP_DIR once

        quiet_libraries()
        from pisasr.inference.pipeline import Pipeline

        pipe = Pipeline.from_config(cfg)
        if not cfg.model.weights:
            print(f"note: {UNTRAINED_NOTE}", file=sys.stderr)
        app = build_app(DemoEngine(pipe, workdir / "results", limits))
        print(f"demo on http://{args.host}:{args.port} (files in {workdir})", file=sys.stderr, flush=True)
        app.launch(
            server_name=args.host,
            server_port=args.port,
            share=args.share,
            allowed_paths=[str(workdir), str(EXAMPLES)],
            max_file_size=int(args.max_upload_mb * 2**20),
            prevent_thread_lock=True,  # our wait below: Gradio's calls every signal a "Keyboard interruption"
        )
        try:
            while app.is_running:
                time.sleep(0.1)
        finally:
            app.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def entry() -> None:
    sys.exit(run_cli(main))
