from pathlib import Path

import pytest

from pisasr.config import SD21_BASE, load_config
from pisasr.errors import ConfigError

CONFIGS = sorted(Path(__file__).resolve().parents[1].joinpath("configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path):
    load_config(path)


def test_overrides_apply_with_types():
    cfg = load_config(None, ["model.rank_sem=8", "inference.lambda_sem=0.5", "train.csd.guidance_scale=5"])
    assert cfg.model.rank_sem == 8 and cfg.inference.lambda_sem == 0.5 and cfg.train.csd.guidance_scale == 5.0


def test_official_config_uses_a_base_that_still_resolves():
    assert load_config("configs/official_sd21.yaml").model.base == SD21_BASE


def test_unknown_key_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match="model.rnak_pix"):
        load_config(None, ["model.rnak_pix=4"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("inference:\n  colour_fix: adain\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*inference.colour_fix"):
        load_config(bad)


def test_mistyped_value_names_the_key():
    with pytest.raises(ConfigError, match="model.rank_pix"):
        load_config(None, ["model.rank_pix=four"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("inference.color_fix=histogram", "inference.color_fix"),
        ("inference.latent_tile=8", "latent_tile"),
        ("inference.latent_tile_overlap=96", "smaller than"),
        ("train.stage=all", "train.stage"),
        ("data.crop_size=60", "data.crop_size=60 must be a positive multiple of 8"),
        ("data.hq_sample_prob=1.5", "data.hq_sample_prob"),
        ("bogus", "key=value"),
    ],
)
def test_invalid_values_are_one_line_errors(override, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(None, [override])
    assert "\n" not in str(info.value)


def test_missing_config_file():
    with pytest.raises(ConfigError, match="not found"):
        load_config("configs/nope.yaml")


def test_bad_crop_size_stops_the_trainer_with_one_line(capsys):
    from pisasr.cli import run_cli
    from pisasr.cli.train import main

    assert run_cli(main, ["--config", "configs/smoke.yaml", "data.crop_size=60"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: data.crop_size=60") and err.count("\n") == 1
