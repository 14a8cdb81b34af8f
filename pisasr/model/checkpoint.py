"""Adapter checkpoints: our safetensors format, and import of the official PiSA-SR ``.pkl``.

Our format is one ``pisasr_adapters.safetensors`` file whose tensors are named ``pix.<peft key>`` and
``sem.<peft key>`` (PEFT keys without the adapter name, e.g. ``pix.down_blocks.0...to_q.lora_A.weight``) and
whose header metadata holds the JSON below under ``"pisasr"``. A checkpoint folder holds that file and the same
JSON as ``pisasr_adapters.json`` for people to read. The official ``.pkl`` is a ``torch.save`` dict whose LoRA
tensors are split over six PEFT adapters ``default_{encoder,decoder,others}_{pix,sem}``; every UNet layer lies
in exactly one of encoder/decoder/others, so the three map onto our one ``pix`` (and one ``sem``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from pisasr.config import SD21_BASE
from pisasr.errors import ModelLoadError
from pisasr.io.files import atomic_write
from pisasr.model.dual_lora import ADAPTERS, DualLoRA

FORMAT_VERSION = 1
WEIGHTS_NAME = "pisasr_adapters.safetensors"
META_NAME = "pisasr_adapters.json"
OFFICIAL_ALPHA = 8.0  # PEFT's default lora_alpha, which the official training code left unset
_OFFICIAL_KEY = re.compile(r"\.default_(encoder|decoder|others)_(pix|sem)\.")
OFFICIAL_PARTS = ("encoder", "decoder", "others")


def official_part(module: str) -> str:
    """The official adapter group of a UNet layer: ``down_blocks``/``conv_in`` -> encoder, ``up_blocks``/
    ``conv_out`` -> decoder, anything else -> others (official ``pisasr.py``, ``initialize_unet``, L48-63)."""
    if "down_blocks" in module or "conv_in" in module:
        return "encoder"
    if "up_blocks" in module or "conv_out" in module:
        return "decoder"
    return "others"


def official_key(key: str, name: str) -> str:
    """Our PEFT key of adapter ``name`` -> the official one, the inverse of what ``load_official_pkl`` strips:
    ``X.lora_A.weight`` -> ``X.lora_A.default_<part>_<name>.weight``."""
    head, _, tail = key.rpartition(".")
    return f"{head}.default_{official_part(key.split('.lora_')[0])}_{name}.{tail}"


@dataclass
class CheckpointMeta:
    rank_pix: int
    rank_sem: int
    alpha_pix: float
    alpha_sem: float
    target_modules: list[str]
    base_model: str | None = None
    base_fingerprint: str | None = None  # ``unet_fingerprint`` of the base the adapters were trained on
    timestep: int = 1
    format_version: int = FORMAT_VERSION
    source: str = "pisasr"
    extra: dict = field(default_factory=dict)


@dataclass
class AdapterCheckpoint:
    meta: CheckpointMeta
    states: dict[str, dict[str, torch.Tensor]]  # adapter name -> PEFT state dict
    path: Path

    def build(self, unet) -> DualLoRA:
        """Add both adapters with this checkpoint's ranks and targets to ``unet`` and load the weights."""
        m = self.meta
        missing = [t for t in m.target_modules if t not in dict(unet.named_modules())]
        if missing:
            raise ModelLoadError(
                f"{self.path}: adapter targets such as {missing[0]!r} do not exist in this UNet; "
                f"the checkpoint was made for base {m.base_model!r}"
            )
        dual = DualLoRA(unet, m.rank_pix, m.rank_sem, m.alpha_pix, m.alpha_sem, m.target_modules)
        for name in ADAPTERS:
            dual.load_state_dict(name, self.states[name], source=str(self.path))
        return dual


def save_checkpoint(
    dual: DualLoRA,
    out_dir: str | os.PathLike,
    base_model: str | None = None,
    timestep: int = 1,
    extra: dict | None = None,
    base_fingerprint: str | None = None,
) -> Path:
    """Write ``out_dir/pisasr_adapters.safetensors`` (+ ``.json``) atomically; returns the weights path."""
    meta = CheckpointMeta(
        **dual.metadata(),
        base_model=base_model,
        base_fingerprint=base_fingerprint,
        timestep=timestep,
        extra=extra or {},
    )
    tensors = {
        f"{name}.{k}": v.contiguous().cpu() for name in ADAPTERS for k, v in dual.state_dict(name).items()
    }
    return write_checkpoint(meta, tensors, out_dir)


def write_checkpoint(
    meta: CheckpointMeta, tensors: dict[str, torch.Tensor], out_dir: str | os.PathLike
) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta_json = json.dumps(asdict(meta), indent=2)
    weights = out / WEIGHTS_NAME
    atomic_write(weights, lambda tmp: save_file(tensors, tmp, metadata={"pisasr": meta_json}))
    atomic_write(out / META_NAME, lambda tmp: Path(tmp).write_text(meta_json + "\n"))
    return weights


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_weights_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.is_dir():
        if (p / WEIGHTS_NAME).is_file():
            return p / WEIGHTS_NAME
        raise ModelLoadError(
            f"weights folder {p} has no {WEIGHTS_NAME}; pass a pisasr checkpoint folder or file, or an official .pkl"
        )
    if not p.is_file():
        raise ModelLoadError(f"weights not found: {p}")
    return p


