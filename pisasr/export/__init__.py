"""Export a pisasr (or official) checkpoint to the formats its users load.

=============  ==========================================================  ====================================
``--to``       writes                                                      loaded by
=============  ==========================================================  ====================================
``official``   ``OUT.pkl``, the official ``save_model`` dict               the official PiSA-SR code
``lora``       ``OUT/pix``, ``OUT/sem``: diffusers LoRA folders            ``load_lora_weights`` / ``load_lora_adapter``
``diffusers``  ``OUT/unet`` or ``OUT/unet_pix`` + ``OUT/unet_full``, vae   ``UNet2DConditionModel.from_pretrained``
``onnx``       ``OUT/vae_encoder.onnx``, UNet graph(s), ``vae_decoder``    onnxruntime (``examples/onnx_restore.py``)
=============  ==========================================================  ====================================

Every folder gets a model card (``README.md``). Outputs are written under a temporary name beside ``OUT`` and
renamed when complete; an existing ``OUT`` is refused.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from pisasr.errors import ConfigError

FORMATS = ("official", "lora", "diffusers", "onnx")


def export(
    cfg: DictConfig,
    to: str,
    out: str | Path,
    lambda_pix: float | None = None,
    lambda_sem: float | None = None,
) -> Path:
    """Export ``cfg.model.weights`` (on ``cfg.model.base``) as ``to`` into ``out``; returns ``out``.

    ``lambda_pix``/``lambda_sem`` (``diffusers``, ``onnx``): the pair to build in; for ``diffusers`` they default to
    the config's pair, for ``onnx`` no pair exports the unscaled pix and full UNets (any pair at run time)."""
    from pisasr.export.source import check_output_free, load_source

    if to not in FORMATS:
        raise ConfigError(f"unknown export format {to!r}; choose one of {', '.join(FORMATS)}")
    if (lambda_pix is None) != (lambda_sem is None):
        raise ConfigError("give both --lambda_pix and --lambda_sem, or neither")
    if to in ("official", "lora") and lambda_pix is not None:
        raise ConfigError(
            f"--to {to} exports the adapters themselves; --lambda_pix/--lambda_sem do not apply"
        )
    if to == "onnx":
        _require_onnx()
    out = Path(out)
    check_output_free(out)  # before the big load
    source = load_source(cfg)
    if to == "official":
        from pisasr.export.to_official import export_official

        return export_official(source.ckpt, out)
    if to == "lora":
        return _export_lora(source, out)
    if lambda_pix is None and to == "diffusers":
        lambda_pix, lambda_sem = float(cfg.inference.lambda_pix), float(cfg.inference.lambda_sem)
    return _export_merged(source, to, out, lambda_pix, lambda_sem)


def _require_onnx() -> None:
    import importlib.util

    missing = [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"--to onnx needs {' and '.join(missing)}: pip install -e '.[export]'")


def _export_lora(source, out: Path) -> Path:
    from pisasr.export.card import model_card
    from pisasr.export.source import staged_folder
    from pisasr.export.to_lora import write_lora_folders

    with staged_folder(out) as tmp:
        for name, folder in write_lora_folders(source.dual, tmp).items():
            (folder / "README.md").write_text(model_card(source, "lora", folder, adapter=name))
        (tmp / "README.md").write_text(model_card(source, "lora", tmp))
    return out


def _export_merged(source, to: str, out: Path, lambda_pix: float | None, lambda_sem: float | None) -> Path:
    from pisasr.export.card import model_card
    from pisasr.export.source import staged_folder
    from pisasr.export.to_diffusers import ExportInfo, unet_plan, write_diffusers

    cfg = source.cfg
    plan = unet_plan(lambda_pix, lambda_sem)
    pair = (1.0 if lambda_pix is None else lambda_pix, 1.0 if lambda_sem is None else lambda_sem)
    unets = {name: part.weight for name, part in plan.items()}
    timestep = source.ckpt.meta.timestep
    embeds = source.prompt_embedding()
    info = ExportInfo(
        format=to,
        lambda_pix=float(pair[0]),
        lambda_sem=float(pair[1]),
        unets=unets,
        pair_fixed="unet" in plan,
        timestep=int(timestep),
        prompt=cfg.inference.prompt,
        vae_scaling_factor=float(source.base.vae.config.scaling_factor),
        upscale=int(cfg.inference.upscale),
        process_size=int(cfg.inference.process_size),
        color_fix=cfg.inference.color_fix,
    )
    opset = None
    with staged_folder(out) as tmp:
        if to == "diffusers":
            write_diffusers(source.dual, source.base.vae, embeds, plan, tmp)
        else:
            from pisasr.export.to_onnx import OPSET, write_onnx

            opset = info.extra["opset"] = OPSET
            write_onnx(source.dual, source.base.vae, embeds, plan, timestep, tmp)
        info.write(tmp)
        (tmp / "README.md").write_text(model_card(source, to, tmp, pair=pair, unets=unets, opset=opset))
    return out
