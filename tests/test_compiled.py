"""Where compiled kernels go (no compilation here: that is tests/test_batching.py's slow test)."""

import os

import pytest

from pisasr.errors import ConfigError
from pisasr.inference.compiled import CompileWatch, compile_modules, default_cache_dir, use_cache_dir


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


def test_a_cache_folder_the_user_set_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert use_cache_dir(None) == tmp_path / "mine"
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir as torch_default

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", torch_default())  # what importing torch sets by itself
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert use_cache_dir(None) == tmp_path / "xdg" / "pisasr" / "torch-compile"


def test_uncreatable_cache_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="cannot create"):
        use_cache_dir(tmp_path / "file" / "sub")


@pytest.mark.parametrize("setting, dynamic", [("auto", None), ("true", True), ("false", False)])
def test_compile_dynamic_reaches_torch_compile(setting, dynamic):
    seen = []

    class Module:
        def compile(self, **kwargs):
            seen.append(kwargs)

    compile_modules([Module(), None], "default", setting)
    assert seen == [{"mode": "default", "dynamic": dynamic}]


def test_watch_speaks_only_when_something_compiled(tmp_path, capsys, monkeypatch):
    import pisasr.inference.compiled as compiled

    graphs = iter([0, 0, 0, 1])
    monkeypatch.setattr(compiled, "_compiled_graphs", lambda: next(graphs))
    watch = CompileWatch(tmp_path)
    with watch.call((1, 3, 64, 48), "full"):  # nothing compiled (cached graphs reused)
        pass
    assert capsys.readouterr().err == ""
    with watch.call((2, 3, 64, 48), "full+pix"):
        pass
    err = capsys.readouterr().err
    assert err.startswith("note: compiled for 64x48 (batch 2, full+pix)") and str(tmp_path) in err