def load_checkpoint(path: str | os.PathLike) -> AdapterCheckpoint:
    """Read our checkpoint (folder or ``.safetensors``) or an official ``.pkl``; validates the format."""
    file = resolve_weights_file(path)
    if file.suffix in (".pkl", ".pt", ".pth"):
        return load_official_pkl(file)
    if file.suffix != ".safetensors":
        raise ModelLoadError(
            f"{file}: unknown weights format (expected a pisasr .safetensors file or folder, or an official .pkl)"
        )
    try:
        with safe_open(str(file), framework="pt") as f:
            header = f.metadata() or {}
        tensors = load_file(str(file))
    except (SafetensorError, OSError) as exc:
        raise ModelLoadError(f"{file}: not a readable safetensors file ({exc})") from None
    if "pisasr" not in header:
        raise ModelLoadError(
            f"{file}: safetensors file without pisasr metadata; it is not a pisasr adapter checkpoint"
        )
    try:
        meta = CheckpointMeta(**json.loads(header["pisasr"]))
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"{file}: unreadable pisasr metadata ({str(exc).splitlines()[0]})") from None
    if meta.format_version > FORMAT_VERSION:
        raise ModelLoadError(
            f"{file}: checkpoint format {meta.format_version} is newer than this pisasr ({FORMAT_VERSION}); upgrade pisasr"
        )
    states: dict[str, dict[str, torch.Tensor]] = {name: {} for name in ADAPTERS}
    for key, value in tensors.items():
        name, _, rest = key.partition(".")
        if name not in states:
            raise ModelLoadError(
                f"{file}: unexpected tensor {key!r} (expected names starting with pix. or sem.)"
            )
        states[name][rest] = value
    return AdapterCheckpoint(meta=meta, states=states, path=file)


def load_official_pkl(path: str | os.PathLike) -> AdapterCheckpoint:
    """Import the released ``pisa_sr.pkl`` (loaded with ``weights_only=True``: no code runs)."""
    path = Path(path)
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle and zip errors come in many types
        raise ModelLoadError(
            f"{path}: not a loadable official PiSA-SR checkpoint ({str(exc).splitlines()[0]})"
        ) from None
    required = ["lora_rank_unet_pix", "lora_rank_unet_sem", "state_dict_unet"]
    if not isinstance(sd, dict) or any(k not in sd for k in required):
        raise ModelLoadError(f"{path}: not an official PiSA-SR checkpoint (needs keys {', '.join(required)})")
    targets: list[str] = []
    for part in ("encoder", "decoder", "others"):
        for name in ADAPTERS:
            for module in sd.get(f"unet_lora_{part}_modules_{name}", []):
                if module not in targets:
                    targets.append(module)
    states: dict[str, dict[str, torch.Tensor]] = {name: {} for name in ADAPTERS}
    for key, value in sd["state_dict_unet"].items():
        match = _OFFICIAL_KEY.search(key)
        if match is None:
            continue  # the official dict holds LoRA tensors only; anything else is not ours to load
        states[match.group(2)][_OFFICIAL_KEY.sub(".", key, count=1)] = value.float()
    if not targets:  # older dumps without module lists: the targets are the layers that carry tensors
        targets = sorted({k.split(".lora_")[0] for st in states.values() for k in st})
    meta = CheckpointMeta(
        rank_pix=int(sd["lora_rank_unet_pix"]),
        rank_sem=int(sd["lora_rank_unet_sem"]),
        alpha_pix=OFFICIAL_ALPHA,
        alpha_sem=OFFICIAL_ALPHA,
        target_modules=targets,
        base_model=SD21_BASE,  # the released checkpoint was trained on SD-2.1-base
        source=f"official:{path.name}",
    )
    return AdapterCheckpoint(meta=meta, states=states, path=path)


def convert_official(
    pkl_path: str | os.PathLike, out_dir: str | os.PathLike, base_model: str | None = None
) -> Path:
    """Rewrite an official ``.pkl`` in our format (same tensors, bit for bit)."""
    ckpt = load_official_pkl(pkl_path)
    ckpt.meta.base_model = base_model or ckpt.meta.base_model
    tensors = {f"{name}.{k}": v.contiguous() for name in ADAPTERS for k, v in ckpt.states[name].items()}
    return write_checkpoint(ckpt.meta, tensors, out_dir)


def check_base(ckpt: AdapterCheckpoint, base: str, fingerprint: str | None = None) -> None:
    """Stop when ``ckpt`` was trained on another base than ``base``: by fingerprint when both are known (exact),
    else by the family the names tell (SD-Turbo vs SD-2.1-base). An unknown side is not an error."""
    from pisasr.model.base import FAMILY_CONFIGS, base_family

    trained_on = ckpt.meta.base_model
    ours, theirs = base_family(base), base_family(trained_on)
    differs = (fingerprint is not None and ckpt.meta.base_fingerprint not in (None, fingerprint)) or (
        ours is not None and theirs is not None and ours != theirs
    )
    if not differs:
        return
    fix = f"--config {FAMILY_CONFIGS[theirs]}" if theirs in FAMILY_CONFIGS else f"--base {trained_on}"
    raise ModelLoadError(
        f"{ckpt.path}: adapters trained on base {trained_on!r} ({theirs or 'unknown family'}) but the base is "
        f"{base!r} ({ours or 'unknown family'}); run with {fix}, or pass --allow_base_mismatch to run anyway"
    )
