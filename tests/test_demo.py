"""The demo: callbacks on the tiny base (sliders never rerun the UNet), then the real server driven over HTTP by
gradio_client and shown in headless Chromium."""

import os
import shutil
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

from pisasr.demo import DemoEngine
from pisasr.errors import ImageError
from pisasr.image_io import read_image
from pisasr.pipeline import Pipeline

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def engine(tiny_base, trained_checkpoint, tmp_path_factory):
    pipe = Pipeline.from_pretrained(tiny_base, trained_checkpoint, device="cpu", process_size=64)
    return DemoEngine(pipe, tmp_path_factory.mktemp("demo"), max_upload_mb=0.5)


def test_slider_positions_give_the_images_restore_gives(engine, tmp_path):
    path = image_file(tmp_path / "photo.png", (24, 20))
    cached = engine.load(path)
    for pair in [(1.0, 1.0), (0.5, 1.5), (1.0, 0.0), (1.3, 0.2)]:
        image, _ = engine.render(cached, *pair)
        assert torch.equal(image, engine.pipe.restore(read_image(path), [pair])[pair])


def test_render_alone_never_calls_the_unet(engine, tmp_path):
    cached = engine.load(image_file(tmp_path / "a.png", (20, 20)))
    before = dict(engine.pipe.calls)
    for lp in np.linspace(0, 2, 5):
        engine.render(cached, float(lp), float(2 - lp))
    assert engine.pipe.calls["unet"] == before["unet"] and engine.pipe.calls["encode"] == before["encode"]
    assert engine.pipe.calls["decode"] == before["decode"] + 5


def test_download_keeps_sixteen_bits_and_stays_in_the_workdir(engine, tmp_path):
    import cv2

    deep = tmp_path / "deep.png"
    cv2.imwrite(str(deep), (np.random.default_rng(0).random((20, 24, 3)) * 65535).astype(np.uint16))
    cached = engine.load(deep)
    image, _ = engine.render(cached, 1.0, 1.2)
    saved = engine.save(cached, image, 1.0, 1.2)
    assert saved.parent == engine.workdir and saved.name == "deep_pix1.0_sem1.2.png"
    assert cv2.imread(str(saved), cv2.IMREAD_UNCHANGED).dtype == np.uint16


def test_sweep_sheet_and_upload_limits(engine, tmp_path):
    cached = engine.load(image_file(tmp_path / "a.png", (20, 20)))
    sheet = engine.sweep(cached, "0.5,1.0:0,1.0,1.5")
    assert sheet.size == (3 * 256, 2 * (256 + 18))
    big = tmp_path / "big.png"
    big.write_bytes(os.urandom(600_000))
    with pytest.raises(ImageError, match="upload limit"):
        engine.load(big)
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(ImageError, match="bad.png"):
        engine.load(tmp_path / "bad.png")


# -- the real server --------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_base, trained_checkpoint):
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "scripts/demo.py", "--config", "configs/smoke.yaml", "--base", tiny_base,
         "--weights", trained_checkpoint, "--port", str(port), "--max_upload_mb", "1",
         "model.tiny_base_if_missing=false", "inference.process_size=64"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            time.sleep(1)
    else:
        proc.kill()
        pytest.fail(f"demo server did not start: {proc.stdout.read()[-2000:]}")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.slow
def test_server_upload_sliders_download(server, tiny_base, trained_checkpoint, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False, download_files=str(tmp_path / "downloads"))
    photo = image_file(tmp_path / "photo.png", (24, 20))
    compare, download, note = client.predict(handle_file(str(photo)), 1.0, 1.0, api_name="/load")
    assert "recombined and decoded" in note and len(compare) == 2
    assert Image.open(download).size == (96, 80)
    _, download2, note2 = client.predict(0.4, 1.6, api_name="/render")
    assert "λ_pix 0.4, λ_sem 1.6" in note2 and Path(download2).name == "photo_pix0.4_sem1.6.png"
    ours = np.asarray(Image.open(download2))
    expected = Pipeline.from_pretrained(tiny_base, trained_checkpoint, device="cpu", process_size=64).restore(
        read_image(photo), [(0.4, 1.6)]
    )[(0.4, 1.6)]
    expected = (expected.permute(1, 2, 0).numpy() * 255).round()
    assert np.abs(ours.astype(float) - expected).max() <= 1
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(Exception, match="not an image file"):
        client.predict(handle_file(str(bad)), 1.0, 1.0, api_name="/load")


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
                 "--no-first-run", "--window-size=1280,900"):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


@pytest.mark.slow
def test_browser_shows_the_result(server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser = _browser()
    try:
        browser.get(server)
        wait = WebDriverWait(browser, 120)
        upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "input[type=file]")))
        upload.send_keys(str(REPO / "examples" / "coffee.png"))
        wait.until(lambda b: "recombined and decoded" in b.page_source)
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "img")) >= 2)
        time.sleep(1)
        shot = tmp_path / "demo.png"
        browser.save_screenshot(str(shot))
        assert Image.open(shot).size[0] >= 1000
        if os.environ.get("PISASR_DEMO_SCREENSHOT"):  # how docs/demo.png is made
            shutil.copy(shot, os.environ["PISASR_DEMO_SCREENSHOT"])
    finally:
        browser.quit()
