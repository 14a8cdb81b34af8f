"""The region flags of ``scripts/infer.py`` (kept light: parsing ``--help`` imports no model code)."""

from __future__ import annotations

import argparse
import math

from pisasr.config import PROTECT_PAIRS, protect_kinds
from pisasr.errors import ConfigError


def parse_pair(text: str) -> list[float]:
    """``"1.0,0.5"`` -> [1.0, 0.5] (for ``--lambda_inside`` and ``--lambda_outside``)."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 2 or not all(math.isfinite(v) for v in values):
        raise ConfigError(f"{text!r} must be a pair of finite numbers 'LAMBDA_PIX,LAMBDA_SEM', e.g. 1.0,0.5")
    return values


def _pair(text: str) -> list[float]:
    try:
        return parse_pair(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _kinds(text: str) -> list[str]:
    """``"faces,text"`` -> ["faces", "text"] (a comma list, like the pairs, so trailing key=value stay apart)."""
    try:
        return list(protect_kinds(text))
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("config value inference.protect=", "")) from None


def add_region_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("regions (a lambda pair per region; README, Regions)")
    g.add_argument("--mask", help="mask image, or folder with one mask per input stem; white = the region")
    g.add_argument("--lambda_inside", type=_pair, metavar="P,S", help="pair inside the mask, e.g. 1.0,0.5")
    g.add_argument(
        "--lambda_outside", type=_pair, metavar="P,S", help="pair outside (default --lambda_pix,--lambda_sem)"
    )
    g.add_argument("--feather", type=float, metavar="PX", help="blend region borders over PX output pixels")
    g.add_argument(
        "--save_masks",
        action="store_true",
        default=None,
        help="write the latent-resolution lambda maps beside the outputs",
    )
    defaults = "; ".join(f"{k} {p[0]:g},{p[1]:g}" for k, p in PROTECT_PAIRS.items())
    g.add_argument(
        "--protect",
        type=_kinds,
        metavar="faces|text|faces,text",
        help=f"give detected faces and/or text their own pair ({defaults}; inference.protect_pair=[P,S] for all)",
    )
