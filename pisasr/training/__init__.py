"""Two-stage dual-LoRA training: the per-step model (``model.py``), checkpoints, and the Accelerate loop."""
