"""The web page in a real headless Chromium (Debian's chromium + chromedriver, via Selenium).

Uploads by drag-and-drop and by the file button, presses Predict, reads the label, opens
the stored record, submits a correction and finds it in the gallery.
"""

import base64
import os
import shutil
from pathlib import Path

import pytest

from tests.web.conftest import serve_process

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():
    if not (Path(CHROMEDRIVER).exists() and Path(CHROMIUM).exists()):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromium-driver must be installed in CI (.ci/run installs them)")
        pytest.skip("Debian chromium/chromium-driver not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1200,900",
    ):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def site():
    with serve_process() as base:
        yield base


def _wait_for_label(driver):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30).until(ec.visibility_of_element_located((By.ID, "result")))
    return driver.find_element(By.ID, "label").text


def test_upload_by_button_then_correct_in_gallery(browser, site, shared_data, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    image = tmp_path / "m51.jpg"
    shutil.copyfile(shared_data / "hubble-dso/galaxy/heic0007b.jpg", image)
    browser.get(site + "/")
    predict = browser.find_element(By.ID, "predict")
    assert not predict.is_enabled()
    browser.find_element(By.ID, "file").send_keys(str(image))
    assert predict.is_enabled()
    predict.click()
    assert _wait_for_label(browser) in ("galaxy", "nebula", "planet")
    bars = browser.find_elements(By.CSS_SELECTOR, "#bars .bar")
    assert len(bars) == 3

    browser.find_element(By.ID, "record").click()
    Select(browser.find_element(By.NAME, "label")).select_by_value("nebula")
    browser.find_element(By.NAME, "comment").send_keys("looks like gas")
    browser.find_element(By.CSS_SELECTOR, "#feedback button").click()
    assert "your correction is saved" in browser.find_element(By.CSS_SELECTOR, ".saved").text
    assert "looks like gas" in browser.find_element(By.ID, "corrections").text

    browser.get(site + "/gallery")
    names = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".gallery .name")]
    assert "m51.jpg" in names
    thumb = browser.find_element(By.CSS_SELECTOR, ".gallery img")
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", thumb)


def test_upload_by_drag_and_drop(browser, site, shared_data):
    data = (shared_data / "nasa-planets-galaxies/planet").iterdir()
    payload = base64.b64encode(next(iter(sorted(data))).read_bytes()).decode()
    browser.get(site + "/")
    browser.execute_script(
        """
        const bytes = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));
        const file = new File([bytes], "dropped.jpg", {type: "image/jpeg"});
        const dt = new DataTransfer();
        dt.items.add(file);
        const drop = document.getElementById("drop");
        drop.dispatchEvent(new DragEvent("dragenter", {dataTransfer: dt, bubbles: true}));
        drop.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true}));
        """,
        payload,
    )
    from selenium.webdriver.common.by import By

    browser.find_element(By.ID, "predict").click()
    assert _wait_for_label(browser) == "planet"


def test_bad_file_shows_an_error_not_a_result(browser, site, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    fake = tmp_path / "fake.jpg"
    fake.write_text("not really a picture")
    browser.get(site + "/")
    browser.find_element(By.ID, "file").send_keys(str(fake))
    browser.find_element(By.ID, "predict").click()
    error = WebDriverWait(browser, 30).until(ec.visibility_of_element_located((By.ID, "error")))
    assert "not a recognised image" in error.text
    assert not browser.find_element(By.ID, "result").is_displayed()
