"""Browser test of extregd's web catalogue (run by tests/e2e/web.rs).

Debian's chromium and chromedriver (paths in $CHROMIUM / $CHROMEDRIVER),
driven by Selenium from the venv; nothing is downloaded at run time.

    catalogue.py BASE_URL SCREENSHOT_DIR DOWNLOAD_DIR PROFILE_DIR

Loads the catalogue, searches as you type, opens an extension, follows a
download link and checks the file's sha256 against the record, and checks
that a description holding <script> is shown as text and runs nothing.
Exits non-zero on the first failed check.
"""

import hashlib
import json
import os
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

base, shots, downloads, profile = sys.argv[1:5]
os.makedirs(shots, exist_ok=True)
os.makedirs(downloads, exist_ok=True)

for var in ("CHROMIUM", "CHROMEDRIVER"):
    path = os.environ.get(var, "")
    if not (path and os.path.isfile(path) and os.access(path, os.X_OK)):
        sys.exit(f"{var} is not an executable ({path!r}): apt-get install chromium chromium-driver")


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"ok: {what}")


def api(path):
    with urllib.request.urlopen(base + "/api/v1" + path, timeout=30) as r:
        return json.load(r)


opts = Options()
opts.binary_location = os.environ["CHROMIUM"]
for flag in (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
    f"--user-data-dir={profile}",
):
    opts.add_argument(flag)
opts.add_experimental_option(
    "prefs",
    {
        "download.default_directory": downloads,
        "download.prompt_for_download": False,
        "safebrowsing.enabled": False,
    },
)
opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
driver = webdriver.Chrome(service=Service(os.environ["CHROMEDRIVER"]), options=opts)
driver.set_page_load_timeout(30)
# Search results are replaced as they arrive: a vanished element is retried.
wait = WebDriverWait(driver, 15, ignored_exceptions=[StaleElementReferenceException])

try:
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": downloads}
    )

    # 1. The catalogue.
    driver.get(base + "/")
    check("extregd" in driver.title, f"the catalogue loads (title {driver.title!r})")
    cards = driver.find_elements(By.CSS_SELECTOR, "#results li.card")
    total = len(api("/extensions"))
    check(len(cards) == total, f"it lists all {total} extensions ({len(cards)} cards)")
    check(driver.find_element(By.CSS_SELECTOR, "label[for=q]").text != "", "the search box has a label")
    health = driver.find_element(By.CSS_SELECTOR, "aside.health").text
    check("local" in health and "healthy" in health, f"backend health is shown ({health!r})")
    driver.save_screenshot(os.path.join(shots, "catalogue.png"))

    # Keyboard: the first Tab reaches the skip link, which moves to <main>.
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    active = driver.switch_to.active_element
    check(active.get_attribute("class") == "skip", "the first Tab focuses the skip link")
    active.send_keys(Keys.ENTER)
    check(driver.switch_to.active_element.get_attribute("id") == "main", "the skip link moves focus to main")

    # 2. Search as you type (no submit): the list narrows to the API's answer.
    box = driver.find_element(By.ID, "q")
    box.send_keys("kube")
    expected = [e["name"] for e in api("/extensions/search?q=kube&limit=50")]
    wait.until(
        lambda d: [
            a.text for a in d.find_elements(By.CSS_SELECTOR, "#results li.card h2 a")
        ]
        == expected
    )
    check(True, f"typing 'kube' shows the API's results {expected}")
    check("q=kube" in driver.current_url, "the address follows the search")
    count = driver.find_element(By.ID, "count").text
    check(count.startswith(str(len(expected))), f"the count says {count!r}")
    driver.save_screenshot(os.path.join(shots, "search.png"))

    # 3. Open the extension.
    driver.find_element(By.LINK_TEXT, "kubernetes").click()
    wait.until(lambda d: d.find_element(By.TAG_NAME, "h1").text.startswith("kubernetes"))
    check("/ext/taskserv/kubernetes" in driver.current_url, "the extension page opens")
    record = api("/extensions/taskserv/kubernetes")
    desc = driver.find_element(By.ID, "description").text
    check(desc == record["description"], "the description is shown")
    cmd = driver.find_element(By.ID, "load-cmd").text
    check(
        cmd == f"ext load kubernetes --type taskserv --version {record['version']}",
        f"the ext load command is shown ({cmd!r})",
    )
    check(driver.find_element(By.CSS_SELECTOR, "button.copy-btn").is_displayed(), "the copy button is shown with JS")
    rows = driver.find_elements(By.CSS_SELECTOR, "#versions tbody tr")
    versions = api("/extensions/taskserv/kubernetes/versions")
    check(len(rows) == len(versions), f"every version is listed ({len(rows)})")
    for row, v in zip(rows, versions):
        check(row.get_attribute("data-version") == v["version"], f"row {v['version']} in order")
        marked = "pre-release" in row.text
        check(marked == v["prerelease"], f"{v['version']} pre-release mark is {marked}")
    driver.save_screenshot(os.path.join(shots, "extension.png"))

    # 4. Follow a download link; the file's sha256 is the record's.
    row = next(r for r in rows if r.get_attribute("data-version") == record["version"])
    shown = row.find_element(By.CSS_SELECTOR, "td.checksum code").text
    check(shown == record["checksum"], "the row shows the record's checksum")
    row.find_element(By.CSS_SELECTOR, "a.download").click()
    target = os.path.join(downloads, f"kubernetes-{record['version']}.tar.gz")
    deadline = time.time() + 30
    while time.time() < deadline and not os.path.isfile(target):
        time.sleep(0.1)
    check(os.path.isfile(target), f"the browser saved {os.path.basename(target)}")
    data = open(target, "rb").read()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    check(digest == record["checksum"], f"its digest matches the record ({digest})")
    check(len(data) == record["size"], f"its size matches the record ({len(data)})")

    # 5. Markup from a backend is text, and no script runs.
    driver.get(base + "/ext/provider/evil")
    title = driver.title
    evil = api("/extensions/provider/evil")
    text = driver.find_element(By.ID, "description").text
    check("<script>" in text, f"the description shows <script> as text ({text!r})")
    check(text == evil["description"].strip(), "the description is shown verbatim")
    check(
        not driver.find_elements(By.CSS_SELECTOR, "#description *"),
        "the description holds no elements",
    )
    check(driver.execute_script("return window.__pwned === undefined"), "no injected script ran")
    check(title != "pwned" and "evil" in title, f"the title is untouched ({title!r})")
    repo = driver.find_elements(By.CSS_SELECTOR, "a[href^='javascript:']")
    check(not repo, "a javascript: repository is not a link")
    driver.save_screenshot(os.path.join(shots, "evil.png"))

    # The same through search as you type (rendered by app.js).
    driver.get(base + "/")
    driver.find_element(By.ID, "q").send_keys("evil")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results li.card")) == 1)
    card = driver.find_element(By.CSS_SELECTOR, "#results li.card .desc")
    check("<script>" in card.text, "search results show <script> as text too")
    check(driver.execute_script("return window.__pwned === undefined"), "still no injected script ran")
    driver.save_screenshot(os.path.join(shots, "search-evil.png"))

    # No errors in the console (a CSP violation would be one).
    logs = [l for l in driver.get_log("browser") if l["level"] == "SEVERE"]
    check(not logs, f"no console errors ({logs})")
    print("browser test: all checks passed")
finally:
    driver.quit()
