"""Two-stage dual-LoRA training under Accelerate.

Design choices that make the stage switch correct under DDP and resume exact:

* One AdamW over *both* adapters' parameters. A frozen adapter's parameters have ``requires_grad=False`` and their
  gradients stay ``None`` (``zero_grad(set_to_none=True)``), so AdamW skips them entirely: no weight decay, no
  momentum, bit-identical. The ``sem`` parameters get fresh moments at their first step, as with a new optimizer.
* The UNet is not wrapped in DDP: after backward, the gradients of whatever is trainable *now* are all-reduced
  (LoRA gradients are a few MB). So the ``sem`` adapter is synchronised in stage 2, which the official code,
  wrapping once while ``sem`` is frozen, never does.
* Every random draw of a step (degradation, prompt dropping, VAE sample, CSD t and noise) comes from a generator
  seeded by ``(seed, micro-batch index, rank)``, and the data order by ``(seed, epoch)``, so a resumed run
  continues exactly where the stopped one was.
"""

from __future__ import annotations

import hashlib
import math
import sys
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from pisasr.batch import check_writable
from pisasr.errors import ConfigError, PiSAError
from pisasr.model.checkpoint import AdapterCheckpoint, load_checkpoint, save_checkpoint
from pisasr.model.dual_lora import ADAPTERS, DualLoRA
from pisasr.training import checkpoints as ckpts
from pisasr.training.data_order import epoch_batches, make_loader

MIXED_PRECISION_DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class TrainingError(PiSAError):
    """A run that cannot go on (non-finite loss)."""


def stage_at(step: int, cfg: DictConfig) -> str:
    t = cfg.train
    if t.stage == "pix":
        return "pix"
    if t.stage == "sem":
        return "sem"
    return "pix" if step < t.pix_steps else "sem"


def end_step(cfg: DictConfig) -> int:
    return cfg.train.pix_steps if cfg.train.stage == "pix" else cfg.train.max_steps


def start_step(cfg: DictConfig) -> int:
    return cfg.train.pix_steps if cfg.train.stage == "sem" else 0


def preflight(cfg: DictConfig):
    """Everything that can be checked before a model is loaded: data, outputs, checkpoints, values."""
    from pisasr.data.datasets import (
        GTDataset,
        PairedDataset,
        gt_files_from_config,
        read_file_list,
        read_prompts,
    )
    from pisasr.data.degradation import load_degradation
    from pisasr.data.tagging import read_vocabulary

    t, d = cfg.train, cfg.data
    if end_step(cfg) <= start_step(cfg):
        raise ConfigError(
            f"nothing to train: stage={t.stage}, pix_steps={t.pix_steps}, max_steps={t.max_steps}"
        )
    if t.checkpointing_steps < 1 or t.batch_size < 1 or t.gradient_accumulation_steps < 1:
        raise ConfigError(
            "train.checkpointing_steps, train.batch_size and train.gradient_accumulation_steps must be >= 1"
        )
    pix_ckpt = None
    if t.stage == "sem":
        if not t.pix_checkpoint:
            raise ConfigError("train.stage=sem needs train.pix_checkpoint (a checkpoint from the pix stage)")
        pix_ckpt = load_checkpoint(t.pix_checkpoint)
    degradation = load_degradation(d.degradation.config)
    hq = [f for path in d.hq_lists for f in read_file_list(path)]
    dataset = GTDataset(
        gt_files_from_config(d.gt_lists, d.gt_dirs),
        degradation,
        crop_size=d.crop_size,
        hq_files=hq,
        hq_sample_prob=d.hq_sample_prob,
        prompts=read_prompts(d.prompts) if d.prompts else None,
        small_images=d.small_images,
        seed=t.seed,
    )
    validation = PairedDataset(d.val_lr_dir, d.val_hr_dir) if d.val_lr_dir and d.val_hr_dir else None
    tags = read_vocabulary(d.tagger.vocabulary) if d.tagger.enabled else None
    check_writable(Path(t.output_dir))
    resume = ckpts.resolve_resume(t.output_dir, t.resume_from_checkpoint)
    return dataset, degradation, validation, pix_ckpt, resume, tags


