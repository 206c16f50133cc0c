"""The page of `dermcli serve` in a real browser: headless Chromium driven by Selenium uploads a bundled example
and reads what the page shows. Skipped where Chromium is not installed (README: `apt-get install chromium
chromium-driver`). With DERMCLI_SCREENSHOT=docs/serve.png, the page is saved there (the README's picture)."""

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

pytest.importorskip("fastapi")
webdriver = pytest.importorskip("selenium.webdriver")

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from tests.served import EXAMPLES, REPO, serving
from tests.test_serve import predict_json

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
DRIVER = shutil.which("chromedriver")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="no Chromium and chromedriver (apt-get install chromium chromium-driver)")]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "cache"


@pytest.fixture(scope="module")
def page(cache):
    """The served page in headless Chromium at a laptop's size, and the server."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(flag)
    with serving("--model", "cnn", cache=cache) as server:
        browser = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
        try:
            browser.get(server.url + "/")
            yield browser, server
        finally:
            browser.quit()


def upload(browser, path: Path) -> None:
    browser.execute_script("document.body.dataset.state = ''")
    browser.find_element(By.ID, "file").send_keys(str(path))
    WebDriverWait(browser, 120).until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("done", "error"))
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done", browser.find_element(By.ID, "error").text


def in_view(browser, element_id: str) -> bool:
    """Whether the element is shown and lies wholly inside the window, unscrolled."""
    return browser.execute_script(f"const r = document.getElementById('{element_id}').getBoundingClientRect(); "
                                  "return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight && window.scrollY === 0")


def test_the_page_shows_what_predict_says_for_a_bundled_example(page, cache):
    browser, _ = page
    example = EXAMPLES[2]
    expected = predict_json(cache, "cnn", example)[0]
    upload(browser, example)
    score = browser.find_element(By.ID, "malignant-score")
    assert browser.find_element(By.ID, "label").text == expected["label"]
    assert float(score.get_attribute("data-value")) == expected["malignant_score"] and score.text == f"{expected['malignant_score']:.3f}"
    assert browser.find_element(By.ID, "verdict").text == ("MALIGNANT" if expected["malignant"] else "BENIGN")
    assert browser.find_element(By.ID, "threshold").text == f"{expected['threshold']:.3f}"
    bars = [item.text.split("\n")[0] for item in browser.find_elements(By.CSS_SELECTOR, "#bars li")]
    assert bars == list(expected["probabilities"])
    assert not expected["unusual"] and not browser.find_element(By.ID, "unusual").is_displayed()
    seen = browser.find_element(By.ID, "seen")
    assert browser.execute_script("return arguments[0].naturalWidth", seen) == 28  # the image as the model saw it
    assert in_view(browser, "disclaimer")
    if target := os.environ.get("DERMCLI_SCREENSHOT"):
        browser.find_element(By.ID, "gradcam").click()
        WebDriverWait(browser, 120).until(lambda b: b.find_element(By.ID, "cam").is_displayed())
        browser.set_window_size(1280, 1000)
        browser.save_screenshot(str(REPO / target))
        browser.set_window_size(1280, 900)
        browser.find_element(By.ID, "gradcam").click()


def test_the_grad_cam_toggle_shows_the_figure(page):
    browser, _ = page
    upload(browser, EXAMPLES[0])
    toggle = browser.find_element(By.ID, "gradcam")
    if toggle.is_selected():
        toggle.click()
    toggle.click()
    WebDriverWait(browser, 120).until(lambda b: b.find_element(By.ID, "cam").is_displayed())
    assert browser.execute_script("return document.getElementById('cam').naturalWidth") > 500
    toggle.click()
    assert not browser.find_element(By.ID, "cam").is_displayed()


def test_the_warning_shows_for_an_image_that_is_not_dermoscopy(page, cache, tmp_path):
    browser, _ = page
    screenshot = tmp_path / "screenshot.png"  # a document: text on white and a blue box
    image = Image.new("RGB", (600, 450), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    for y in range(0, 450, 30):
        draw.text((10, y), "Quarterly report: revenue up 12% " * 2, fill=(0, 0, 0))
    draw.rectangle((400, 100, 560, 300), fill=(30, 90, 200))
    image.save(screenshot)
    assert predict_json(cache, "cnn", screenshot)[0]["unusual"]
    upload(browser, screenshot)
    assert browser.find_element(By.ID, "unusual").is_displayed() and "unlike the training images" in browser.find_element(By.ID, "unusual").text


def test_keyboard_reaches_the_file_picker_and_a_phone_width_needs_no_sideways_scroll(page):
    browser, _ = page
    browser.get(browser.current_url)
    for _ in range(3):  # the file picker is the page's first control: one Tab from the top reaches it
        ActionChains(browser).send_keys(Keys.TAB).perform()
        if browser.switch_to.active_element.get_attribute("id") == "file":
            break
    assert browser.switch_to.active_element.get_attribute("id") == "file"
    browser.set_window_size(390, 844)
    try:
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        assert in_view(browser, "disclaimer") and in_view(browser, "drop")
    finally:
        browser.set_window_size(1280, 900)
