"""The client managers' page in a real browser: Debian's headless Chromium driven through Selenium.

Load /, find the top client, page forward, search a client, open its page, download the risk list,
log in with the key; the same with JavaScript off; screenshots at 1280 and 390 px wide (kept in the
test's tmp folder and copied to /tmp/screens/); no error in the browser's console, which is also
where a Content-Security-Policy violation would show.

`make test` installs chromium and chromium-driver when run as root (make system-test-deps), and then a
missing browser fails these tests; elsewhere they are skipped, saying so (conftest.system_missing).
"""

from __future__ import annotations

import base64
import csv
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait
from test_pages import HOSTILE, KEY, build_project, drift_run

from conftest import system_missing
from riskcore.contract import ID_COLUMN, RISK_SCORES, RUN_HISTORY
from riskcore.ops import calls as call_store
from riskcore.ops.history import record_run

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREENS = Path("/tmp/screens")
WIDTHS = (1280, 390)


def browser_missing() -> str | None:
    missing = [name for name, path in (("chromium", CHROMIUM), ("chromium-driver", CHROMEDRIVER))
               if not Path(path).is_file()]
    return f"{' and '.join(missing)} not installed (make system-test-deps installs them as root)" if missing else None


@pytest.fixture(autouse=True, scope="module")
def browser_installed() -> None:
    if browser_missing():
        system_missing(browser_missing())