def _cast_trainable(dual: DualLoRA, weight_dtype: torch.dtype) -> None:
    """Frozen base weights in the mixed-precision dtype; LoRA parameters stay float32."""
    for name, param in dual.unet.named_parameters():
        param.data = param.data.float() if "lora_" in name else param.data.to(weight_dtype)


def build_model(cfg: DictConfig, accelerator, pix_ckpt: AdapterCheckpoint | None, needs_sem: bool):
    from diffusers import DDPMScheduler, UNet2DConditionModel

    from pisasr.losses import CSDLoss, make_lpips
    from pisasr.model.base import _load_failure, ensure_tiny_base, load_base
    from pisasr.training.model import LossWeights, PiSATrainModel

    m, t = cfg.model, cfg.train
    weight_dtype = MIXED_PRECISION_DTYPES[t.mixed_precision]
    with accelerator.main_process_first():
        if m.tiny_base_if_missing:
            ensure_tiny_base(m.base)
        base = load_base(m.base, revision=m.revision)
    if pix_ckpt is not None:
        dual = pix_ckpt.build(base.unet)
    else:
        dual = DualLoRA(base.unet, m.rank_pix, m.rank_sem, m.alpha_pix, m.alpha_sem)
    if accelerator.num_processes > 1:  # identical adapters on every rank, whatever each rank's RNG did
        for name in ADAPTERS:
            for param in dual.adapter_parameters(name):
                torch.distributed.broadcast(param.data, src=0)
    _cast_trainable(dual, weight_dtype)
    base.unet.to(accelerator.device)
    base.vae.to(accelerator.device, weight_dtype)
    base.text_encoder.to(accelerator.device, weight_dtype)
    if t.gradient_checkpointing:
        base.unet.enable_gradient_checkpointing()
    lpips = csd = None
    if needs_sem:
        lpips = make_lpips(t.lpips_vgg_pretrained).to(accelerator.device)
        teacher_dtype = MIXED_PRECISION_DTYPES[{"fp32": "no"}.get(t.csd.dtype, t.csd.dtype)]
        with accelerator.main_process_first():
            if m.tiny_base_if_missing and t.csd.teacher == m.base:
                ensure_tiny_base(t.csd.teacher)
            try:
                teacher = UNet2DConditionModel.from_pretrained(
                    t.csd.teacher, subfolder="unet", torch_dtype=teacher_dtype
                )
                scheduler = DDPMScheduler.from_pretrained(t.csd.teacher, subfolder="scheduler")
            except (OSError, ValueError) as exc:
                raise _load_failure(t.csd.teacher, exc) from None
        teacher.requires_grad_(False).eval().to(accelerator.device)
        csd = CSDLoss(teacher, scheduler, t.csd.guidance_scale, t.csd.t_min_ratio, t.csd.t_max_ratio)
    model = PiSATrainModel(
        base,
        dual,
        lpips,
        csd,
        LossWeights(t.lambda_l2, t.lambda_lpips, t.lambda_csd),
        negative_prompt=t.csd.negative_prompt,
        positive_suffix=t.csd.positive_suffix,
        null_text_ratio=t.null_text_ratio,
        null_text_per_sample=t.null_text_per_sample,
        vae_sample=t.vae_sample,
        timestep=m.timestep,
    )
    return model, dual


def build_tagger(cfg: DictConfig, accelerator, tags: list[str]):
    from pisasr.data.tagging import CropTagger

    tg = cfg.data.tagger
    with accelerator.main_process_first():
        tagger = CropTagger(
            tg.model,
            tags,
            tg.top_k,
            tg.template,
            accelerator.device,
            MIXED_PRECISION_DTYPES[cfg.train.mixed_precision],
        )
    if accelerator.is_main_process:
        print(f"tagging each crop on the fly: {tg.model}, {len(tags)} tags, top {tg.top_k}", file=sys.stderr)
    return tagger


def step_generator(seed: int, micro_batch: int, rank: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + micro_batch * 1_009 + rank)


def _all_reduce_grads(params: list[torch.nn.Parameter], accelerator) -> None:
    grads = [p.grad for p in params if p.grad is not None]
    if accelerator.num_processes == 1 or not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch.distributed.all_reduce(flat)
    flat /= accelerator.num_processes
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def adapter_digest(dual: DualLoRA) -> str:
    digest = hashlib.sha256()
    for name in ADAPTERS:
        for key, tensor in sorted(dual.state_dict(name).items()):
            digest.update(key.encode())
            digest.update(tensor.float().cpu().numpy().tobytes())
    return digest.hexdigest()


