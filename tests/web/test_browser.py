"""The web page in a real headless Chromium (Debian's chromium + chromedriver, via Selenium).

Uploads by drag-and-drop and by the file button, presses Predict, reads the label, opens
the stored record, submits a correction and finds it in the gallery.
"""

import base64
import os
from pathlib import Path

import pytest

from tests.conftest import distinct
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


def _wait_for_results(driver, n=1):
    """The result cards of the newest batch, once ``n`` of them show a label or an error."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def done(d):
        cards = d.find_elements(By.CSS_SELECTOR, "#results > div:first-child .result")
        finished = [
            c
            for c in cards
            if c.find_element(By.CSS_SELECTOR, ".label").text or c.find_element(By.CSS_SELECTOR, ".error").text
        ]
        return cards if len(finished) >= n else False

    return WebDriverWait(driver, 30).until(done)


def _image_loaded(driver, img) -> bool:
    return driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)


def test_upload_by_button_explain_then_correct_in_gallery(browser, site, shared_data, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    image = tmp_path / "m51.jpg"
    image.write_bytes(distinct((shared_data / "hubble-dso/galaxy/heic0506a.jpg").read_bytes(), "m51"))
    browser.get(site + "/")
    predict = browser.find_element(By.ID, "predict")
    assert not predict.is_enabled()
    browser.find_element(By.ID, "file").send_keys(str(image))
    assert predict.is_enabled()
    predict.click()
    (card,) = _wait_for_results(browser)
    assert card.find_element(By.CSS_SELECTOR, ".label").text in ("galaxy", "nebula", "planet", "star_cluster")
    assert len(card.find_elements(By.CSS_SELECTOR, ".bars .bar")) == 4  # one per class of dso
    assert not card.find_element(By.CSS_SELECTOR, ".credit").is_displayed()  # renamed file: no guessed credit

    shot = card.find_element(By.CSS_SELECTOR, "img.shot")
    original = shot.get_attribute("src")
    toggle = card.find_element(By.CSS_SELECTOR, "button.cam")
    toggle.click()
    assert toggle.get_attribute("aria-pressed") == "true"
    assert shot.get_attribute("src").endswith("/explanation.png")
    WebDriverWait(browser, 30).until(lambda d: _image_loaded(d, shot))
    toggle.click()
    assert shot.get_attribute("src") == original

    card.find_element(By.CSS_SELECTOR, "a.record").click()
    WebDriverWait(browser, 30).until(lambda d: "/classifications/" in d.current_url)
    cam = browser.find_element(By.CSS_SELECTOR, "button.cam")
    cam.click()
    detail_shot = browser.find_element(By.CSS_SELECTOR, "img.shot")
    WebDriverWait(browser, 30).until(lambda d: _image_loaded(d, detail_shot))
    assert detail_shot.get_attribute("src").endswith("/explanation.png")
    Select(browser.find_element(By.NAME, "label")).select_by_value("nebula")
    browser.find_element(By.NAME, "comment").send_keys("looks like gas")
    browser.find_element(By.CSS_SELECTOR, "#feedback button").click()
    # The form posts and redirects: wait for the new page rather than reading the old one.
    saved = WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".saved"))[0]
    assert "your correction is saved" in saved.text
    assert "looks like gas" in browser.find_element(By.ID, "corrections").text

    browser.get(site + "/gallery")
    names = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".gallery .name")]
    assert "m51.jpg" in names
    thumb = browser.find_element(By.CSS_SELECTOR, ".gallery img")
    WebDriverWait(browser, 30).until(lambda d: _image_loaded(d, thumb))


def test_drop_several_files_keeps_their_order_and_credits_archives(browser, site, shared_data):
    from selenium.webdriver.common.by import By

    planet = sorted((shared_data / "nasa-planets-galaxies/planet").iterdir())[0]
    hubble = shared_data / "hubble-dso/galaxy/heic0506a.jpg"
    files = [
        (planet.name, base64.b64encode(planet.read_bytes()).decode()),
        (hubble.name, base64.b64encode(distinct(hubble.read_bytes(), "drop")).decode()),
    ]
    browser.get(site + "/")
    browser.execute_script(
        """
        const dt = new DataTransfer();
        for (const [name, b64] of arguments[0]) {
          const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
          dt.items.add(new File([bytes], name, {type: "image/jpeg"}));
        }
        const drop = document.getElementById("drop");
        drop.dispatchEvent(new DragEvent("dragenter", {dataTransfer: dt, bubbles: true}));
        drop.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true}));
        """,
        files,
    )
    assert len(browser.find_elements(By.CSS_SELECTOR, "#chosen img")) == 2  # previews
    browser.find_element(By.ID, "predict").click()
    first, second = _wait_for_results(browser, n=2)
    assert first.find_element(By.CSS_SELECTOR, ".name").text == planet.name
    assert first.find_element(By.CSS_SELECTOR, ".label").text == "planet"
    assert second.find_element(By.CSS_SELECTOR, ".label").text == "galaxy"
    credit = second.find_element(By.CSS_SELECTOR, ".credit")
    assert "ESA/Hubble & NASA (CC BY 4.0)" in credit.text
    link = credit.find_element(By.TAG_NAME, "a").get_attribute("href")
    assert link == "https://esahubble.org/images/heic0506a/"
    assert "finished" not in browser.find_element(By.ID, "progress").text
    assert browser.find_element(By.ID, "progress").text == "2 images classified."


def test_bad_file_shows_an_error_next_to_good_results(browser, site, shared_data, tmp_path):
    from selenium.webdriver.common.by import By

    fake = tmp_path / "fake.jpg"
    fake.write_text("not really a picture")
    good = tmp_path / "good.jpg"
    good.write_bytes(distinct((shared_data / "hubble-dso/galaxy/heic0506a.jpg").read_bytes(), "good"))
    browser.get(site + "/")
    browser.find_element(By.ID, "file").send_keys(f"{fake}\n{good}")
    browser.find_element(By.ID, "predict").click()
    bad_card, good_card = _wait_for_results(browser, n=2)
    error = bad_card.find_element(By.CSS_SELECTOR, ".error")
    assert error.is_displayed() and "not a recognised image" in error.text
    assert not bad_card.find_element(By.CSS_SELECTOR, ".verdict").is_displayed()
    assert not bad_card.find_element(By.CSS_SELECTOR, "button.cam").is_displayed()
    assert good_card.find_element(By.CSS_SELECTOR, ".label").text == "galaxy"


def test_fits_files_get_a_preview_before_upload_and_a_result_after(browser, site, shared_data, tmp_path):
    """A browser cannot show FITS: the page asks the server for a preview, then classifies."""
    import numpy as np
    from astropy.io import fits
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    grey = np.asarray(Image.open(shared_data / "hubble-dso/galaxy/heic0506a.jpg").convert("L"), np.float32)
    flux = (grey / 255) ** 2 * 5000 + 100  # counts, not display values
    flux[:10] = np.nan
    fits.PrimaryHDU(flux[::-1]).writeto(tmp_path / "flux.fits")
    browser.get(site + "/")
    browser.find_element(By.ID, "file").send_keys(str(tmp_path / "flux.fits"))

    def shown(d):
        imgs = d.find_elements(By.CSS_SELECTOR, "#chosen img")
        return imgs and d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", imgs[0])

    assert WebDriverWait(browser, 30).until(shown) == 320  # the server's preview, not a broken image
    browser.find_element(By.ID, "predict").click()
    (card,) = _wait_for_results(browser, n=1)
    assert card.find_element(By.CSS_SELECTOR, ".label").text == "galaxy"


@pytest.mark.parametrize("width", [390, 1280])
def test_pages_fit_phone_and_desktop_and_work_by_keyboard(browser, site, width):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    browser.set_window_size(width, 900)
    try:
        for path in ("/", "/gallery", "/ingest", "/models", "/models/dso", "/documentation", "/classifications/1"):
            browser.get(site + path)
            overflow = browser.execute_script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{path} scrolls sideways by {overflow} px at {width} px wide"
            hidden = browser.execute_script(  # nor do its tables hide columns behind a scroll bar
                "return Math.max(0, ...[...document.querySelectorAll('.table-wrap')]"
                ".map(w => w.scrollWidth - w.clientWidth))"
            )
            assert hidden <= 0, f"{path}: a table scrolls sideways by {hidden} px at {width} px wide"
        browser.get(site + "/")
        focused = []
        for _ in range(8):
            ActionChains(browser).send_keys(Keys.TAB).perform()
            active = browser.switch_to.active_element
            focused.append(active.get_attribute("id") or active.text)
        assert "drop" in focused  # the drop area is reachable by keyboard
    finally:
        browser.set_window_size(1200, 900)


@pytest.mark.parametrize("width", [390, 1280])
def test_results_layout_and_empty_states(browser, site, shared_data, tmp_path, width):
    """On a phone the verdict comes before the image; on a desktop the image sits on its left.

    The gallery's empty state reads on one line (its link used to inherit the grid's column layout),
    and the Grad-CAM colour key shows only with the overlay.
    """
    from selenium.webdriver.common.by import By

    browser.set_window_size(width, 900)
    try:
        image = tmp_path / "layout.jpg"
        image.write_bytes(distinct((shared_data / "hubble-dso/galaxy/heic0506a.jpg").read_bytes(), f"layout{width}"))
        browser.get(site + "/")
        browser.find_element(By.ID, "file").send_keys(str(image))
        browser.find_element(By.ID, "predict").click()
        (card,) = _wait_for_results(browser)
        verdict = card.find_element(By.CSS_SELECTOR, ".verdict-box").rect
        figure = card.find_element(By.CSS_SELECTOR, "figure").rect
        if width < 600:
            assert verdict["y"] + 80 < figure["y"]  # the answer first, the picture below it
        else:
            assert figure["x"] + figure["width"] <= verdict["x"] and abs(figure["y"] - verdict["y"]) < 5
        legend = card.find_element(By.CSS_SELECTOR, ".cam-legend")
        assert not legend.is_displayed()
        card.find_element(By.CSS_SELECTOR, "button.cam").click()
        assert legend.is_displayed()
        assert "4 rotated views" in card.find_element(By.CSS_SELECTOR, ".how").text

        browser.get(site + "/gallery?label=no-such-label")
        empty = browser.find_element(By.CSS_SELECTOR, "p.empty")
        line = browser.execute_script("return parseFloat(getComputedStyle(arguments[0]).lineHeight)", empty)
        assert empty.size["height"] < 1.5 * line  # one line
    finally:
        browser.set_window_size(1200, 900)


@pytest.mark.parametrize("width", [390, 1280])
def test_anomalies_page_with_no_images_says_so(browser, width):
    """An empty collection: one line saying how to fill it, not a big empty map and a spinner."""
    from selenium.webdriver.common.by import By

    browser.set_window_size(width, 900)
    try:
        with serve_process() as base:
            browser.get(base + "/anomalies")
            empty = browser.find_element(By.ID, "anomalies-empty")
            assert "No images yet" in empty.text and empty.find_element(By.LINK_TEXT, "Upload one")
            assert not browser.find_elements(By.ID, "map") and not browser.find_elements(By.ID, "ranking")
    finally:
        browser.set_window_size(1200, 900)


@pytest.mark.slow
def test_anomalies_page_marks_move_the_ranking_and_the_map_opens_images(browser, shared_data):
    """A fresh server with 12 stored images: mark the top one boring by key, it leaves the top."""
    import httpx
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with serve_process() as base:
        files = (
            sorted((shared_data / "hubble-dso/galaxy").glob("*.jpg"))[:8]
            + sorted((shared_data / "nasa-planets-galaxies/planet").glob("*.jpg"))[:4]
        )
        for path in files:
            assert (
                httpx.post(f"{base}/api/classify", files={"image": (path.name, path.read_bytes())}).status_code == 200
            )
        browser.get(base + "/anomalies")

        def ranking(d):
            items = d.find_elements(By.CSS_SELECTOR, "#ranking .rank-item")
            return [i.get_attribute("data-record") for i in items] if len(items) == 12 else False

        before = WebDriverWait(browser, 30).until(ranking)
        assert "12 images · 0 marked" in browser.find_element(By.ID, "rank-status").text
        first = browser.find_element(By.CSS_SELECTOR, "#ranking .rank-item")
        assert "current" in first.get_attribute("class")
        browser.find_element(By.TAG_NAME, "body").send_keys("b")  # the current (top) image: not interesting
        WebDriverWait(browser, 30).until(
            lambda d: "1 marked (0 interesting)" in d.find_element(By.ID, "rank-status").text
        )
        after = ranking(browser)
        assert after[0] != before[0] and after[-1] == before[0]  # the boring one sank to the bottom

        # Mark the last one interesting with its button: it rises to the top.
        last = browser.find_elements(By.CSS_SELECTOR, "#ranking .rank-item")[-2]
        rising = last.get_attribute("data-record")
        last.find_element(By.CSS_SELECTOR, "button.mark[data-interesting='true']").click()
        WebDriverWait(browser, 30).until(
            lambda d: "2 marked (1 interesting)" in d.find_element(By.ID, "rank-status").text
        )
        assert ranking(browser)[0] == rising

        canvas = browser.find_element(By.ID, "map")
        WebDriverWait(browser, 30).until(lambda d: canvas.get_attribute("data-points") == "12")
        # Hover each point until the tip shows an image, then click it open.
        points = browser.execute_script("return fetch('/api/anomalies/map').then(r => r.json())")
        p = points[0]
        w, h = canvas.size["width"], canvas.size["height"]
        pad = max(16, 0.08 * min(w, h))  # anomalies.js: place()
        x = pad + p["x"] * (w - 2 * pad) - w / 2
        y = pad + p["y"] * (h - 2 * pad) - h / 2
        ActionChains(browser).move_to_element_with_offset(canvas, int(x), int(y)).perform()
        tip = browser.find_element(By.ID, "map-tip")
        WebDriverWait(browser, 10).until(lambda d: tip.is_displayed())
        ActionChains(browser).move_to_element_with_offset(canvas, int(x), int(y)).click().perform()
        WebDriverWait(browser, 30).until(lambda d: "/classifications/" in d.current_url)