# --- A served project and a browser --------------------------------------------------------------
class Site:
    """The app of a project served over HTTP by werkzeug in a thread, on a loopback port."""

    def __init__(self, config_file: Path, key: str | None = None) -> None:
        from werkzeug.serving import make_server

        import app as app_module

        application = app_module.create_app(config_file, test_config={"RISK_API_KEY": key})
        self.server = make_server("127.0.0.1", 0, application, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    config = build_project(tmp_path_factory.mktemp("browser"))
    history = config.output_model_folder / RUN_HISTORY
    record_run(history, drift_run("r1", "2026-01-01T06:00:00Z", decision="keep", f1_new_data=0.72,
                                  drift_verdict="F1 0.7200 >= 0.6900 (baseline): no model drift", data_drift=None))
    record_run(history, drift_run("r2", "2026-01-02T06:00:00Z"))
    (config.output_model_folder / "summary_report.pdf").write_bytes(b"%PDF-1.4 stand-in")
    return config


@pytest.fixture(scope="module")
def site(project) -> Iterator[Site]:
    served = Site(project.config_file)
    yield served
    served.close()


@pytest.fixture(scope="module")
def keyed_site(project) -> Iterator[Site]:
    served = Site(project.config_file, key=KEY)
    yield served
    served.close()


def chromium(profile: Path, javascript: bool = True) -> webdriver.Chrome:
    """Debian's Chromium, headless, as root and offline: no sandbox, no GPU, no network of its own, a fresh profile."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 "--hide-scrollbars", f"--user-data-dir={profile}", "--window-size=1280,900"):
        options.add_argument(flag)
    if not javascript:
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    return driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[webdriver.Chrome]:
    driver = chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


@pytest.fixture
def console(browser) -> Iterator[None]:
    """No error in the browser's console during the test (failed loads and CSP violations included)."""
    browser.get_log("browser")  # what earlier tests left
    yield
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors


def follow(driver, element, submit: bool = False, timeout: float = 10) -> None:
    """Click a link or button (or submit a form field) and wait until the next page has loaded in place of this one."""
    page = driver.find_element(By.TAG_NAME, "html")
    element.submit() if submit else element.click()
    # While the old page goes, chromedriver may answer "unhandled inspector error" instead of "stale element"
    # (a race in its DevTools bridge, seen once under load): the wait asks again rather than failing on it.
    WebDriverWait(driver, timeout, ignored_exceptions=(WebDriverException,)).until(
        expected_conditions.staleness_of(page))
    WebDriverWait(driver, timeout).until(lambda d: d.execute_script("return document.readyState") == "complete")


def calls(driver) -> list[list[str]]:
    """The call list's rows as the browser shows them: rank, client, probability, change, why."""
    return [[cell.text for cell in row.find_elements(By.CSS_SELECTOR, "td")][:5]
            for row in driver.find_elements(By.CSS_SELECTOR, "table.calls tbody tr")]


def risk_list(config) -> list[dict[str, str]]:
    with open(config.output_model_folder / RISK_SCORES, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# --- What a client manager does -----------------------------------------------------------------
def test_the_top_client_paging_search_and_a_clients_page(browser, site, project, console):
    ranked = risk_list(project)
    browser.set_window_size(1280, 900)
    browser.get(site.url + "/")
    assert browser.title.startswith("This cycle's calls")
    top = calls(browser)[0]
    assert top[:2] == ["1", ranked[0]["corporation"]]
    assert top[4] == ranked[0]["reason_1"]  # why, in the risk list's words
    assert len(calls(browser)) == 50  # reporting.calls_per_cycle

    follow(browser, browser.find_element(By.LINK_TEXT, "The rest of the list →"))
    assert calls(browser)[0][:2] == ["51", ranked[50]["corporation"]]
    assert "Page 2 of" in browser.find_element(By.CSS_SELECTOR, "nav.pager").text
    follow(browser, browser.find_element(By.LINK_TEXT, "← Previous"))
    assert calls(browser)[0][0] == "1"

    wanted = ranked[77]["corporation"]
    box = browser.find_element(By.ID, "q")
    box.clear()
    box.send_keys(wanted.upper())
    follow(browser, box, submit=True)
    assert "q=" in browser.current_url
    assert [row[:2] for row in calls(browser)] == [["78", wanted]]

    follow(browser, browser.find_element(By.LINK_TEXT, wanted))
    heading = browser.find_element(By.ID, "client-title")
    assert heading.text == f"Client {wanted}"
    assert "rank 78 of" in browser.find_element(By.CSS_SELECTOR, "main").text
    contributions = browser.find_elements(By.CSS_SELECTOR, "table.features tbody tr")
    assert len(contributions) == 3 and all(row.find_elements(By.CSS_SELECTOR, "svg.cbar") for row in contributions)
    shown = browser.find_element(By.CSS_SELECTOR, "main").text
    assert all(ranked[77][f"reason_{k}"] in shown for k in (1, 2, 3) if ranked[77][f"reason_{k}"])


def test_an_id_with_markup_shows_as_text(browser, site, console):
    browser.get(site.url + "/?q=script")
    link = browser.find_element(By.CSS_SELECTOR, "td.client a")
    assert link.text == HOSTILE
    follow(browser, link)
    assert browser.find_element(By.ID, "client-title").text == f"Client {HOSTILE}"
    assert browser.find_elements(By.TAG_NAME, "script") == []


def test_the_risk_list_downloads_as_csv(browser, site, project, tmp_path, console):
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
    browser.get(site.url + "/")
    browser.find_element(By.PARTIAL_LINK_TEXT, "Risk list").click()
    target = tmp_path / RISK_SCORES
    deadline = time.monotonic() + 15
    while not target.is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert target.read_bytes() == (project.output_model_folder / RISK_SCORES).read_bytes()


def test_the_key_form_lets_a_manager_in_once(browser, keyed_site, tmp_path, console):
    browser.delete_all_cookies()
    browser.get(keyed_site.url + "/?page=2")
    assert "/login?next=" in browser.current_url and browser.find_elements(By.CSS_SELECTOR, "table.calls") == []
    SCREENS.mkdir(parents=True, exist_ok=True)
    full_page_screenshot(browser, tmp_path / "login-1280.png")
    shutil.copy(tmp_path / "login-1280.png", SCREENS / "login-1280.png")
    field = browser.find_element(By.ID, "key")
    field.send_keys("not-the-key")
    follow(browser, field, submit=True)
    assert "That is not the API key" in browser.find_element(By.CSS_SELECTOR, "p.warn").text
    field = browser.find_element(By.ID, "key")
    field.send_keys(KEY)
    follow(browser, field, submit=True)
    assert browser.current_url.endswith("/?page=2") and calls(browser)[0][0] == "51"
    [cookie] = browser.get_cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and KEY not in cookie["value"]
    browser.get(keyed_site.url + "/clients/twice")
    assert browser.find_element(By.ID, "client-title").text == "Client twice"
    follow(browser, browser.find_element(By.CSS_SELECTOR, "form.logout button"))
    browser.get(keyed_site.url + "/")
    assert browser.find_elements(By.ID, "key") and not browser.get_cookies()


def test_the_key_form_is_a_box_not_a_band_across_a_laptop(browser, keyed_site, console):
    """The rule that keeps wide tables within a phone's screen also undid the form's 420 px: on a laptop its box and
    its key field ran 1,160 px wide."""
    browser.delete_all_cookies()
    show_at(browser, 1280)
    try:
        browser.get(keyed_site.url + "/")
        width, left, right = browser.execute_script(
            "const b = document.querySelector('section.login').getBoundingClientRect();"
            "return [b.width, b.left, innerWidth - b.right]")
        assert width <= 420 and abs(left - right) <= 1, (width, left, right)  # and centred
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_a_call_recorded_from_the_client_page_shows_on_the_list(browser, site, project, console):
    """The form on a client's page (today by default, an outcome in words, a note, who called) stores the call,
    comes back to the page with it listed, and the call list shows "called today: at risk"; markup stays text."""
    ranked = risk_list(project)
    wanted = ranked[6]["corporation"]  # not a row the other tests read
    browser.set_window_size(1280, 900)
    browser.get(site.url + "/")
    follow(browser, browser.find_element(By.LINK_TEXT, wanted))
    form = browser.find_element(By.CSS_SELECTOR, "form.call-form")
    assert form.find_element(By.NAME, "when").get_attribute("value") == date.today().isoformat()
    form.find_element(By.XPATH, ".//label[normalize-space()='reached, at risk']/input").click()
    form.find_element(By.NAME, "note").send_keys("<script>alert(1)</script> call back on Friday")
    form.find_element(By.NAME, "by").send_keys("Ana")
    follow(browser, form.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    assert browser.current_url.endswith("#calls") and browser.find_element(By.ID, "client-title").text == \
        f"Client {wanted}"
    [row] = browser.find_elements(By.CSS_SELECTOR, "table.client-calls tbody tr")
    assert [cell.text for cell in row.find_elements(By.TAG_NAME, "td")] == [
        date.today().isoformat(), "reached, at risk", "<script>alert(1)</script> call back on Friday", "Ana"]
    assert browser.find_elements(By.TAG_NAME, "script") == []
    assert browser.find_element(By.ID, "last-call").text == "called today: at risk"
    browser.get(site.url + "/")
    row = next(r for r in calls(browser) if r[0] == "7")
    assert row[1].splitlines() == [wanted, "called today: at risk"]
    browser.get(site.url + f"/clients/{wanted}")  # the browser remembers who called
    assert browser.find_element(By.NAME, "by").get_attribute("value") == "Ana"


def test_a_call_form_sent_without_its_token_is_refused_and_stores_nothing(browser, site, project):
    """The form as Chromium sends it, its CSRF token taken out of the page first: a 403 page in words, no call stored,
    the list unchanged; the same form with its token then goes through (the refusal was the token's)."""
    ranked = risk_list(project)
    wanted = ranked[8]["corporation"]  # not a row the other tests read
    store = call_store.calls_path(project.output_model_folder)
    browser.set_window_size(1280, 900)
    browser.get(site.url + f"/clients/{wanted}")
    browser.get_log("browser")
    form = browser.find_element(By.CSS_SELECTOR, "form.call-form")
    browser.execute_script("arguments[0].querySelector('[name=csrf_token]').remove()", form)
    form.find_element(By.XPATH, ".//label[normalize-space()='reached, leaving']/input").click()
    form.find_element(By.NAME, "by").send_keys("Mallory")
    follow(browser, form.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    assert "did not come from this site" in browser.find_element(By.TAG_NAME, "body").text
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and "403" not in e["message"]] == []
    assert not [c for c in call_store.read_calls(store, 1000, 0)[1] if c[ID_COLUMN] == wanted]
    browser.get(site.url + "/")
    row = next(r for r in calls(browser) if r[0] == "9")
    assert row[1].splitlines() == [wanted]  # no "called today" under the id
    browser.get(site.url + f"/clients/{wanted}")  # the page's own token: the call is taken
    form = browser.find_element(By.CSS_SELECTOR, "form.call-form")
    form.find_element(By.XPATH, ".//label[normalize-space()='reached, leaving']/input").click()
    form.find_element(By.NAME, "by").send_keys("Ana")
    follow(browser, form.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    assert browser.find_element(By.ID, "last-call").text == "called today: leaving"


def test_the_page_works_with_javascript_off(site, project, tmp_path):
    driver = chromium(tmp_path / "profile", javascript=False)
    try:
        ranked = risk_list(project)
        driver.get(site.url + "/")
        assert calls(driver)[0][:2] == ["1", ranked[0]["corporation"]]
        follow(driver, driver.find_element(By.LINK_TEXT, "The rest of the list →"))
        assert calls(driver)[0][:2] == ["51", ranked[50]["corporation"]]
        box = driver.find_element(By.ID, "q")
        box.send_keys(ranked[3]["corporation"])
        follow(driver, driver.find_element(By.CSS_SELECTOR, "form.search button"))
        assert calls(driver)[0][1] == ranked[3]["corporation"]
        follow(driver, driver.find_element(By.LINK_TEXT, ranked[3]["corporation"]))
        assert driver.find_element(By.ID, "client-title").text == f"Client {ranked[3]['corporation']}"
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        driver.quit()


# --- Every id opens its page (issue 21.7) ----------------------------------------------------------
@pytest.fixture(scope="module")
def awkward_site(tmp_path_factory) -> Iterator[Site]:
    """A project whose clients have the ids a browser would rewrite in a path: ".", "..", slashes, "%", "?", "#"."""
    from test_pages import AWKWARD_IDS

    from conftest import write_csv

    config = build_project(tmp_path_factory.mktemp("awkward"))
    write_csv(config.final_data_file, [f'"{c}",{i},{100 + i},{5 + i},0' for i, c in enumerate(AWKWARD_IDS)])
    served = Site(config.config_file)
    yield served
    served.close()


def test_every_client_link_opens_its_client_in_chromium(browser, awkward_site, console):
    """Clicked in Chromium, which resolves "." and ".." in a path and cuts it at "?" and "#": each link on the call
    list opens the page of the client it names (test_pages checks the same with urljoin; this is the browser)."""
    from test_pages import AWKWARD_IDS

    browser.set_window_size(1280, 900)
    browser.get(awkward_site.url + "/")
    listed = [link.text for link in browser.find_elements(By.CSS_SELECTOR, "td.client a")]
    assert sorted(listed) == sorted(AWKWARD_IDS)
    opened = {}
    for wanted in listed:
        browser.get(awkward_site.url + "/")
        [link] = [a for a in browser.find_elements(By.CSS_SELECTOR, "td.client a") if a.text == wanted]
        follow(browser, link)
        opened[wanted] = browser.find_element(By.ID, "client-title").text
    assert opened == {wanted: f"Client {wanted}" for wanted in listed}


# --- The managers' first screen ------------------------------------------------------------------
def clients_in_view(driver) -> int:
    """The call list's rows wholly on the screen, without scrolling, and seen: not hidden, and what the screen shows
    at the row's client link is the row itself (no banner, strip or header drawn over it)."""
    return driver.execute_script(
        "return [...document.querySelectorAll('table.calls tbody tr')].filter(r => {"
        " const b = r.getBoundingClientRect(), link = r.querySelector('td.client a');"
        " if (!link || b.top < 0 || b.bottom > innerHeight || b.height === 0) return false;"
        " const l = link.getBoundingClientRect(), x = l.left + Math.min(l.width / 2, 5), y = l.top + l.height / 2;"
        " const seen = document.elementFromPoint(x, y);"
        " return getComputedStyle(r).visibility === 'visible' && seen !== null && r.contains(seen); }).length")


@pytest.mark.parametrize(("width", "height", "at_least"), [(1280, 800, 10), (390, 844, 3)])
def test_the_first_screen_shows_enough_clients_to_call_with_their_reason(browser, site, project, width, height,
                                                                         at_least, console):
    """Without scrolling: at least 10 clients on a 1280x800 screen, 3 on a 390-px phone, each with its main reason
    readable (the why column, or on a phone the line under the client's id)."""
    ranked = risk_list(project)
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})
    try:
        browser.get(site.url + "/")
        assert browser.execute_script("return window.innerHeight") == height
        visible = clients_in_view(browser)
        assert visible >= at_least, f"{visible} clients visible at {width}x{height}"
        first = browser.find_element(By.CSS_SELECTOR, "table.calls tbody tr")
        why = first.find_element(By.CSS_SELECTOR, "td.why" if width >= 640 else ".why-inline")
        assert why.is_displayed() and why.text == ranked[0]["reason_1"]
        assert "risk" in why.text and ("raises" in why.text or "lowers" in why.text or "unchanged" in why.text)
        strip = browser.find_element(By.ID, "health-strip")
        assert strip.is_displayed() and strip.find_element(By.TAG_NAME, "a").get_attribute("href").endswith("/model")
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


# --- How it looks -------------------------------------------------------------------------------
def show_at(driver, width: int) -> None:
    """A viewport exactly `width` CSS pixels wide, as a phone (under 600 px) or a desktop screen has it."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600})


def full_page_screenshot(driver, target: Path) -> None:
    """The whole page at the current width, as one PNG."""
    width, height = driver.execute_script(
        "return [document.documentElement.clientWidth, document.documentElement.scrollHeight]")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": min(height, 10000), "scale": 1}})
    target.write_bytes(base64.b64decode(shot["data"]))


@pytest.mark.parametrize("width", WIDTHS)
def test_screenshots_and_nothing_wider_than_the_screen(browser, site, tmp_path, width, console):
    SCREENS.mkdir(parents=True, exist_ok=True)
    show_at(browser, width)
    try:
        for name, path in (("calls", "/"), ("model", "/model"), ("client", "/clients/twice"), ("search", "/?q=c02")):
            browser.get(site.url + path)
            assert browser.execute_script("return window.innerWidth") == width
            overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{path} is {overflow} px wider than a {width} px screen"
            shot = tmp_path / f"{name}-{width}.png"
            full_page_screenshot(browser, shot)
            assert shot.stat().st_size > 5000
            shutil.copy(shot, SCREENS / shot.name)
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


@pytest.mark.parametrize("width", WIDTHS)
def test_the_header_bar_keeps_room_above_and_below_its_contents(browser, site, width, console):
    """On a phone the page's side margins took the bar's top and bottom padding too: the title touched the screen's
    top edge and the download buttons the bar's bottom."""
    show_at(browser, width)
    try:
        browser.get(site.url + "/")
        gaps = browser.execute_script(
            "const bar = document.querySelector('.site-bar').getBoundingClientRect();"
            "const inner = [...document.querySelectorAll('.site-bar-inner > *')].map(e => e.getBoundingClientRect());"
            "return [Math.min(...inner.map(b => b.top)) - bar.top, bar.bottom - Math.max(...inner.map(b => b.bottom))]")
        assert min(gaps) >= 6, f"at {width} px the header's contents are {gaps} px from its top and bottom"
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_a_clients_page_keeps_feature_names_on_one_line_and_a_styled_call_button(browser, site, console):
    """The contributions table was too narrow for its six columns: "activity last month" broke over two lines, and
    its bar sat between them; the call form's button was the browser's grey one, unlike every other button."""
    show_at(browser, 1280)
    try:
        browser.get(site.url + "/clients/twice")
        heights = browser.execute_script(
            "return [...document.querySelectorAll('table.features tbody th')].map(th => {"
            " const style = getComputedStyle(th);"
            " return th.clientHeight - parseFloat(style.paddingTop) - parseFloat(style.paddingBottom)"
            "   - parseFloat(style.lineHeight); })")
        assert len(heights) == 3 and all(extra < 2 for extra in heights), heights
        button = browser.execute_script("return getComputedStyle(document.querySelector('.call-form button'))"
                                        ".backgroundColor")
        assert button == "rgb(47, 102, 144)"  # the page's blue (--blue), as the search's Show and the key form's
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_the_model_pages_cards_take_a_row_each_on_a_phone(browser, site, console):
    """Two cards side by side on a phone set the F1 card's paragraphs three words a line, 25 lines long, beside a
    deployed-model card mostly blank."""
    show_at(browser, 390)
    try:
        browser.get(site.url + "/model")
        widths = browser.execute_script(
            "const row = document.querySelector('.cards').getBoundingClientRect().width;"
            "return [...document.querySelectorAll('.cards > .card')].map(c => c.getBoundingClientRect().width / row)")
        assert len(widths) == 3 and min(widths) > 0.99, widths
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize(("path", "table", "columns"), [("/model", "history", 10), ("/clients/twice", "snapshots", 8)])
def test_every_column_of_the_run_history_and_a_clients_snapshots_is_on_the_screen(browser, site, width, path, table,
                                                                                   columns, console):
    """Issue 22.8: no column of the run history lies past the right edge of its frame or of the screen (on a
    phone each run is a block of labelled lines), and every value keeps its column's name beside it. A client's
    snapshots the same: on a phone their risk lay off the screen."""
    show_at(browser, width)
    try:
        browser.get(site.url + path)
        cells = browser.execute_script(
            "const table = document.querySelector(arguments[0]);"
            "const frame = table.closest('.table-wrap').getBoundingClientRect();"
            "return [...table.querySelectorAll('tbody tr:first-child td')].map(td => {"
            "  const b = td.getBoundingClientRect();"
            "  return {label: td.dataset.label, shown: getComputedStyle(td, '::before').content,"
            "          left: b.left, right: b.right, width: b.width,"
            "          inside: b.left >= frame.left - 0.5 && b.right <= Math.min(frame.right, innerWidth) + 0.5}; })",
            f"table.{table}")
        headers = [th.get_attribute("textContent").strip()
                   for th in browser.find_elements(By.CSS_SELECTOR, f"table.{table} thead th")]
        assert [cell["label"] for cell in cells] == headers and len(headers) == columns
        outside = [cell["label"] for cell in cells if not cell["inside"] or cell["width"] == 0]
        assert not outside, f"at {width} px these columns are cut off: {outside}"
        if width < 640:  # the column's name is drawn before each value
            assert all(cell["shown"] == f'"{cell["label"]}"' for cell in cells), cells
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


# --- A rollback says so (issue 23) -----------------------------------------------------------------
def test_a_rollback_shows_a_banner_on_the_page_and_the_client_page(browser, tmp_path, console):
    import deployment
    import scoring
    import training
    from conftest import client_rows, write_csv
    from riskcore.formatting import when
    from riskcore.release.listing import release_rows

    config = build_project(tmp_path)
    write_csv(config.input_folder / "flipped.csv", client_rows(150, seed=9, flip=True))
    import ingestion

    ingestion.run(config)
    training.run(config)
    scoring.run(config)
    deployment.run(config)
    served = Site(config.config_file)
    try:
        browser.set_window_size(1280, 900)
        browser.get(served.url + "/")
        assert not browser.find_elements(By.ID, "operator-banner")
        back = deployment.run(config, action="rollback")
        browser.get(served.url + "/")
        banner = browser.find_element(By.ID, "operator-banner")
        first, second = release_rows(config.prod_deployment_folder)
        assert banner.is_displayed() and banner.location["y"] < browser.find_element(By.ID, "health-strip").location[
            "y"]
        assert banner.text.startswith("Rolled back from release " + second["release"])
        assert f"to release {first['release']} on " in banner.text and " by " in banner.text
        assert f"model {back.model_version}, release {first['release']}" in banner.text
        browser.get(served.url + "/model")  # the data scientist's page: the banner, and the served model's card
        banner = browser.find_element(By.ID, "operator-banner")
        assert banner.is_displayed() and banner.location["y"] < browser.find_element(By.ID, "health-title").location[
            "y"]
        assert f"first deployed {when(first['deployed_at'])}" in browser.find_element(By.CSS_SELECTOR, ".cards").text
        browser.save_screenshot(str(tmp_path / "rolled-back.png"))
        SCREENS.mkdir(exist_ok=True)
        shutil.copy(tmp_path / "rolled-back.png", SCREENS / "rolled-back.png")
        browser.get(served.url + "/")
        browser.find_element(By.CSS_SELECTOR, "table.calls tbody tr a").click()
        WebDriverWait(browser, 10).until(expected_conditions.presence_of_element_located((By.ID, "client-title")))
        assert browser.find_element(By.ID, "operator-banner").text.startswith("Rolled back from release")
        deployment.run(config, action="roll_forward")
        browser.get(served.url + "/")
        assert not browser.find_elements(By.ID, "operator-banner")
    finally:
        served.close()


# --- Revenue at risk (issue 22.6) ----------------------------------------------------------------
@pytest.fixture(scope="module")
def revenue_site(tmp_path_factory) -> Iterator[Site]:
    """The bundled new market's first file (it carries annual_revenue) deployed and served."""
    from conftest import ROOT, deploy_pipeline, write_config
    from riskcore.config import load_config

    root = tmp_path_factory.mktemp("revenue")
    (root / "input").mkdir()
    (root / "test").mkdir()
    shutil.copy(ROOT / "sourcedata" / "dataset3.csv", root / "input" / "dataset3.csv")
    shutil.copy(ROOT / "testdata" / "testdata.csv", root / "test" / "testdata.csv")
    config = deploy_pipeline(load_config(write_config(root)))
    served = Site(config.config_file)
    yield served
    served.close()


@pytest.mark.parametrize(("width", "height", "at_least"), [(1280, 800, 10), (390, 844, 3)])
def test_revenue_at_risk_fits_the_first_screen(browser, revenue_site, width, height, at_least, console):
    """The strip's total and each row's revenue at risk, ordered by it, without losing a client from the first screen
    or making the page wider than the screen."""
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})
    try:
        browser.get(revenue_site.url + "/?order=revenue_at_risk")
        SCREENS.mkdir(parents=True, exist_ok=True)
        full_page_screenshot(browser, SCREENS / f"revenue-{width}.png")
        assert browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth") <= 0
        visible = clients_in_view(browser)
        assert visible >= at_least, f"{visible} clients visible at {width}x{height}"
        total = browser.find_element(By.ID, "revenue-at-risk")
        assert total.is_displayed() and "revenue at risk in this cycle's 50 calls" in total.text
        shown = browser.find_elements(By.CSS_SELECTOR, "table.calls td.revenue" if width >= 640 else ".revenue-inline")
        assert shown and all(cell.is_displayed() and cell.text for cell in shown[:at_least])
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