def save(
    accelerator,
    cfg: DictConfig,
    dual: DualLoRA,
    step: int,
    stage: str,
    batches_seen: int,
    base_fingerprint: str | None = None,
) -> Path | None:
    """Checkpoint every rank's state; first check that all ranks hold the same adapters (a desync is a bug)."""
    from accelerate.utils import gather_object

    digests = (
        gather_object([adapter_digest(dual)]) if accelerator.num_processes > 1 else [adapter_digest(dual)]
    )
    if len(set(digests)) > 1:
        raise TrainingError(
            f"adapters differ between processes at step {step} ({stage} stage): gradients were not synchronised"
        )
    out = cfg.train.output_dir
    staging = ckpts.staging_dir(out, step)
    accelerator.save_state(str(staging))
    path = None
    if accelerator.is_main_process:
        save_checkpoint(
            dual,
            staging,
            base_model=cfg.model.base,
            base_fingerprint=base_fingerprint,
            timestep=cfg.model.timestep,
            extra={"step": step, "stage": stage},
        )
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        state = {"step": step, "stage": stage, "batches_seen": batches_seen, "rank_adapter_digests": digests}
        path = ckpts.finalize(out, step, state)
        ckpts.prune(out, cfg.train.checkpoints_total_limit)
    accelerator.wait_for_everyone()
    return path


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


