import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from pisasr.errors import ImageError
from pisasr.image_io import assemble, list_inputs, read_image, save_image


def test_rgb_png_round_trip(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    assert img.rgb.shape == (3, 9, 7) and img.bit_depth == 8 and not img.grayscale and img.alpha is None
    save_image(assemble(img.rgb, img.alpha, img.grayscale), tmp_path / "b.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), array)


def test_grayscale_and_alpha_are_kept(tmp_path):
    Image.fromarray(np.full((5, 6), 77, np.uint8), "L").save(tmp_path / "g.png")
    gray = read_image(tmp_path / "g.png")
    assert gray.grayscale and gray.rgb.shape == (3, 5, 6)
    save_image(assemble(gray.rgb, gray.alpha, gray.grayscale), tmp_path / "g_out.png")
    assert Image.open(tmp_path / "g_out.png").mode == "L"

    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 3] = 200
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    img = read_image(tmp_path / "t.png")
    assert img.alpha is not None and torch.allclose(img.alpha, torch.full((1, 4, 4), 200 / 255))
    save_image(assemble(img.rgb, img.alpha, img.grayscale), tmp_path / "t_out.png")
    assert Image.open(tmp_path / "t_out.png").mode == "RGBA"


@pytest.mark.parametrize("shape", [(6, 5, 3), (6, 5)])
def test_sixteen_bit_png_stays_sixteen_bit(tmp_path, shape):
    array = np.random.default_rng(1).integers(0, 65536, shape, dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "d.png"), array)
    img = read_image(tmp_path / "d.png")
    assert img.bit_depth == 16 and img.grayscale == (len(shape) == 2)
    save_image(assemble(img.rgb, img.alpha, img.grayscale), tmp_path / "d_out.png", bit_depth=16)
    back = cv2.imread(str(tmp_path / "d_out.png"), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16
    if len(shape) == 3:
        assert np.array_equal(back, array)  # exact: 16-bit values survive the float round trip


def test_sixteen_bit_tiff(tmp_path):
    array = np.random.default_rng(2).integers(0, 65536, (4, 3, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "d.tif"), array)
    img = read_image(tmp_path / "d.tif")
    assert img.bit_depth == 16
    assert torch.allclose(img.rgb[0] * 65535, torch.from_numpy(array[:, :, 2].astype(np.float32)), atol=0.01)


def test_exif_orientation_is_applied(tmp_path):
    img = Image.fromarray(np.zeros((2, 6, 3), np.uint8))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    img.save(tmp_path / "r.jpg", exif=exif)
    assert read_image(tmp_path / "r.jpg").rgb.shape == (3, 6, 2)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.png", b"", "empty file"),
        ("notes.png", b"this is text", "not an image"),
        ("cut.jpg", None, "cannot read image"),
    ],
)
def test_bad_files_name_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    if content is None:  # a truncated JPEG
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[:300])
    else:
        path.write_bytes(content)
    with pytest.raises(ImageError, match=message) as info:
        read_image(path)
    assert name in str(info.value) and "\n" not in str(info.value)


def test_list_inputs(tmp_path):
    for name in ("b.PNG", "a.jpg", "c.txt", "d.TIFF"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_inputs(tmp_path)] == ["a.jpg", "b.PNG", "d.TIFF"]
    (tmp_path / "list.txt").write_text("a.jpg\n\n# comment\nd.TIFF\n")
    assert [p.name for p in list_inputs(tmp_path / "list.txt")] == ["a.jpg", "d.TIFF"]
    with pytest.raises(ImageError, match="not found"):
        list_inputs(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="holds no images"):
        list_inputs(tmp_path / "empty")
