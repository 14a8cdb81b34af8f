"""Where compiled kernels go (no compilation here: that is tests/test_batching.py's slow test)."""

import os

from pisasr.compiled import default_cache_dir, use_cache_dir


def test_configured_cache_replaces_the_one_torch_already_set(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/tmp/torchinductor_default")
    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)
    cache = use_cache_dir(tmp_path / "kernels")
    assert cache == (tmp_path / "kernels").resolve() and cache.is_dir()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(cache)
    assert os.environ["TRITON_CACHE_DIR"] == str(cache / "triton")
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    assert cache_dir() == str(cache)  # what inductor itself will use


def test_default_cache_is_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "own-triton"))
    assert default_cache_dir() == tmp_path / "xdg" / "pisasr" / "torch-compile"
    assert use_cache_dir(None) == tmp_path / "xdg" / "pisasr" / "torch-compile"
    assert os.environ["TRITON_CACHE_DIR"] == str(tmp_path / "own-triton")  # a user's own setting is kept
