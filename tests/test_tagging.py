"""On-the-fly crop tagging: the zero-shot pipeline's tags on device tensors, config checks, used by training."""

import json

import numpy as np
import pytest
import torch
from conftest import image_file
from PIL import Image

from pisasr.config import NEGATIVE_PROMPT, load_config
from pisasr.data.prompts import extract_prompts
from pisasr.data.tagging import CropTagger, read_vocabulary
from pisasr.errors import ConfigError, ModelLoadError
from pisasr.model.tiny_base import make_tiny_clip

VOCABULARY = ["dog", "cat", "sky", "tree", "car", "water", "brick wall", "grass"]


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return make_tiny_clip(tmp_path_factory.mktemp("clip") / "clip")


def _tensor(path):
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).float() / 255


def test_tags_equal_the_zero_shot_pipeline_for_every_crop_of_a_batch(tiny_clip, tmp_path):
    files = [image_file(tmp_path / f"{i}.png", (32, 32), seed=i) for i in range(6)]
    out = tmp_path / "prompts.jsonl"
    extract_prompts(files, out, "tags", str(tiny_clip), VOCABULARY, top_k=3, batch_size=3)
    expected = {row["path"]: row["prompt"] for row in map(json.loads, out.read_text().splitlines())}
    tagger = CropTagger(str(tiny_clip), VOCABULARY, top_k=3)
    batch = torch.stack([_tensor(f) for f in files])
    got = tagger(batch)
    assert got == [expected[str(f.resolve())] for f in files]
    assert len(set(got)) > 1  # the tags follow the image
    assert tagger(batch[2:3]) == got[2:3]


def test_larger_crops_are_resized_on_the_device_and_tagged_from_the_vocabulary(tiny_clip):
    tagger = CropTagger(str(tiny_clip), VOCABULARY, top_k=2)
    crops = torch.rand(3, 3, 96, 64, generator=torch.Generator().manual_seed(0))
    assert tagger.pixel_values(crops).shape == (3, 3, 32, 32)
    prompts = tagger(crops)
    assert all(len(p.split(", ")) == 2 and set(p.split(", ")) <= set(VOCABULARY) for p in prompts)


def test_vocabulary_and_tagger_errors_are_one_line(tiny_clip, tmp_path):
    builtin = read_vocabulary()
    assert len(builtin) > 100 and "brick wall" in builtin
    negative = {term.strip().lower() for term in NEGATIVE_PROMPT.split(",")}
    assert not negative & {t.lower() for t in builtin}  # no tag asks for what CSD steers away from
    (tmp_path / "tags.txt").write_text("# comment\n\ndog\ndog\ncat\n")
    assert read_vocabulary(tmp_path / "tags.txt") == ["dog", "cat"]
    with pytest.raises(ConfigError, match="tag vocabulary not found: .*absent.txt"):
        read_vocabulary(tmp_path / "absent.txt")
    (tmp_path / "empty.txt").write_text("# only a comment\n")
    with pytest.raises(ConfigError, match="holds no tags"):
        read_vocabulary(tmp_path / "empty.txt")
    with pytest.raises(ConfigError, match="top_k=3 must be between 1 and the 2 tags"):
        CropTagger(str(tiny_clip), ["dog", "cat"], top_k=3)
    with pytest.raises(ModelLoadError, match="cannot load tagger model .*no-clip"):
        CropTagger(str(tmp_path / "no-clip"), ["dog"], top_k=1)
    with pytest.raises(ConfigError, match="data.prompts and data.tagger.enabled are both set"):
        load_config("configs/smoke.yaml", ["data.tagger.enabled=true", "data.prompts=p.jsonl"])


def test_training_tags_each_crop_when_enabled(tiny_base, tiny_clip, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from test_training import run_train as _run
    from test_training import train_args as _train_args

    out = tmp_path / "run"
    done = _run(_train_args(
        tiny_base, out, "train.pix_steps=1", "train.max_steps=2", "data.tagger.enabled=true",
        f"data.tagger.model={tiny_clip}", "data.tagger.top_k=2",
    ))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "tagging each crop on the fly" in done.stderr and "runs without prompts" not in done.stderr
    events = EventAccumulator(str(next((out / "logs").rglob("events.out.tfevents.*")).parent))
    events.Reload()
    texts = [
        e.tensor_proto.string_val[0].decode() for tag in events.Tags()["tensors"] for e in events.Tensors(tag)
    ]
    assert len(texts) == 2  # one per logged step
    assert all(len(t.split(", ")) == 2 and set(t.split(", ")) <= set(read_vocabulary()) for t in texts)
