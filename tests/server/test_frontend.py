"""ComfyUI's own web front-end, served by `sdgraph serve --frontend`, in a real headless Chromium:
it loads, lists sdgraph's nodes, queues its default graph (Z-Image Turbo, on tiny models under the
file names it asks for) and shows the image. Skipped where the browser or the front-end is missing
(`apt-get install chromium chromium-driver`, `pip install selenium comfyui-frontend-package`)."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from pathlib import Path

import pytest

import nodes.folders
from tests.server.conftest import start_server

pytestmark = pytest.mark.slow

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def write_z_image(root: Path) -> None:
    """The model files the front-end's default graph names, as tiny seeded models."""
    import torch

    from nodes.diffusion.text.encoder_files import QWEN3
    from tests.support import tiny_flow as tf
    from tests.support.tiny_text import save_encoder, tiny_encoder

    for kind in ("diffusion_models", "text_encoders", "vae"):
        (root / kind).mkdir(parents=True, exist_ok=True)
    transformer = tf.z_image_to_original(tf.tiny_z_image(3))
    tf.write_file(root / "diffusion_models" / "z_image_turbo_bf16.safetensors", transformer, dtype=torch.bfloat16)
    tf.write_file(root / "vae" / "ae.safetensors", tf.vae16_to_original(tf.tiny_vae16(5)))
    save_encoder(tiny_encoder(QWEN3, 9), QWEN3, root / "text_encoders" / "qwen_3_4b.safetensors")


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    pytest.importorskip("comfyui_frontend_package")
    if not CHROMIUM or not DRIVER:
        pytest.skip("needs Debian's chromium and chromium-driver")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_comfyuis_frontend_queues_its_default_graph_and_shows_the_image(browser, tmp_path):
    write_z_image(tmp_path / "models")
    nodes.folders.configure(extra_roots=[str(tmp_path / "models")])
    try:
        with start_server(tmp_path / "server", frontend="") as served:
            # A returning user: no first-run template browser over the default graph.
            request = urllib.request.Request(
                f"{served.url}/api/settings", data=json.dumps({"Comfy.TutorialCompleted": True}).encode(), method="POST"
            )
            urllib.request.urlopen(request).read()
            browser.get(served.url + "/")
            app_ready = "return window.app && window.app.graph && window.app.graph._nodes.length > 0"
            _wait(lambda: browser.execute_script(app_ready), 60, "the front-end to load its default graph")
            registered = browser.execute_script("return Object.keys(LiteGraph.registered_node_types)")
            assert {"KSampler", "CLIPTextEncode", "UNETLoader", "SaveImage"} <= set(registered)
            types = browser.execute_script("return app.graph._nodes.map(n => n.type)")
            assert "SaveImage" in types and "KSampler" in types

            (run,) = [b for b in browser.find_elements("tag name", "button") if b.text.strip() == "Run"]
            run.click()
            outputs = _wait(
                lambda: browser.execute_script("return Object.keys(app.nodeOutputs || {}).length && app.nodeOutputs"),
                120,
                "the prompt's image",
            )
            (image,) = [i for out in outputs.values() for i in out.get("images", [])]
            assert image["type"] == "output" and (served.output / image["filename"]).is_file()
            # The Save Image node fetches and draws the picture once it is on screen.
            browser.execute_script("app.canvas.centerOnNode(app.graph._nodes.find(n => n.type == 'SaveImage'))")
            src = _wait(
                lambda: browser.execute_script(
                    "const n = app.graph._nodes.find(n => n.type == 'SaveImage');"
                    "return n.imgs && n.imgs.length && n.imgs[0].complete && n.imgs[0].naturalWidth && n.imgs[0].src"
                ),
                30,
                "the Save Image node to show the picture",
            )
            assert "/view?filename=" + image["filename"] in src
            shown = "return app.graph._nodes.find(n => n.type == 'SaveImage').imgs[0].naturalWidth"
            assert browser.execute_script(shown) == 1024
            # Nothing it asked of the server failed: no 500s, and its queue and history panels (/jobs) load.
            errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
            assert not [e for e in errors if "status of 500" in e or "Jobs API" in e or "/api/prompt" in e], errors
    finally:
        nodes.folders.configure()
