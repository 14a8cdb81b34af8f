import json

from conftest import image_file

from pisasr.cli.preprocess import extract_prompts_main
from pisasr.testing.tiny_base import make_tiny_clip


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
