"""The training data order as a pure function of ``(seed, epoch, batch)``, so that a run resumed at any batch of
any epoch sees exactly the batches the uninterrupted run saw.

Accelerate's ``set_epoch`` sets the sampler's epoch but, on a loader wrapped by ``skip_first_batches`` (a
resume inside an epoch) and on any loader with more than one process, not the dataset's, which seeds each
sample's crop and kernels: a resumed process trained the rest of that epoch on epoch 0's crops. Here the
dataset's epoch is set explicitly for every epoch. The loader also gets its own generator,
reseeded per epoch, for the base seed PyTorch draws at each ``iter()`` (dataloader workers are seeded from it):
drawn from the global RNG, that draw would make the global RNG of a resumed run differ from the uninterrupted
one's.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler


def make_loader(dataset: Dataset, batch_size: int, num_workers: int) -> DataLoader:
    """A shuffling loader (Accelerate swaps in its seedable sampler) whose worker seeds do not touch global RNG."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=RandomSampler(dataset),
        num_workers=num_workers,
        drop_last=True,
        generator=torch.Generator(),
    )


def epoch_batches(accelerator, loader, seed: int, batches_seen: int) -> tuple[int, Iterable]:
    """``(epoch, batches)``: the rest of the epoch that batch number ``batches_seen`` (0-based, counted from
    the start of the run) falls in, with sampler, dataset and worker seeds set for that epoch."""
    epoch, skip = divmod(batches_seen, len(loader))
    batches = accelerator.skip_first_batches(loader, skip) if skip else loader
    batches.set_epoch(epoch)  # the sampler's epoch (its permutation) and Accelerate's iteration count
    if hasattr(loader.dataset, "set_epoch"):
        loader.dataset.set_epoch(epoch)
    loader.generator.manual_seed(seed * 1_000_003 + epoch)
    return epoch, batches