def run_training(cfg: DictConfig) -> Path:
    """Train as configured; returns the folder of the final adapters."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
    from diffusers.optimization import get_scheduler

    from pisasr.data.degradation import Degrader, training_input
    from pisasr.devices import resolve_device

    t = cfg.train
    dataset, degradation, validation, pix_ckpt, resume, tags = preflight(cfg)
    out = Path(t.output_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        mixed_precision=t.mixed_precision,
        log_with="tensorboard",
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=t.seed),
        cpu=resolve_device("auto").type == "cpu",
    )
    if t.allow_tf32 and torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    set_seed(t.seed)
    first, last = start_step(cfg), end_step(cfg)
    needs_sem = any(stage_at(s, cfg) == "sem" for s in (first, last - 1))
    if needs_sem and not cfg.data.prompts and not tags and accelerator.is_main_process:
        print(
            "warning: the sem stage runs without prompts (data.prompts is unset): CSD's positive branch is the "
            "empty prompt, so its guidance only pushes away from the negative prompt. The official code tags "
            "every crop (RAM); make prompts with preprocess/extract_prompts.py or set data.tagger.enabled=true "
            "(README, Training data)",
            file=sys.stderr,
        )
    model, dual = build_model(cfg, accelerator, pix_ckpt, needs_sem)
    tagger = build_tagger(cfg, accelerator, tags) if tags else None
    lora_params = [p for name in ADAPTERS for p in dual.adapter_parameters(name)]
    optimizer = torch.optim.AdamW(
        lora_params,
        lr=t.learning_rate,
        betas=(t.adam_beta1, t.adam_beta2),
        weight_decay=t.weight_decay,
        eps=t.adam_epsilon,
    )
    lr_scheduler = get_scheduler("constant", optimizer)
    loader = make_loader(dataset, t.batch_size, cfg.data.num_workers)
    optimizer, loader, lr_scheduler = accelerator.prepare(optimizer, loader, lr_scheduler)
    if len(loader) == 0:
        raise ConfigError(f"{len(dataset)} training images give no full batch of {t.batch_size} per process")
    degrader = Degrader(degradation, accelerator.device)

    step, batches_seen = first, (first - start_step(cfg)) * t.gradient_accumulation_steps
    if resume is not None:
        state = ckpts.read_state(resume)
        accelerator.load_state(str(resume))
        restored = load_checkpoint(resume)
        for name in ADAPTERS:
            dual.load_state_dict(name, restored.states[name], source=str(resume))
        _cast_trainable(dual, MIXED_PRECISION_DTYPES[t.mixed_precision])
        step, batches_seen = state["step"], state["batches_seen"]
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        accelerator.init_trackers("pisasr", config=_flat_scalars(cfg))
        if resume is not None:
            print(f"resumed from {resume} at step {step}", file=sys.stderr)

    dual.set_stage(stage_at(step, cfg))
    progress = tqdm(
        total=last, initial=step, desc="train", disable=not accelerator.is_main_process, file=sys.stderr
    )
    skipped_files, last_good = 0, resume
    tic, images_since = time.perf_counter(), 0
    try:
        while step < last:
            epoch, epoch_loader = epoch_batches(accelerator, loader, t.seed, batches_seen)
            for batch in epoch_loader:
                stage = stage_at(step, cfg)
                if stage != dual.stage:
                    dual.set_stage(stage)
                    optimizer.zero_grad(set_to_none=True)
                generator = step_generator(t.seed, batches_seen, accelerator.process_index)
                with accelerator.accumulate():
                    gt = batch["gt"].to(accelerator.device)
                    kernels = {k: batch[k] for k in ("kernel1", "kernel2", "sinc_kernel")}
                    lq = training_input(degrader, gt, kernels, generator, cfg.data.lq_upsample)
                    prompts = tagger(gt) if tagger is not None else list(batch["prompt"])
                    with accelerator.autocast():
                        losses = model.losses(stage, lq * 2 - 1, gt * 2 - 1, prompts, generator)
                    finite = torch.tensor(float(torch.isfinite(losses["loss"])), device=accelerator.device)
                    if accelerator.reduce(finite, reduction="sum").item() < accelerator.num_processes:
                        raise TrainingError(
                            f"non-finite loss at step {step} (stage {stage}); last good checkpoint: {last_good or 'none'}. "
                            "Lower train.learning_rate or use train.mixed_precision=bf16/no, then resume from it"
                        )
                    accelerator.backward(losses["loss"])
                    if accelerator.sync_gradients:
                        trainable = dual.trainable_parameters()
                        _all_reduce_grads(trainable, accelerator)
                        accelerator.clip_grad_norm_(trainable, t.max_grad_norm)
                    optimizer.step()
                    lr_scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                batches_seen += 1
                skipped_files += int(batch["skipped"].sum())
                images_since += gt.shape[0] * accelerator.num_processes
                if not accelerator.sync_gradients:
                    continue
                step += 1
                progress.update(1)
                if step % t.log_every == 0 or step == last:
                    seconds = time.perf_counter() - tic
                    logs = {f"loss/{k}": float(v.detach()) for k, v in losses.items() if k != "pred"}
                    logs.update(
                        {
                            "lr": lr_scheduler.get_last_lr()[0],
                            "step_time": seconds / t.log_every,
                            "images_per_s": images_since / seconds,
                        }
                    )
                    logs["data/skipped_files"] = skipped_files
                    logs["prompt/example"] = prompts[0]  # TensorBoard text: what the model was told
                    accelerator.log(logs, step=step)
                    progress.set_postfix(
                        {k.split("/")[-1]: f"{v:.4f}" for k, v in logs.items() if k.startswith("loss/")},
                        stage=stage,
                    )
                    tic, images_since = time.perf_counter(), 0
                if step % t.checkpointing_steps == 0 or step == last:
                    last_good = (
                        save(accelerator, cfg, dual, step, stage, batches_seen, model.base.fingerprint)
                        or last_good
                    )
                if validation is not None and accelerator.is_main_process and step % t.validation_steps == 0:
                    accelerator.log(validate(model, validation, accelerator, step), step=step)
                if step >= last:
                    break
    finally:
        progress.close()
    final = out / "final"
    if accelerator.is_main_process:
        save_checkpoint(
            dual,
            final,
            base_model=cfg.model.base,
            base_fingerprint=model.base.fingerprint,
            timestep=cfg.model.timestep,
            extra={"step": step},
        )
        if skipped_files:
            print(
                f"warning: {skipped_files} unreadable or too small training files were skipped",
                file=sys.stderr,
            )
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return final


def _flat_scalars(cfg: DictConfig) -> dict:
    """TensorBoard hparams accept scalars only."""
    flat = {}

    def walk(prefix, node):
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(f"{name}.", value)
            elif isinstance(value, (int, float, str, bool)) and not (
                isinstance(value, float) and math.isnan(value)
            ):
                flat[name] = value

    walk("", OmegaConf.to_container(cfg, resolve=True))
    return flat
