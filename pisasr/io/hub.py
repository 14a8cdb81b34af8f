"""Loading from the Hugging Face hub without the long wait of an unreachable hub.

Without ``HF_HUB_OFFLINE=1``, huggingface_hub retries every file five times with back-off when the hub cannot be
reached (about 50 s per model) before it looks in its cache. ``offline_if_unreachable`` asks the hub once, with a
short timeout; when there is no answer the load runs in offline mode, so a cached model loads at once and a
missing one fails at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub's endpoint answers at all (any HTTP status counts: the network is there)."""
    from huggingface_hub import constants, get_session

    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)
    except Exception:  # connection refused, DNS failure, timeout, proxy errors: all mean "not reachable"
        return False
    return True


@contextlib.contextmanager
def offline_if_unreachable(model: str) -> Iterator[None]:
    """Within the block, huggingface_hub is offline if ``model`` is a hub id and the hub does not answer."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or Path(model).exists() or hub_reachable():
        yield
        return
    constants.HF_HUB_OFFLINE = True  # read at call time by huggingface_hub and transformers (is_offline_mode)
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = False
