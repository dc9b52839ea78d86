"""The shop console in a real headless browser (Chromium through WebDriver), against a real
possync-server on PostgreSQL: no access without login (and nothing of the shop shown), logging in and
seeing a till that pushed with a backlog and one that has gone quiet, a conflict made by two tills
settled with a note and exported as CSV, a POST without its CSRF token or with a wrong one refused, a
till's token created and revoked from the page (the till's next push is refused), and a product name
`<script>alert(1)</script>` shown as text. A screenshot of each page is kept (SCREENSHOT_DIR, default
target/console-screenshots)."""

import csv
import os
import time
import uuid

import pytest
from selenium.common.exceptions import (
    NoAlertPresentException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from conftest import ALERT_AFTER_SECS, envelope, sale

XSS_NAME = "<script>alert(1)</script>"


def shot(driver, shots, name):
    path = os.path.join(shots, name + ".png")
    assert driver.save_screenshot(path), "screenshot " + path
    assert os.path.getsize(path) > 1000


def submit(driver, button):
    """Clicks a form's button and waits until the browser has left the page (the click can return
    before the answer arrives: checking an argon2 hash in a debug build takes a while) and the next
    page has loaded."""
    page = driver.find_element(By.TAG_NAME, "html")
    button.click()

    def left(_driver):
        try:
            page.is_enabled()
            return False
        except StaleElementReferenceException:
            return True
        except WebDriverException as e:
            # ChromeDriver sometimes reports the old page's node, gone with its document, this way
            # instead of as a stale element.
            if "does not belong to the document" in str(e):
                return True
            raise

    WebDriverWait(driver, 30).until(left)
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")


def login(driver, server):
    driver.get(server.base + "/console/login")
    driver.find_element(By.ID, "name").send_keys("manager")
    driver.find_element(By.ID, "secret").send_keys(server.secret)
    submit(driver, driver.find_element(By.ID, "login"))
    assert driver.current_url.rstrip("/").endswith("/console"), driver.page_source


def wait_for(what, done, timeout=30):
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "never: " + what
        time.sleep(0.1)


def device_gauge(text, name, device):
    """The value of a per-device gauge of /metrics for ``device`` of store-1, or None."""
    prefix = '%s{store_id="store-1",device_id="%s"} ' % (name, device)
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix):])
    return None


def assert_no_alert(driver):
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text


@pytest.fixture(scope="module")
def shop(server):
    """till-3 pushed and went quiet with sales still on it; then till-1 pushed with a backlog (its
    report counts the request's own three sales, which the server takes off: 80 left), till-2
    pushed a sale with a hostile product name, and till-1 and till-2 pushed the same sale id with
    different contents (a CONFLICT)."""
    assert server.push("till-3", [envelope(str(uuid.uuid4()), sale("store-1", "T3-1"), seq=1)],
                       report={"unsent_count": 5, "oldest_unsent_age_ms": 1000, "last_seq": 5,
                               "library_version": "0.4.0", "unsent_minor": {"EUR": 2500}}) == ["OK"]
    time.sleep(ALERT_AFTER_SECS + 1)
    backlog = [envelope(str(uuid.uuid4()), sale("store-1", "T1-%d" % n), seq=n) for n in (1, 2, 6)]
    assert server.push("till-1", backlog,
                       report={"unsent_count": 83, "oldest_unsent_age_ms": 3 * 3600 * 1000,
                               "unsent_minor": {"EUR": 124950}, "last_seq": 86,
                               "library_version": "0.4.0"}) == ["OK"] * 3
    xss_id = "xss-" + uuid.uuid4().hex[:8]
    assert server.push("till-2", [envelope(xss_id, sale("store-1", "T2-1", name=XSS_NAME))]) == ["OK"]
    conflict_id = "conflict-" + uuid.uuid4().hex[:8]
    assert server.push("till-1", [envelope(conflict_id, sale("store-1", "R-77", price=250))]) == ["OK"]
    assert server.push("till-2", [envelope(conflict_id, sale("store-1", "R-77", price=300))]) == ["CONFLICT"]
    # Device activity is written off the push path: wait until the server has it (the per-device
    # gauges read what the Tills page reads), not for a guessed time.
    wait_for("till-1's backlog and till-2's activity written",
             lambda: device_gauge(server.metrics(), "possync_device_unsent_sales", "till-1") == 80
             and device_gauge(server.metrics(), "possync_device_last_seen_age_seconds", "till-2") is not None)
    return {"xss_id": xss_id, "conflict_id": conflict_id}