# --- What changed since the last run, on a phone too ---------------------------------------------
@pytest.fixture(scope="module")
def moved_site(tmp_path_factory) -> Iterator[Site]:
    """A project whose newest kept ranking is of an earlier list without today's riskiest client: it is "new",
    every other client "down 1"."""
    import ingestion
    from riskcore.report.call_list import risk_scores

    config = build_project(tmp_path_factory.mktemp("moved"))
    top = risk_list(config)[0]["corporation"]
    earlier = config.output_model_folder.parent / "earlier.csv"
    earlier.write_text("\n".join(line for line in config.final_data_file.read_text(encoding="utf-8").splitlines()
                                 if not line.startswith(top + ",")) + "\n", encoding="utf-8")
    risk_scores(config, earlier, cycle=7)
    ingestion.run(config)  # a new version of finaldata.csv (the same rows): ranked again, against run 7's
    store = call_store.calls_path(config.output_model_folder)  # the first three called: a line more each on a phone
    called = [{ID_COLUMN: row[ID_COLUMN], "outcome": "at_risk", "by": "Ana"} for row in risk_list(config)[:3]]
    call_store.record_calls(store, call_store.check_calls(called, date.today()))
    served = Site(config.config_file)
    yield served
    served.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_what_changed_since_the_last_run_shows_on_a_phone_too(browser, moved_site, width, console):
    """The since-last-run column on a screen, the same words under the probability on a phone, where the column
    does not fit: a phone showed no "new" nor "up 12" at all."""
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": width, "height": 844, "deviceScaleFactor": 1, "mobile": width < 600})
    try:
        browser.get(moved_site.url + "/")
        first, second = browser.find_elements(By.CSS_SELECTOR, "table.calls tbody tr")[:2]
        for row, change in ((first, "new"), (second, "down 1")):
            column, inline = (row.find_element(By.CSS_SELECTOR, selector) for selector in ("td.change", ".change-inline"))
            shown = column if width >= 640 else inline
            assert shown.is_displayed() and shown.text.endswith(change)
            assert not (inline if width >= 640 else column).is_displayed()
        assert browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth") <= 0
        visible = clients_in_view(browser)  # with the change, the last call and the reason on each row
        assert visible >= (10 if width >= 640 else 3), f"{visible} clients visible at {width}x844"
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
