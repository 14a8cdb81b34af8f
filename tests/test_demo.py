"""The demo: callbacks on the tiny base (sliders never rerun the UNet), then the real server driven over HTTP by
gradio_client and shown in headless Chromium."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import image_file
from PIL import Image

from pisasr.demo.engine import UNTRAINED_NOTE, DemoEngine, DemoLimits
from pisasr.errors import ConfigError, ImageError
from pisasr.inference.pipeline import Pipeline
from pisasr.io.images import read_image

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def engine(tiny_base, trained_checkpoint, tmp_path_factory):
    pipe = Pipeline.from_pretrained(tiny_base, trained_checkpoint, device="cpu", process_size=64)
    return DemoEngine(pipe, tmp_path_factory.mktemp("demo"), DemoLimits(max_upload_mb=0.5, max_pixels=2000))


def files_under(folder: Path) -> list[Path]:
    return [f for f in folder.rglob("*") if f.is_file()]


def test_slider_positions_give_the_images_restore_gives(engine, tmp_path):
    path = image_file(tmp_path / "photo.png", (24, 20))
    cached = engine.load(path)
    for pair in [(1.0, 1.0), (0.5, 1.5), (1.0, 0.0), (1.3, 0.2)]:
        image, _ = engine.render(cached, *pair)
        assert torch.equal(image, engine.pipe.restore(read_image(path), [pair])[pair])


def test_render_alone_never_calls_the_unet_nor_writes(engine, tmp_path):
    cached = engine.load(image_file(tmp_path / "a.png", (20, 20)))
    before, files = dict(engine.pipe.calls), files_under(engine.workdir)
    for lp in np.linspace(0, 2, 5):
        image, _ = engine.render(cached, float(lp), float(2 - lp))
        assert engine.preview(image).size == (80, 80)
    assert engine.pipe.calls["unet"] == before["unet"] and engine.pipe.calls["encode"] == before["encode"]
    assert engine.pipe.calls["decode"] == before["decode"] + 5
    assert files_under(engine.workdir) == files


def test_download_keeps_sixteen_bits_and_replaces_the_last_one(engine, tmp_path):
    import cv2

    deep = tmp_path / "deep.png"
    cv2.imwrite(str(deep), (np.random.default_rng(0).random((20, 24, 3)) * 65535).astype(np.uint16))
    cached = engine.load(deep)
    first = engine.download(cached, 1.0, 1.0)
    saved = engine.download(cached, 1.0, 1.2)
    assert saved.parent == engine.workdir / cached.key and saved.name == "deep_pix1.0_sem1.2.png"
    assert cv2.imread(str(saved), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    assert not first.exists() and files_under(saved.parent) == [saved]


def test_cache_keeps_only_the_most_recently_used(engine, tmp_path):
    small = DemoEngine(engine.pipe, tmp_path / "work", DemoLimits(max_sessions=2))
    a, b = (small.load(image_file(tmp_path / f"{n}.png", (20, 20), seed=i)) for i, n in enumerate("ab"))
    small.download(a, 1.0, 1.0)
    assert small.get(a.key) is a  # a is now the most recently used: c evicts b
    c = small.load(image_file(tmp_path / "c.png", (20, 20)))
    assert len(small.cache) == 2 and a.key in small.cache and c.key in small.cache
    with pytest.raises(ImageError, match="no longer held .* 2 most recent uploads.*upload it again"):
        small.get(b.key)
    small.load(image_file(tmp_path / "d.png", (20, 20)))  # evicts a, and its download with it
    assert len(small.cache) == 2 and a.key not in small.cache and files_under(small.workdir) == []
    small.drop(c.key)
    assert len(small.cache) == 1 and c.prepared.model_input is None  # only the UNet passes needed it
    assert 0 < small.cache.nbytes < 2 * 80 * 80 * 4 * 8


def test_pixel_limit_is_read_from_the_header(engine, tmp_path, monkeypatch):
    flat = tmp_path / "flat.png"
    Image.new("RGB", (800, 800), "gray").save(flat)  # 2 KB: the byte limit lets it through
    monkeypatch.setattr(
        "pisasr.demo.engine.read_image", lambda path: pytest.fail("decoded before the pixel check")
    )
    with pytest.raises(ImageError, match=r"^flat.png: 800x800 is over the demo's limit of 2,000 pixels"):
        engine.load(flat)
    with pytest.raises(ImageError, match="--max_pixels"):
        engine.thumbnail(flat)
    thin = image_file(tmp_path / "thin.png", (100, 4))  # 400 pixels, but the model works on 400x16
    with pytest.raises(ImageError, match=r"thin.png: 100x4 \(enlarged to 400x16 .*short side below 16\)"):
        engine.load(thin)
    monkeypatch.undo()
    assert engine.load(image_file(tmp_path / "fits.png", (50, 40))).prepared.geometry.out_size == (160, 200)


def test_non_finite_lambdas_are_refused_in_one_line(engine, tmp_path):
    cached = engine.load(image_file(tmp_path / "a.png", (20, 20)))
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ConfigError, match=r"^λ_pix (nan|inf|-inf): must be a finite number$"):
            engine.render(cached, bad, 1.0)
        with pytest.raises(ConfigError, match="λ_sem .*finite"):
            engine.download(cached, 1.0, bad)
    with pytest.raises(ConfigError, match="finite"):
        engine.sweep(cached, "1.0,nan:1.0")
    with pytest.raises(ConfigError, match="36 pairs; the demo renders at most 25"):
        engine.sweep(cached, "0,1,2,3,4,5:0,1,2,3,4,5")


def test_sweep_sheet_and_upload_errors_name_the_file_only(engine, tmp_path):
    cached = engine.load(image_file(tmp_path / "a.png", (20, 20)))
    sheet = engine.sweep(cached, "0.5,1.0:0,1.0,1.5")
    assert sheet.size == (3 * 256, 2 * (256 + 18))
    big = tmp_path / "big.png"
    big.write_bytes(os.urandom(600_000))
    with pytest.raises(ImageError, match="^big.png: 0.6 MB is over the demo's upload limit of 0.5 MB"):
        engine.load(big)
    (tmp_path / "bad.png").write_text("not an image")
    for step in (engine.load, engine.thumbnail):
        with pytest.raises(ImageError, match="^bad.png: not an image file") as info:
            step(tmp_path / "bad.png")
        assert str(tmp_path) not in str(info.value)


def test_upload_preview_keeps_the_image_kind(engine, tmp_path):
    gray = engine.thumbnail(image_file(tmp_path / "g.png", (30, 20), mode="L"))
    assert gray.mode == "L" and gray.size == (30, 20)
    rgba = engine.thumbnail(image_file(tmp_path / "t.png", (40, 20), mode="RGBA"))
    assert rgba.mode == "RGBA"
    assert DemoEngine(engine.pipe, tmp_path / "w").thumbnail(REPO / "examples" / "coffee.png").size[0] <= 512


def test_app_labels_sides_offers_examples_and_says_when_untrained(engine, monkeypatch):
    import gradio as gr

    from pisasr.demo.app import build_app

    def texts(app, kind):
        return [b for b in app.blocks.values() if isinstance(b, kind)]

    app = build_app(engine)
    assert app.delete_cache == (900, 3600)  # Gradio's copies of previews and downloads go after an hour
    (compare,) = texts(app, gr.ImageSlider)
    assert compare.format == "png" and "before" in compare.label and "after" in compare.label
    assert all(image.format == "png" for image in texts(app, gr.Image))
    (examples,) = texts(app, gr.Dataset)
    assert len(examples.samples) == len(list((REPO / "examples").glob("*.png"))) >= 4
    assert not any(UNTRAINED_NOTE in md.value for md in texts(app, gr.Markdown))
    monkeypatch.setattr(engine.pipe, "weights", None)
    assert any(UNTRAINED_NOTE in md.value for md in texts(build_app(engine), gr.Markdown))


def test_closing_the_page_or_uploading_again_drops_the_entry(engine, tmp_path):
    import gradio as gr

    from pisasr.demo.app import build_app

    fns = {f.name: f.fn for f in build_app(engine).fns.values()}
    request = gr.Request(session_hash="one-session")
    photo = image_file(tmp_path / "a.png", (20, 20))
    first, _, _ = fns["on_load"](photo, None, 1.0, 1.0, request)
    second, _, _ = fns["on_load"](photo, first, 1.0, 1.0, request)
    assert first not in engine.cache and second in engine.cache
    fns["on_close"](request)
    assert second not in engine.cache


# -- the real server --------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(tmp: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """``scripts/demo.py`` on a free port, its temporary folder under ``tmp`` (TMPDIR); returns once it serves."""
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": str(REPO),
           "TMPDIR": str(tmp)}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "scripts/demo.py", "--config", "configs/smoke.yaml", "--port", str(port),
         "model.tiny_base_if_missing=false", "inference.process_size=64", *args],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc, url
        except OSError:
            time.sleep(1)
    proc.kill()
    pytest.fail(f"demo server did not start: {proc.stdout.read()[-2000:]}")


@pytest.fixture(scope="module")
def server(tiny_base, trained_checkpoint, tmp_path_factory):
    """The server with trained weights; stopped with SIGINT (Ctrl-C), after which its folder must be gone."""
    tmp = tmp_path_factory.mktemp("server")
    proc, url = start_server(
        tmp, "--base", tiny_base, "--weights", trained_checkpoint, "--max_upload_mb", "1"
    )
    yield url, tmp
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    assert list(tmp.iterdir()) == [], "SIGINT left the demo's temporary folder behind"


@pytest.mark.slow
def test_server_upload_sliders_download(server, tiny_base, trained_checkpoint, tmp_path):
    from gradio_client import Client, handle_file

    url, server_tmp = server
    (results,) = server_tmp.glob("pisasr-demo-*/results")
    client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
    photo = image_file(tmp_path / "photo.png", (24, 20))
    compare, note = client.predict(handle_file(str(photo)), 1.0, 1.0, api_name="/load")
    assert "recombined and decoded" in note and [Path(side).suffix for side in compare] == [".png", ".png"]
    assert Image.open(compare[1]).size == (96, 80)
    _, note2 = client.predict(0.4, 1.6, api_name="/render")
    assert "λ_pix 0.4, λ_sem 1.6" in note2 and files_under(results) == []  # slider moves write nothing
    download = client.predict(0.4, 1.6, api_name="/download")
    assert Path(download).name == "photo_pix0.4_sem1.6.png" and len(files_under(results)) == 1
    ours = np.asarray(Image.open(download))
    expected = Pipeline.from_pretrained(tiny_base, trained_checkpoint, device="cpu", process_size=64).restore(
        read_image(photo), [(0.4, 1.6)]
    )[(0.4, 1.6)]
    expected = (expected.permute(1, 2, 0).numpy() * 255).round()
    assert np.abs(ours.astype(float) - expected).max() <= 1
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(Exception, match="bad.png: not an image file") as info:
        client.predict(handle_file(str(bad)), 1.0, 1.0, api_name="/load")
    assert str(server_tmp) not in str(info.value) and "uploads" not in str(info.value)


@pytest.mark.slow
def test_server_renders_a_painted_region(server, tiny_base, trained_checkpoint, tmp_path):
    """The regions panel over HTTP: an ImageEditor layer painted on the left 40 columns (pisasr/demo/regions_panel.py)."""
    from gradio_client import Client, handle_file

    from pisasr.regions.maps import RegionMap

    client = Client(server[0], verbose=False, download_files=str(tmp_path / "downloads"))
    photo = image_file(tmp_path / "photo.png", (24, 20))
    client.predict(handle_file(str(photo)), 1.0, 1.0, api_name="/load")
    layer = np.zeros((80, 96, 4), np.uint8)
    layer[:, :40] = (255, 64, 64, 255)
    Image.fromarray(layer, "RGBA").save(tmp_path / "layer.png")
    Image.new("RGB", (96, 80)).save(tmp_path / "background.png")
    background = handle_file(str(tmp_path / "background.png"))
    editor = {
        "background": background,
        "layers": [handle_file(str(tmp_path / "layer.png"))],
        "composite": background,
    }
    _, note = client.predict(editor, 1.0, 0.3, 0.6, 1.4, 8, api_name="/render_regions")
    assert "painted region (41.7% of the image) at λ (1, 0.3), the rest at (0.6, 1.4), feather 8 px" in note
    result, mask, record = client.predict(editor, 1.0, 0.3, 0.6, 1.4, 8, api_name="/download_regions")
    assert np.array_equal(np.asarray(Image.open(mask)) > 0, layer[:, :, 3] > 0)
    region = RegionMap(layer[:, :, 3] > 0, (1.0, 0.3), (0.6, 1.4), feather=8)
    pipe = Pipeline.from_pretrained(tiny_base, trained_checkpoint, device="cpu", process_size=64)
    expected = (pipe.restore(read_image(photo), [region])[region].permute(1, 2, 0).numpy() * 255).round()
    assert np.abs(np.asarray(Image.open(result)).astype(float) - expected).max() <= 1


@pytest.mark.slow
def test_sigterm_removes_the_temporary_folder(tiny_base, tmp_path):
    """What docker and systemd send; SIGINT is checked when the ``server`` fixture stops."""
    proc, _ = start_server(tmp_path, "--base", tiny_base)
    assert len(list(tmp_path.glob("pisasr-demo-*"))) == 1
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert list(tmp_path.iterdir()) == []
    console = proc.stdout.read()
    assert UNTRAINED_NOTE in console  # said on the console as well as on the page
    assert "interrupted (SIGTERM, exit code 143)" in console and "Keyboard interruption" not in console


def _browser():
    chrome, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chrome and driver):
        pytest.skip("no browser: install Debian's chromium and chromium-driver (README, Demo) for this test")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chrome
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1280,1000"):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


@pytest.mark.slow
def test_browser_shows_the_result(server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser = _browser()
    try:
        browser.get(server[0])
        wait = WebDriverWait(browser, 120)
        upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "input[type=file]")))
        upload.send_keys(str(REPO / "examples" / "coffee.png"))
        wait.until(lambda b: "recombined and decoded" in b.page_source)
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "img")) >= 3)  # upload, before, after
        shown = {img.get_attribute("src") for img in browser.find_elements(By.CSS_SELECTOR, "img")}
        browser.find_element(By.XPATH, "//*[normalize-space(text())='chelsea.png']").click()  # an example
        wait.until(
            lambda b: (
                "recombined and decoded" in b.page_source
                and len({img.get_attribute("src") for img in b.find_elements(By.CSS_SELECTOR, "img")} - shown)
                >= 3
            )
        )
        time.sleep(1)
        shot = tmp_path / "demo.png"
        browser.save_screenshot(str(shot))
        assert Image.open(shot).size[0] >= 1000
        if os.environ.get("PISASR_DEMO_SCREENSHOT"):  # how docs/demo.png is made
            shutil.copy(shot, os.environ["PISASR_DEMO_SCREENSHOT"])
    finally:
        browser.quit()


def test_two_decimal_lambdas_in_downloads_and_sweep_labels(engine, tmp_path, monkeypatch):
    """A download at (0.25, 1.75) is named so, also from a slider's float (0.05 steps: 0.35000000000000003), and
    the demo's sweep sheet labels each cell with its two-decimal pair."""
    from PIL import ImageDraw

    cached = engine.load(image_file(tmp_path / "p.png", (20, 20)))
    assert engine.download(cached, 0.25, 1.75).name == "p_pix0.25_sem1.75.png"
    assert engine.download(cached, 7 * 0.05, 1.0).name == "p_pix0.35_sem1.0.png"
    labels = []
    draw_text = ImageDraw.ImageDraw.text
    monkeypatch.setattr(
        ImageDraw.ImageDraw,
        "text",
        lambda d, xy, text, *a, **k: (labels.append(text), draw_text(d, xy, text, *a, **k))[1],
    )
    engine.sweep(cached, "0.25:1.75,1.8")
    assert labels == ["pix 0.25  sem 1.75", "pix 0.25  sem 1.8"]


