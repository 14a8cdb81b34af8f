"""Validation during training: PSNR/LPIPS of the current adapters on a few pairs, images to TensorBoard."""

from __future__ import annotations

import torch


@torch.no_grad()
def validate(model, validation, accelerator, step: int, limit: int = 4) -> dict:
    """PSNR (RGB, [0, 1]) and LPIPS of the current adapters on the first ``limit`` validation pairs."""
    from pisasr.data.degradation import model_input

    psnrs, lpipss, images = [], [], []
    base = model.base
    for i in range(min(limit, len(validation))):
        item = validation[i]
        hr = item["hr"][None].to(accelerator.device)
        lq = model_input(item["lr"][None].to(accelerator.device), tuple(hr.shape[-2:]))
        h, w = (hr.shape[-2] // 8) * 8, (hr.shape[-1] // 8) * 8
        hr, lq = hr[..., :h, :w], lq[..., :h, :w]
        generator = torch.Generator().manual_seed(i)
        saved_sample, model.vae_sample = model.vae_sample, False
        z = model.encode(lq * 2 - 1, generator)
        model.vae_sample = saved_sample
        cond = model.embed([""])
        eps = base.unet(
            z.to(base.unet.dtype),
            torch.tensor([model.timestep], device=z.device),
            encoder_hidden_states=cond.to(base.unet.dtype),
        ).sample
        pred = base.vae.decode(
            ((z - eps.float()) / base.vae.config.scaling_factor).to(base.vae.dtype)
        ).sample.float()
        pred01 = ((pred + 1) / 2).clamp(0, 1)
        psnrs.append(float(-10 * torch.log10(torch.mean((pred01 - hr) ** 2).clamp_min(1e-10))))
        if model.lpips is not None:
            lpipss.append(float(model.lpips(pred01 * 2 - 1, hr * 2 - 1).mean()))
        images.append(torch.cat([lq, pred01, hr], dim=-1)[0])
    metrics = {"val/psnr": sum(psnrs) / len(psnrs)}
    if lpipss:
        metrics["val/lpips"] = sum(lpipss) / len(lpipss)
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            for i, img in enumerate(images):
                tracker.writer.add_image(f"val/{i}_lq_pred_hr", img.cpu(), step)
    return metrics
