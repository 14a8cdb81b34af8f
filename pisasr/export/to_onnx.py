"""``--to onnx``: ``vae_encoder.onnx``, the UNet graph(s) and ``vae_decoder.onnx`` for onnxruntime.

Graphs (float32, ONNX opset ``OPSET``; batch, height and width are dynamic axes):

* ``vae_encoder``: ``image`` [B, 3, H, W] in [-1, 1], H and W multiples of 8 -> ``latent`` [B, 4, H/8, W/8], the
  posterior mode times the VAE's scaling factor (pisasr's ``Pipeline.encode``).
* ``unet`` (pair with equal lambdas, scaled) or ``unet_pix`` and ``unet_full`` (``to_diffusers.unet_plan``):
  ``latent`` -> ``eps`` at the checkpoint's timestep with the prompt embedding built in.
* ``vae_decoder``: ``latent`` -> ``image`` [B, 3, 8h, 8w] in about [-1, 1].

``z_H = z_L - sum_s w_s * unet_s(z_L)`` with the weights of ``pisasr_export.json``; ``examples/onnx_restore.py``
runs the whole restore with numpy, Pillow and onnxruntime. Traced with torch's TorchScript-based exporter
(``dynamo=False``: the dynamo exporter needs onnxscript and still specialises the UNet's skip-connection sizes).
The UNet is traced at a latent size that is not a multiple of its overall down-sampling factor, so that its
up-sampling sizes come from the skip connections' shapes and any latent size works.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import torch
from torch import nn

OPSET = 17
PROTOBUF_LIMIT = 1_800_000_000  # bytes of weights above which a graph keeps them in one external .data file


class VaeEncoder(nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae, self.scaling = vae, float(vae.config.scaling_factor)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(image).latent_dist.mode() * self.scaling


class VaeDecoder(nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae, self.scaling = vae, float(vae.config.scaling_factor)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latent / self.scaling).sample


class EpsGraph(nn.Module):
    """The UNet at a fixed timestep and prompt embedding: latent -> noise prediction."""

    def __init__(self, unet, prompt_embeds: torch.Tensor, timestep: int):
        super().__init__()
        self.unet = unet
        self.register_buffer("prompt_embeds", prompt_embeds.float(), persistent=False)
        self.register_buffer("timestep", torch.tensor([timestep], dtype=torch.long), persistent=False)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        embeds = self.prompt_embeds.expand(latent.shape[0], -1, -1)
        return self.unet(latent, self.timestep, encoder_hidden_states=embeds).sample


def export_graph(module: nn.Module, example: torch.Tensor, io: tuple[str, str], out: Path) -> Path:
    """``torch.onnx.export`` ``module`` to ``out`` with dynamic batch/height/width; weights over the protobuf
    limit go to one ``<name>.data`` file beside it."""
    import onnx

    work = out.parent / f".{out.stem}-work"
    work.mkdir()
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation warnings about the legacy exporter
        torch.onnx.export(
            module.eval(),
            (example,),
            str(work / out.name),
            input_names=[io[0]],
            output_names=[io[1]],
            dynamic_axes={io[0]: axes, io[1]: axes},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    if len(list(work.iterdir())) == 1:  # all weights inside the graph
        (work / out.name).rename(out)
    else:
        model = onnx.load(str(work / out.name))
        onnx.save_model(
            model,
            str(out),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=f"{out.name}.data",
        )
    shutil.rmtree(work)
    return out


def write_onnx(dual, vae, prompt_embeds: torch.Tensor, plan: dict, timestep: int, folder: Path) -> None:
    """All graphs into ``folder`` (float32, traced on the CPU)."""
    from pisasr.export.to_diffusers import merged_unet

    vae = vae.to("cpu", torch.float32).eval()
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    # 9 x 7 latents: odd, so not a multiple of any UNet's down-sampling factor (see the module docstring)
    image = torch.rand(1, 3, 9 * scale, 7 * scale) * 2 - 1
    export_graph(VaeEncoder(vae), image, ("image", "latent"), folder / "vae_encoder.onnx")
    with torch.no_grad():
        latent = VaeEncoder(vae)(image)
    export_graph(VaeDecoder(vae), latent, ("latent", "image"), folder / "vae_decoder.onnx")
    for name, part in plan.items():
        unet = merged_unet(dual, part.adapters, part.scale).to("cpu", torch.float32)
        export_graph(
            EpsGraph(unet, prompt_embeds, timestep), latent, ("latent", "eps"), folder / f"{name}.onnx"
        )
        del unet