def test_before_of_an_enlarged_upload_is_the_upload_at_the_output_size(engine, tmp_path):
    """An upload whose short side is below process_size / upscale is enlarged for the model; the comparison's
    "before" must still be that upload, upsampled to the output's size and framing (the slider overlays the two):
    the same size as the "after", and the picture a plain bicubic upsampling of the upload gives (0.01 of its
    contrast measured), not a crop (1.2), a 2-pixel shift (0.2) or a zoom of the enlarged model input."""
    import numpy as np

    from pisasr.inference.resize import resize_image
    from pisasr.io.images import to_pil

    path = image_file(tmp_path / "small.png", (12, 10), seed=3)
    cached = engine.load(path)
    assert cached.prepared.enlarged  # 10 < 64 // 4
    after = engine.preview(engine.render(cached, 1.0, 1.0)[0])
    assert cached.before.size == after.size == (48, 40)
    upload = read_image(path)
    plain = np.asarray(to_pil(resize_image(upload.rgb[None], (40, 48), "pil", 8)[0]), dtype=np.float32)
    before = np.asarray(cached.before, dtype=np.float32)
    error = np.abs(before - plain).mean() / np.abs(plain - plain.mean((0, 1))).mean()
    assert error < 0.1, f"the before image is not the upload upsampled ({error:.2f} of its contrast)"
