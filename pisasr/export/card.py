"""The model card (``README.md``) written into every exported folder, so that it can be pushed to a hub as it is:
base, ranks and alphas, the training config and step from the checkpoint's metadata, the pair, how to load it."""

from __future__ import annotations

from pathlib import Path

from pisasr.export.source import Source

HOW_TO_LOAD = {
    "lora": """```python
import torch
from diffusers import StableDiffusionPipeline

pipe = StableDiffusionPipeline.from_pretrained("{base}")
pipe.load_lora_weights("{root}/pix", adapter_name="pix")
pipe.load_lora_weights("{root}/sem", adapter_name="sem")
unet, t = pipe.unet, torch.tensor([{timestep}])
emb = pipe.encode_prompt("", "cpu", 1, False)[0]  # the empty prompt, as PiSA-SR
pipe.set_adapters(["pix"])
eps_pix = unet(z_lr, t, encoder_hidden_states=emb).sample
pipe.set_adapters(["pix", "sem"])
eps_full = unet(z_lr, t, encoder_hidden_states=emb).sample
z_hr = z_lr - lambda_pix * eps_pix - lambda_sem * (eps_full - eps_pix)
```
`z_lr` is the VAE posterior mode of the x{upscale} bicubic-upsampled image times the VAE's scaling factor. Each
adapter also loads alone: `UNet2DConditionModel.load_lora_adapter(folder, prefix="unet", use_safetensors=True, adapter_name=...)`. The
lambdas combine the two noise predictions; diffusers' per-adapter `set_adapters(..., weights)` scales the weights
instead, which is not the same.""",
    "diffusers": """Needs diffusers only (the VAE and the prompt embedding are in this folder); see `docs/export.md` of
pisasr for the tested snippet:
```python
spec = json.load(open("{root}/pisasr_export.json"))
emb = safetensors.torch.load_file("{root}/prompt_embeds.safetensors")["prompt_embeds"]
unets = {{s: UNet2DConditionModel.from_pretrained("{root}", subfolder=s) for s in spec["unets"]}}
z_hr = z_lr - sum(w * unets[s](z_lr, {timestep}, encoder_hidden_states=emb).sample for s, w in spec["unets"].items())
```""",
    "onnx": """Needs numpy, Pillow and onnxruntime only:
```
python examples/onnx_restore.py {root} input.png output.png [--lambda_pix A --lambda_sem B]
```
(`examples/onnx_restore.py` of pisasr). Graphs: `vae_encoder.onnx` (image in [-1, 1] -> scaled latent),
{graphs}, `vae_decoder.onnx`; opset {opset}, dynamic batch, height and width (image sides multiples of 8).""",
}


def model_card(
    source: Source, fmt: str, folder: Path, *, pair=None, unets=None, adapter=None, opset=None
) -> str:
    """Markdown with a hub metadata header; ``adapter``: this folder holds only that adapter (``--to lora``)."""
    m = source.ckpt.meta
    base = source.cfg.model.base
    hub_base = base if "/" in base and not Path(base).exists() else None
    tags = ["pisa-sr", "super-resolution", "image-to-image", "stable-diffusion", fmt]
    lines = ["---", "library_name: " + {"onnx": "onnx"}.get(fmt, "diffusers")]
    if hub_base:
        lines.append(f"base_model: {hub_base}")
    lines += ["tags:", *(f"- {t}" for t in tags), "---", ""]
    title = {"lora": "LoRA adapters", "diffusers": "merged diffusers UNet", "onnx": "ONNX graphs"}[fmt]
    lines += [f"# PiSA-SR {title}" + (f": `{adapter}`" if adapter else ""), ""]
    lines += [
        "PiSA-SR one-step super-resolution (pixel-level `pix` and semantic-level `sem` LoRA adapters on a frozen "
        "Stable Diffusion 2.x UNet), exported by pisasr: "
        "`z_H = z_L - lambda_pix * eps_pix - lambda_sem * (eps_full - eps_pix)` at timestep "
        f"{m.timestep} with the prompt {source.cfg.inference.prompt!r}.",
        "",
        "| | |",
        "|---|---|",
        f"| base model | `{base}` (trained on `{m.base_model}`) |",
        f"| base UNet fingerprint | `{source.base.fingerprint}` |",
        f"| pix adapter | rank {m.rank_pix}, alpha {m.alpha_pix:g} |",
        f"| sem adapter | rank {m.rank_sem}, alpha {m.alpha_sem:g} |",
        f"| adapted layers | {len(m.target_modules)} |",
        f"| training step | {m.extra.get('step', 'not recorded')} |",
        f"| checkpoint | `{source.ckpt.path.name}` ({m.source}) |",
    ]
    if pair is not None:
        lines.append(f"| (lambda_pix, lambda_sem) | ({pair[0]:g}, {pair[1]:g}) |")
    if unets:
        lines.append("| UNets and weights w | " + ", ".join(f"`{k}`: {w:g}" for k, w in unets.items()) + " |")
    lines += ["", "## How to load", ""]
    graphs = ", ".join(f"`{k}.onnx`" for k in unets or {})
    root = {"lora": "..", "diffusers": ".", "onnx": "."}[fmt] if adapter else "."
    lines.append(
        HOW_TO_LOAD[fmt].format(
            base=base,
            root=root,
            timestep=m.timestep,
            upscale=source.cfg.inference.upscale,
            graphs=graphs,
            opset=opset,
        )
    )
    if fmt != "lora":
        lines += [
            "",
            "`z_hr = z_lr - sum(w * unet(z_lr))` over the UNets with the weights above; one UNet means the pair is "
            "built in (its `conv_out` is scaled by lambda), two unscaled UNets (`pix`, `full`) take any pair with "
            "`w_pix = lambda_pix - lambda_sem`, `w_full = lambda_sem`. pisasr also upsamples the input with "
            "PIL's bicubic, reflect-pads it to a multiple of 8 and applies an AdaIN colour fix.",
        ]
    training = source.training_config
    lines += ["", "## Training config", ""]
    lines += ["```yaml", training.rstrip(), "```"] if training else ["Not recorded with this checkpoint."]
    return "\n".join(lines) + "\n"
