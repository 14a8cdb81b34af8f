import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from pisasr.errors import ImageError
from pisasr.io.images import assemble, list_inputs, read_image, save_image


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


@pytest.mark.parametrize("orientation", range(2, 9))
def test_every_exif_orientation_matches_pil(tmp_path, orientation):
    """The 8-bit path (PIL's exif_transpose) and the table the 16-bit path uses agree with PIL on each tag."""
    from PIL import ImageOps

    from pisasr.io.images import _ORIENT

    array = np.random.default_rng(orientation).integers(0, 256, (3, 5, 3), dtype=np.uint8)
    img = Image.fromarray(array)
    exif = img.getexif()
    exif[0x0112] = orientation
    img.save(tmp_path / "o.png", exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "o.png")))
    assert np.array_equal(_ORIENT[orientation](array), expected)
    loaded = (read_image(tmp_path / "o.png").rgb.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(loaded, expected)


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


def test_list_inputs(tmp_path, monkeypatch):
    for name in ("b.PNG", "a.jpg", "c.txt", "d.TIFF"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_inputs(tmp_path)] == ["a.jpg", "b.PNG", "d.TIFF"]
    (tmp_path / "list.txt").write_text(f"a.jpg\n\n# comment\n{tmp_path / 'd.TIFF'}\n")
    monkeypatch.chdir(tmp_path.parent)  # relative entries resolve against the list's folder, not this one
    assert list_inputs(tmp_path / "list.txt") == [tmp_path / "a.jpg", tmp_path / "d.TIFF"]
    with pytest.raises(ImageError, match="not found"):
        list_inputs(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="holds no images"):
        list_inputs(tmp_path / "empty")


def test_float_tiffs_keep_their_values(tmp_path):
    """Single-channel float TIFF (PIL mode F) and RGB float TIFF (which PIL cannot open), values in [0, 1]."""
    gray = np.linspace(0, 1, 20, dtype=np.float32).reshape(4, 5)
    Image.fromarray(gray, "F").save(tmp_path / "g.tif")
    img = read_image(tmp_path / "g.tif")
    assert img.grayscale and img.bit_depth == 16
    torch.testing.assert_close(img.rgb[0], torch.from_numpy(gray), atol=1e-6, rtol=0)
    rgb = np.random.default_rng(0).random((4, 5, 3), dtype=np.float32)
    cv2.imwrite(str(tmp_path / "c.tiff"), rgb[:, :, ::-1])  # OpenCV writes BGR
    img = read_image(tmp_path / "c.tiff")
    assert not img.grayscale and img.bit_depth == 16
    torch.testing.assert_close(img.rgb, torch.from_numpy(rgb).permute(2, 0, 1), atol=1e-6, rtol=0)
    save_image(assemble(img.rgb, img.alpha, img.grayscale), tmp_path / "c.png", bit_depth=img.bit_depth)
    back = cv2.imread(str(tmp_path / "c.png"), cv2.IMREAD_UNCHANGED)[:, :, ::-1] / 65535.0
    assert np.abs(back - rgb).max() <= 0.5 / 65535 + 1e-7


@pytest.mark.parametrize(
    "name, array, message",
    [
        ("hdr.tif", np.full((4, 4), 3.5, np.float32), r"float samples span \[3.5, 3.5\], not \[0, 1\]"),
        ("nan.tif", np.full((4, 4), np.nan, np.float32), "float samples span"),
        ("i32.tif", np.full((4, 4), 70000, np.int32), "32-bit signed integer samples are not supported"),
        (
            "rgb_i32.tif",
            np.full((4, 4, 3), 70000, np.int32),
            "32-bit signed integer samples are not supported",
        ),
    ],
)
def test_unusable_deep_tiffs_are_refused_naming_the_file(tmp_path, name, array, message):
    path = tmp_path / name
    if array.ndim == 2:
        Image.fromarray(array, "F" if array.dtype.kind == "f" else "I").save(path)
    else:
        assert cv2.imwrite(str(path), array)
    with pytest.raises(ImageError, match=message) as info:
        read_image(path)
    assert name in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_sixteen_bit_pil_images_keep_sixteen_bits(mode):
    from pisasr.io.images import from_pil

    values = np.array([[0, 1000], [40000, 65535]], np.uint16)
    img = from_pil(
        Image.frombytes(mode, (2, 2), values.astype(">u2" if mode.endswith("B") else "<u2").tobytes())
    )
    assert img.bit_depth == 16 and img.grayscale
    assert torch.equal((img.rgb[0] * 65535).round(), torch.from_numpy(values.astype(np.float32)))
    floats = from_pil(Image.fromarray(values.astype(np.float32) / 65535, "F"))
    torch.testing.assert_close(floats.rgb, img.rgb)


def test_sixteen_bit_rgba_keeps_channel_order(tmp_path):
    rgba = np.zeros((3, 4, 4), np.uint16)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 60000, 30000, 1000, 50000
    cv2.imwrite(str(tmp_path / "a.png"), rgba[:, :, [2, 1, 0, 3]])  # a 16-bit RGBA PNG (OpenCV is BGRA)
    img = read_image(tmp_path / "a.png")
    assert img.bit_depth == 16 and torch.allclose(img.rgb[0], torch.tensor(60000 / 65535))  # red is red
    save_image(assemble(img.rgb, img.alpha, img.grayscale), tmp_path / "b.png", bit_depth=16)
    assert np.array_equal(cv2.imread(str(tmp_path / "b.png"), cv2.IMREAD_UNCHANGED), rgba[:, :, [2, 1, 0, 3]])
    with Image.open(tmp_path / "b.png") as out:  # PIL (8-bit view) agrees on which channel is red
        assert out.mode == "RGBA" and out.getpixel((0, 0))[0] > out.getpixel((0, 0))[2]
