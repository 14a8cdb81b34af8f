import json

from conftest import image_file

from pisasr.cli.preprocess import extract_prompts_main
from pisasr.model.tiny_base import make_tiny_clip


def test_tags_are_written_and_the_run_resumes(tmp_path):
    model = make_tiny_clip(tmp_path / "clip")
    images = tmp_path / "gt"
    images.mkdir()
    for i in range(3):
        image_file(images / f"{i}.png", (40, 40), seed=i)
    vocab = tmp_path / "tags.txt"
    vocab.write_text("dog\ncat\nsky\ntree\n")
    out = tmp_path / "prompts.jsonl"
    args = [
        "--dir",
        str(images),
        "-o",
        str(out),
        "--task",
        "tags",
        "--model",
        str(model),
        "--tags",
        str(vocab),
        "--top_k",
        "2",
        "--batch_size",
        "2",
        "--device",
        "cpu",
    ]
    assert extract_prompts_main(args) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and all(len(r["prompt"].split(", ")) == 2 for r in rows)
    assert all(set(r["prompt"].split(", ")) <= {"dog", "cat", "sky", "tree"} for r in rows)
    image_file(images / "3.png", (40, 40), seed=3)
    with out.open("a") as f:
        f.write('{"path": "cut')  # an interrupted write
    assert extract_prompts_main(args) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.endswith("}")]
    assert sorted(r["path"].split("/")[-1] for r in rows) == ["0.png", "1.png", "2.png", "3.png"]


def test_a_model_that_cannot_be_loaded_is_one_line(tmp_path, capsys):
    from pisasr.cli import run_cli

    image_file(tmp_path / "a.png", (40, 40))
    out = tmp_path / "prompts.jsonl"
    args = ["--dir", str(tmp_path), "-o", str(out), "--device", "cpu"]
    assert run_cli(extract_prompts_main, [*args, "--model", "nobody/no-such-model"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("error: cannot load the caption model 'nobody/no-such-model': ")
        and err.count("\n") == 1
    )
    assert "Traceback" not in err and not out.exists()
    assert run_cli(extract_prompts_main, [*args, "--task", "tags", "--model", str(tmp_path)]) == 2
    assert f"cannot load the tags model '{tmp_path}'" in capsys.readouterr().err


def test_an_unreachable_hub_loads_offline_at_once(tmp_path, monkeypatch, capsys):
    """Without HF_HUB_OFFLINE and without network, the load runs offline (no five retries per file)."""
    import transformers
    from huggingface_hub import constants

    import pisasr.io.hub
    from pisasr.cli import run_cli

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(pisasr.io.hub, "hub_reachable", lambda timeout=3.0: False)
    offline_during_load = []

    def not_cached(*args, **kwargs):
        offline_during_load.append(constants.is_offline_mode())
        raise OSError("couldn't find them in the cached files")

    monkeypatch.setattr(transformers, "pipeline", not_cached)
    image_file(tmp_path / "a.png", (40, 40))
    args = ["--dir", str(tmp_path), "-o", str(tmp_path / "p.jsonl"), "--model", "some/model"]
    assert run_cli(extract_prompts_main, args) == 2
    assert offline_during_load == [True] and not constants.is_offline_mode()  # switched back afterwards
    assert "cannot load the caption model 'some/model'" in capsys.readouterr().err
