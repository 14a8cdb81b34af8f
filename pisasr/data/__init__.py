"""Training and test data: Real-ESRGAN degradations (kernels per sample, filtering batched), datasets."""