def test_no_access_without_login(server, driver, shots, shop):
    # The shop has pushed (tills, a backlog, a conflict, a sale): none of it shows without a login.
    driver.delete_all_cookies()
    for path in ["/console", "/console/attention", "/console/sales", "/console/attention.csv",
                 "/console/sales?client_tx_id=" + shop["xss_id"]]:
        driver.get(server.base + path)
        assert driver.find_element(By.ID, "error-code").text == "login_required", path
        assert "401" in driver.title
        for secret in ["till-1", "till-2", shop["conflict_id"], shop["xss_id"], "R-77"]:
            assert secret not in driver.page_source, (path, secret)
    shot(driver, shots, "01-login-required")
    driver.get(server.base + "/console/login")
    shot(driver, shots, "02-login")


def test_login_shows_a_till_with_a_backlog_and_one_gone_quiet(server, driver, shots, shop):
    driver.delete_all_cookies()
    login(driver, server)
    row1 = driver.find_element(By.ID, "till-store-1-till-1")
    assert row1.find_element(By.CLASS_NAME, "unsent").text == "80"
    assert "behind" in row1.find_element(By.CLASS_NAME, "oldest").text
    assert "1234.50 EUR" in row1.text
    assert "sales 3–5 recorded on till-1, never received" in row1.find_element(By.CLASS_NAME, "missing").text
    row3 = driver.find_element(By.ID, "till-store-1-till-3")
    assert "quiet" in row3.text
    assert "sales 2–5 recorded on till-3, never received" in row3.text
    assert "flagged" in row3.get_attribute("class")
    assert "need a look" in driver.find_element(By.ID, "summary").text
    shot(driver, shots, "03-tills")


