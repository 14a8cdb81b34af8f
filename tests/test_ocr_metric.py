"""ocr_cer: the character error rate of the text read in the SR image against the GT's (or a label)."""

import csv
import json

import pytest
from PIL import Image, ImageDraw, ImageFont

from pisasr.cli import run_cli
from pisasr.cli.evaluate import main
from pisasr.errors import ConfigError
from pisasr.evaluation.metrics import LOWER_IS_BETTER, evaluate, markdown_table
from pisasr.evaluation.ocr import cer, read_labels


def card(path, lines=(), size=(320, 160)):
    """White text on a blue card; ``lines`` = (words, (x, y)) in Pillow's own font at 28 px."""
    image = Image.new("RGB", size, (30, 60, 140))
    draw = ImageDraw.Draw(image)
    for words, xy in lines:
        draw.text(xy, words, font=ImageFont.load_default(size=28), fill="white")
    image.save(path)
    return path


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """GT and SR folders: ``same`` reads alike, ``other`` says something else, ``blank`` has no text in the GT."""
    root = tmp_path_factory.mktemp("ocr")
    gt, sr = root / "gt", root / "sr"
    gt.mkdir(), sr.mkdir()
    two_lines = (("NORTH EXIT", (20, 30)), ("Platform 7", (20, 90)))
    card(gt / "same.png", two_lines), card(sr / "same.png", two_lines)
    card(gt / "other.png", (("CITY HALL", (20, 60)),)), card(sr / "other.png", (("BUS DEPOT", (20, 60)),))
    card(gt / "blank.png"), card(sr / "blank.png", (("GHOST", (20, 60)),))
    return gt, sr


def test_cer_is_the_edit_distance_over_the_reference_length():
    assert cer("EXIT", "EXIT") == 0 and cer("EXT", "EXIT") == 0.25 and cer("", "EXIT") == 1.0
    assert cer("EXITS NOW", "EXIT") == 5 / 4  # extra text counts: more than 1 is possible


def test_same_text_scores_zero_other_text_high_and_text_free_gts_are_left_out(folders, tmp_path, capsys):
    gt, sr = folders
    out = tmp_path / "scores.json"
    assert (
        run_cli(main, ["--sr", str(sr), "--gt", str(gt), "--metrics", "ocr_cer", "psnr", "--out", str(out)])
        == 0
    )
    saved = json.loads(out.read_text())
    assert saved["_counts"] == {"ocr_cer": {"scored": 2, "skipped": 1}}
    assert saved["_skipped"] == {"ocr_cer": {"blank": "no text in the GT"}}
    rows = {row["image"]: row for row in csv.DictReader((tmp_path / "scores.csv").open())}
    assert float(rows["same"]["ocr_cer"]) == 0.0 and rows["same"]["ocr_sr_text"] == "NORTH EXIT Platform 7"
    assert float(rows["other"]["ocr_cer"]) > 0.5
    assert rows["blank"]["ocr_cer"] == "" and rows["blank"]["ocr_cer_skipped"] == "no text in the GT"
    assert rows["blank"]["psnr"] != ""  # the other metrics still score it
    assert saved["ocr_cer"] == pytest.approx(float(rows["other"]["ocr_cer"]) / 2)  # blank is not in the mean
    captured = capsys.readouterr()
    assert "ocr_cer ↓" in captured.out and "note: ocr_cer: 1 image(s) left out of the mean" in captured.err


def test_labels_replace_the_gt_and_need_no_gt_folder(folders, tmp_path):
    _, sr = folders
    labels = tmp_path / "labels.txt"
    labels.write_text("same.png\tNORTH EXIT  Platform 7\nother\tBUS DEPOT\n\nblank\tGHOST TOWN\n")
    result = evaluate(sr, None, ["ocr_cer"], progress=False, text_labels=labels)
    assert result.per_image["same"]["ocr_cer"] == 0 and result.per_image["other"]["ocr_cer"] == 0
    assert result.per_image["blank"]["ocr_cer"] == pytest.approx(
        5 / 10
    )  # "GHOST" read, "GHOST TOWN" labelled
    labels.write_text("same\tNORTH EXIT Platform 7\nother\t \n")
    result = evaluate(sr, None, ["ocr_cer"], progress=False, text_labels=labels)
    assert result.skipped["ocr_cer"] == {"other": "empty label", "blank": "no label"}


def test_bad_label_files_and_unreadable_gts(folders, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("same\tNORTH\nno tab here\n")
    with pytest.raises(ConfigError, match=r"bad.txt:2: expected 'name<TAB>text'"):
        read_labels(bad)
    with pytest.raises(ConfigError, match="need a GT folder"):
        evaluate(folders[1], None, ["ocr_cer"], progress=False)
    (tmp_path / "gt").mkdir(), (tmp_path / "sr").mkdir()
    for folder in ("gt", "sr"):
        Image.new("RGB", (5, 5), "white").save(tmp_path / folder / "dot.png")
    result = evaluate(tmp_path / "sr", tmp_path / "gt", ["ocr_cer"], progress=False)
    assert result.means["ocr_cer"] is None
    assert result.skipped["ocr_cer"]["dot"].startswith("GT unreadable: 5x5 is too small for text detection")


def test_lower_is_better_in_tables():
    assert "ocr_cer" in LOWER_IS_BETTER
    assert "ocr_cer ↓" in markdown_table({"ours": {"ocr_cer": 0.1}}, ["ocr_cer"])
