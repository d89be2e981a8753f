"""The page in a real headless Chromium (Debian's, driven by selenium + chromedriver): upload a photo,
move a slider, see the dream change, and the live stream steered by the same slider.

Skipped when chromium, chromedriver or selenium is missing (scripts/install_browser.sh installs
the browser; CI runs it)."""

from __future__ import annotations

import base64
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from livedream.io.sources import SyntheticSource
from livedream.server.app import Service
from livedream.server.runner import service_thread
from livedream.server.settings import ServerSettings

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "fruits.jpg"
TOKEN = "browser-test-token"

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip("chromium / chromedriver not installed (run scripts/install_browser.sh)",
                allow_module_level=True)

from selenium.webdriver.chrome.service import Service as DriverService  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.slow  # a real browser


@pytest.fixture(scope="module")
def site():
    """The app with a token and a tiny synthetic live source; the page's defaults one small step."""
    source = SyntheticSource(96, 72, frames=sys.maxsize, fps=10, paced=True)
    settings = ServerSettings(port=0, token=TOKEN, dream_side=96, level=1, detail=1)
    with service_thread(Service(settings, source=source, source_spec="synthetic")) as st:
        yield st


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    with tempfile.TemporaryDirectory(prefix="livedream-chromium-") as profile:
        for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1000,1400"):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=DriverService(executable_path=CHROMEDRIVER))
        try:
            yield driver
        finally:
            driver.quit()


def _after_bytes(driver) -> bytes:
    """The bytes of the dreamed image the page shows (its blob: URL, read inside the page)."""
    url = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(document.getElementById('after').src).then(r => r.blob()).then(b => {"
        "  const reader = new FileReader(); reader.onload = () => done(reader.result);"
        "  reader.readAsDataURL(b); });")
    return base64.b64decode(url.split(",", 1)[1])


def _decode(data: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert bgr is not None
    return bgr


def test_upload_move_a_slider_and_the_dream_changes(site, browser):
    driver = browser
    driver.set_script_timeout(30)
    wait = WebDriverWait(driver, 60)
    driver.get(f"{site.url}/?token={TOKEN}")
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "ready")
    assert driver.find_element(By.ID, "level").get_attribute("value") == "1"  # the server's defaults
    assert driver.find_element(By.ID, "camera").get_attribute("capture") == "environment"

    driver.find_element(By.ID, "file").send_keys(str(SAMPLE))
    wait.until(lambda d: d.find_element(By.ID, "after").get_attribute("data-shown") == "1")
    first = _after_bytes(driver)
    before_size = driver.execute_script(
        "const b = document.getElementById('before'); return [b.naturalWidth, b.naturalHeight];")
    assert list(_decode(first).shape[1::-1]) == before_size == [512, 480]

    level = driver.find_element(By.ID, "level")
    level.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)  # Level 1 -> 3: as a user would, by keyboard
    wait.until(lambda d: d.find_element(By.ID, "level-value").text == "3")
    wait.until(lambda d: d.find_element(By.ID, "after").get_attribute("data-shown") in ("2", "3")
               and d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "idle")
    second = _after_bytes(driver)
    a, b = _decode(first).astype(int), _decode(second).astype(int)
    assert a.shape == b.shape and np.abs(a - b).mean() > 1.0, "the dream did not change"
    assert "error" not in driver.find_element(By.ID, "status").get_attribute("class")

    # The same slider steered the live stream, which the page shows.
    def live_iters(_):  # the page steers the live stream by its own request, maybe still on its way
        return httpx.get(f"{site.url}/api/params", params={"token": TOKEN}).json()["params"]["iters"]
    wait.until(lambda d: live_iters(d) == 3)
    wait.until(lambda d: d.execute_script("return document.getElementById('live').naturalWidth") == 96)


def test_stream_view_for_obs(site, browser):
    driver = browser
    driver.get(f"{site.url}/?view=stream&token={TOKEN}")
    wait = WebDriverWait(driver, 60)
    wait.until(lambda d: d.execute_script("return document.getElementById('live').naturalWidth") == 96)
    assert not driver.find_element(By.TAG_NAME, "header").is_displayed()
    assert not driver.find_element(By.ID, "file").is_displayed()
    box = driver.execute_script("const r = document.getElementById('live').getBoundingClientRect();"
                                "return [r.width, window.innerWidth];")
    assert box[0] == box[1]  # fills the window