def test_a_conflict_of_two_tills_is_settled_with_a_note_and_exported(server, driver, shots, shop, downloads):
    driver.delete_all_cookies()
    login(driver, server)
    driver.get(server.base + "/console/attention")
    item = next(e for e in driver.find_elements(By.CSS_SELECTOR, "div.item")
                if shop["conflict_id"] in e.text)
    assert "CONFLICT" in item.text and "till-2" in item.text
    marked = item.find_elements(By.CSS_SELECTOR, "td.differs")
    assert marked, "the differing fields are marked"
    marked_text = " ".join(m.text for m in marked)
    assert "300" in marked_text and "250" in marked_text, marked_text
    shot(driver, shots, "04-attention")
    item.find_element(By.NAME, "note").send_keys("Price corrected on till-2; the stored sale stands.")
    submit(driver, item.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    assert shop["conflict_id"] not in driver.page_source, "settled items leave the default view"
    driver.get(server.base + "/console/attention?settled=1")
    assert "Settled by manager" in driver.page_source
    assert "Price corrected on till-2" in driver.page_source
    shot(driver, shots, "05-attention-settled")
    driver.find_element(By.ID, "csv").click()
    path = os.path.join(downloads, "attention.csv")
    for _ in range(100):
        if os.path.exists(path) and not os.path.exists(path + ".crdownload"):
            break
        time.sleep(0.1)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    row = next(r for r in rows if r["client_tx_id"] == shop["conflict_id"])
    assert (row["outcome"], row["device_id"], row["settled_by"]) == ("CONFLICT", "till-2", "manager")
    assert row["settled_note"].startswith("Price corrected")


def test_a_post_without_the_csrf_token_or_with_a_wrong_one_is_refused(server, driver, shots, shop):
    driver.delete_all_cookies()
    login(driver, server)
    form = driver.find_element(By.ID, "create-token")
    driver.execute_script("arguments[0].querySelector('input[name=csrf]').remove()", form)
    form.find_element(By.NAME, "store").send_keys("store-1")
    form.find_element(By.NAME, "device").send_keys("till-9")
    submit(driver, form.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    assert driver.find_element(By.ID, "error-code").text == "csrf_invalid"
    assert "403" in driver.title
    shot(driver, shots, "06-csrf-refused")
    driver.get(server.base + "/console")
    assert "till-9" not in driver.page_source, "nothing was created"
    # A token of the right shape that is not this session's: refused the same way.
    form = driver.find_element(By.ID, "create-token")
    csrf = form.find_element(By.NAME, "csrf")
    real = csrf.get_attribute("value")
    wrong = ("0" if real[0] != "0" else "1") + real[1:]
    driver.execute_script("arguments[0].value = arguments[1]", csrf, wrong)
    form.find_element(By.NAME, "store").send_keys("store-1")
    form.find_element(By.NAME, "device").send_keys("till-9")
    submit(driver, form.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    assert driver.find_element(By.ID, "error-code").text == "csrf_invalid"
    assert "403" in driver.title
    driver.get(server.base + "/console")
    assert "till-9" not in driver.page_source, "nothing was created with a wrong token"
    # With its token the same form works, and the new token is shown once.
    form = driver.find_element(By.ID, "create-token")
    form.find_element(By.NAME, "store").send_keys("store-1")
    form.find_element(By.NAME, "device").send_keys("till-9")
    submit(driver, form.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    assert driver.find_element(By.CSS_SELECTOR, "#new-token .token").text.startswith("pst_")
    shot(driver, shots, "07-token-created")


def test_a_token_created_and_revoked_from_the_page_stops_the_till(server, driver, shots, shop):
    driver.delete_all_cookies()
    login(driver, server)
    form = driver.find_element(By.ID, "create-token")
    form.find_element(By.NAME, "store").send_keys("store-1")
    form.find_element(By.NAME, "device").send_keys("till-8")
    submit(driver, form.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    token = driver.find_element(By.CSS_SELECTOR, "#new-token .token").text
    status, answer = server.push_with(token, "till-8", [envelope(str(uuid.uuid4()), sale("store-1", "T8-1"))])
    assert status == 200 and [r["status"] for r in answer["results"]] == ["OK"], answer
    driver.get(server.base + "/console")
    row = driver.find_element(By.ID, "till-store-1-till-8")
    submit(driver, row.find_element(By.CSS_SELECTOR, "form button[type=submit]"))
    row = driver.find_element(By.ID, "till-store-1-till-8")
    assert "revoked" in row.text and row.find_elements(By.TAG_NAME, "form") == [], row.text
    shot(driver, shots, "08-token-revoked")
    sale_id = str(uuid.uuid4())
    status, answer = server.push_with(token, "till-8", [envelope(sale_id, sale("store-1", "T8-2"))])
    assert (status, answer.get("code")) == (401, "token_revoked"), answer
    driver.get(server.base + "/console/sales?client_tx_id=" + sale_id)
    assert "T8-2" not in driver.page_source, "nothing of the refused push was stored"


def test_a_script_in_a_product_name_is_shown_as_text(server, driver, shots, shop):
    driver.delete_all_cookies()
    login(driver, server)
    driver.get(server.base + "/console/sales?client_tx_id=" + shop["xss_id"])
    cells = driver.find_elements(By.XPATH, "//td[text()='%s']" % XSS_NAME)
    assert len(cells) == 1, driver.page_source
    assert_no_alert(driver)
    assert driver.find_elements(By.TAG_NAME, "script") == []
    shot(driver, shots, "09-sales")
