"""Two-stage dual-LoRA training under Accelerate.

Design choices that make the stage switch correct under DDP and resume exact:

* One AdamW over *both* adapters' parameters. A frozen adapter's parameters have ``requires_grad=False`` and their
  gradients stay ``None`` (``zero_grad(set_to_none=True)``), so AdamW skips them entirely: no weight decay, no
  momentum, bit-identical; unless ``train.frozen_pix_in_optimizer`` (the official recipe) keeps stepping the
  frozen ``pix`` with zero gradients (``optim.py``). The ``sem`` parameters get fresh moments at their first step.
* The UNet is not wrapped in DDP: after backward, the gradients of whatever is trainable *now* are all-reduced
  (LoRA gradients are a few MB). So the ``sem`` adapter is synchronised in stage 2, which the official code,
  wrapping once while ``sem`` is frozen, never does.
* Every random draw of a step (degradation, prompt dropping, VAE sample, CSD t and noise) comes from a generator
  seeded by ``(seed, micro-batch index, rank)``, and the data order by ``(seed, epoch)``, so a resumed run
  continues exactly where the stopped one was (``data_order.py``), from any batch of any epoch.
* On a preemption signal every rank finishes its optimizer step, the ranks agree to stop at that step, and a
  checkpoint is written before the run exits with code 75 (``preemption.py``).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from pisasr.errors import ConfigError
from pisasr.io.files import check_writable
from pisasr.model.checkpoint import AdapterCheckpoint, load_checkpoint, save_checkpoint
from pisasr.model.dual_lora import ADAPTERS, DualLoRA
from pisasr.training import checkpoints as ckpts
from pisasr.training.aux import all_reduce_grads as _all_reduce_grads
from pisasr.training.data_order import epoch_batches, make_loader
from pisasr.training.preemption import Preempted, PreemptedBeforeStart, PreemptionWatch, mark_preempted
from pisasr.training.resume import restore
from pisasr.training.saving import TrainingError, save
from pisasr.training.validation import validate

MIXED_PRECISION_DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


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
    candidates = ckpts.resume_candidates(t.output_dir, t.resume_from_checkpoint)
    if not candidates and not t.overwrite_output_dir:
        ckpts.refuse_another_run(t.output_dir)
    return dataset, degradation, validation, pix_ckpt, candidates, tags


def _cast_trainable(dual: DualLoRA, weight_dtype: torch.dtype) -> None:
    """Frozen base weights in the mixed-precision dtype; LoRA parameters stay float32."""
    for name, param in dual.unet.named_parameters():
        param.data = param.data.float() if "lora_" in name else param.data.to(weight_dtype)


def build_model(cfg: DictConfig, accelerator, pix_ckpt: AdapterCheckpoint | None, needs_sem: bool):
    from pisasr.losses import make_lpips
    from pisasr.model.base import ensure_tiny_base, load_base
    from pisasr.training.model import LossWeights, PiSATrainModel
    from pisasr.training.objectives import build_objective

    m, t = cfg.model, cfg.train
    weight_dtype = MIXED_PRECISION_DTYPES[t.mixed_precision]
    with accelerator.main_process_first():
        if m.tiny_base_if_missing:
            ensure_tiny_base(m.base)
        base = load_base(m.base, revision=m.revision, frozen_dtype=weight_dtype)
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
    base.vae.to(accelerator.device)
    base.text_encoder.to(accelerator.device)
    if t.gradient_checkpointing:
        base.unet.enable_gradient_checkpointing()
    lpips = csd = objective = None
    if needs_sem:
        lpips = make_lpips(t.lpips_vgg_pretrained).to(accelerator.device)
        objective, csd = build_objective(cfg, accelerator)  # train.sem_objective (training/objectives.py)
    model = PiSATrainModel(
        base,
        dual,
        lpips,
        csd,
        LossWeights(t.lambda_l2, t.lambda_lpips, t.lambda_csd),
        negative_prompt=t.csd.negative_prompt,
        positive_suffix=t.csd.positive_suffix,
        join_empty_caption=t.csd.join_empty_caption,
        null_text_ratio=t.null_text_ratio,
        null_text_per_sample=t.null_text_per_sample,
        vae_sample=t.vae_sample,
        timestep=m.timestep,
        objective=objective,
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


def run_training(cfg: DictConfig, watch: PreemptionWatch | None = None) -> Path:
    """Train as configured; returns the folder of the final adapters. ``watch``: the preemption signals' handler,
    installed by the caller from its first line (the training CLI); else one is installed here."""
    t = cfg.train
    own_watch = watch is None
    watch = watch or PreemptionWatch(list(t.preempt_signals)).install()
    try:
        return _train(cfg, watch)
    finally:
        if own_watch:
            watch.restore()


def _train(cfg: DictConfig, watch: PreemptionWatch) -> Path:
    from accelerate import Accelerator
    from accelerate.utils import (
        DataLoaderConfiguration,
        ProjectConfiguration,
        broadcast_object_list,
        set_seed,
    )
    from diffusers.optimization import get_scheduler

    from pisasr.data.degradation import Degrader, training_input
    from pisasr.devices import resolve_device
    from pisasr.training.objectives import build_extras
    from pisasr.training.optim import build_optimizer

    t = cfg.train
    watch.enter("loading")  # a signal from here to the first write raises PreemptedBeforeStart
    dataset, degradation, validation, pix_ckpt, candidates, tags = preflight(cfg)
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
            "warning: the sem stage runs without prompts (data.prompts is unset): CSD's positive branch has no "
            "caption (only the positive suffix), so its guidance mostly pushes away from the negative prompt. "
            "The official code tags "
            "every crop (RAM); make prompts with preprocess/extract_prompts.py or set data.tagger.enabled=true "
            "(README, Training data)",
            file=sys.stderr,
        )
    model, dual = build_model(cfg, accelerator, pix_ckpt, needs_sem)
    tagger = build_tagger(cfg, accelerator, tags) if tags else None
    extras = build_extras(cfg, accelerator, model.objective if needs_sem else None, dual)  # aux network, EMA
    lora_params = [p for name in ADAPTERS for p in dual.adapter_parameters(name)]
    optimizer = build_optimizer(lora_params, t)
    lr_scheduler = get_scheduler("constant", optimizer)
    loader = make_loader(dataset, t.batch_size, cfg.data.num_workers)
    optimizer, loader, lr_scheduler = accelerator.prepare(optimizer, loader, lr_scheduler)
    if len(loader) == 0:
        raise ConfigError(f"{len(dataset)} training images give no full batch of {t.batch_size} per process")
    degrader = Degrader(degradation, accelerator.device)

    step, batches_seen = first, (first - start_step(cfg)) * t.gradient_accumulation_steps
    run_id, resume = ckpts.new_run_id(), None
    watch.enter("setup")  # the run folder changes from here: a signal is recorded, the ranks stop together
    if not candidates and t.overwrite_output_dir and accelerator.is_main_process:
        ckpts.clear_run_outputs(out)
    accelerator.wait_for_everyone()
    restored = restore(accelerator, candidates, dual)
    if restored is not None:
        resume, state = restored
        extras.after_restore()  # the live adapters (the adapter file holds the EMA when it is on)
        _cast_trainable(dual, MIXED_PRECISION_DTYPES[t.mixed_precision])
        step, batches_seen, run_id = state["step"], state["batches_seen"], state.get("run_id") or run_id
    run_id = broadcast_object_list([run_id])[0]
    if watch.stop_agreed(accelerator):  # before the first step: the resume point is still what it was
        accelerator.end_training()
        raise PreemptedBeforeStart(watch.received)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        accelerator.init_trackers("pisasr", config=_flat_scalars(cfg))
        if resume is not None:
            print(f"resumed from {resume} at step {step}", file=sys.stderr)
        elif t.resume_from_checkpoint == "auto":
            print(f"no checkpoint in {ckpts.checkpoint_root(out)}: starting a new run", file=sys.stderr)

    dual.set_stage(stage_at(step, cfg))
    progress = tqdm(
        total=last, initial=step, desc="train", disable=not accelerator.is_main_process, file=sys.stderr
    )
    skipped_files, last_good, saved_at = 0, resume, step
    tic, images_since = time.perf_counter(), 0

    def checkpoint() -> Path | None:
        state = {"step": step, "stage": dual.stage, "batches_seen": batches_seen, "run_id": run_id}
        return save(accelerator, cfg, dual, state, model.base.fingerprint, extras)

    watch.enter("training")
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
                        losses = model.losses(
                            stage, lq * 2 - 1, gt * 2 - 1, prompts, generator, extras.before_objective
                        )
                    context = losses.pop("context", None)  # the objective's step after the generator's
                    _stop_unless_finite(accelerator, losses["loss"], step, stage, last_good)
                    accelerator.backward(losses["loss"])
                    if accelerator.sync_gradients:
                        trainable = dual.trainable_parameters()
                        _all_reduce_grads(trainable, accelerator)
                        accelerator.clip_grad_norm_(trainable, t.max_grad_norm)
                    optimizer.step()
                    lr_scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    losses.update(extras.after_generator_step(context, accelerator.sync_gradients))
                batches_seen += 1
                skipped_files += int(batch["skipped"].sum())
                images_since += gt.shape[0] * accelerator.num_processes
                if not accelerator.sync_gradients:
                    continue
                step += 1
                if (
                    step == last
                ):  # a signal from here on lets the run finish: its last checkpoint, final/, exit 0
                    watch.enter("final")
                progress.update(1)
                if step % t.log_every == 0 or step == last:
                    seconds = time.perf_counter() - tic
                    logs = _step_logs(losses, lr_scheduler, seconds, images_since, t)
                    logs["data/skipped_files"] = skipped_files
                    logs["prompt/example"] = prompts[0]  # TensorBoard text: what the model was told
                    accelerator.log(logs, step=step)
                    progress.set_postfix(
                        {k: f"{float(v.detach()):.4f}" for k, v in losses.items() if k != "pred"},
                        stage=stage,
                    )
                    tic, images_since = time.perf_counter(), 0
                if step % t.checkpointing_steps == 0 or step == last:
                    last_good, saved_at = checkpoint() or last_good, step
                if step < last and watch.stop_agreed(accelerator):  # the same answer on every rank
                    if saved_at != step:
                        checkpoint()
                    stopped = Preempted(watch.received, step, ckpts.checkpoint_path(out, step))
                    mark_preempted(stopped)
                    accelerator.end_training()
                    raise stopped
                if validation is not None and accelerator.is_main_process and step % t.validation_steps == 0:
                    accelerator.log(validate(model, validation, accelerator, step), step=step)
                if step >= last:
                    break
    finally:
        progress.close()
    watch.enter("final")  # a signal from here on is noted: final/ is written and the run ends with 0
    final = out / "final"
    if accelerator.is_main_process:
        with extras.inference_weights():
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


def _stop_unless_finite(accelerator, loss: torch.Tensor, step: int, stage: str, last_good) -> None:
    finite = torch.tensor(float(torch.isfinite(loss)), device=accelerator.device)
    if accelerator.reduce(finite, reduction="sum").item() < accelerator.num_processes:
        raise TrainingError(
            f"non-finite loss at step {step} (stage {stage}); last good checkpoint: {last_good or 'none'}. "
            "Lower train.learning_rate or use train.mixed_precision=bf16/no, then resume from it"
        )


def _step_logs(losses: dict, lr_scheduler, seconds: float, images: int, t) -> dict:
    logs = {f"loss/{k}": float(v.detach()) for k, v in losses.items() if k != "pred"}
    logs.update(
        {
            "lr": lr_scheduler.get_last_lr()[0],
            "step_time": seconds / t.log_every,
            "images_per_s": images / seconds,
        }
    )
    return logs


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
