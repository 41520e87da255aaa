"""The web page at GET /, driven in headless Chromium (Debian's chromium and chromium-driver) against a
real uvicorn process on 127.0.0.1: upload a CSV, the table shows exactly the flagged rows, highest
score first, and the histogram counts every row."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conftest import BROWSER_HINT, find_browser, make_frame, netad_server, tiny_model
from netad.inference import load_predictor


@pytest.fixture(scope="module")
def browser_paths():
    return find_browser()


@pytest.fixture(scope="module")
def server(browser_paths, tmp_path_factory):
    ckpt = tiny_model(tmp_path_factory.mktemp("page"), seed=21, run_name="page")
    with netad_server(ckpt, "--api-key-env", "PAGE_TEST_KEY", env=dict(os.environ, PAGE_TEST_KEY="page-key-1")) as base:
        yield {"base": base, "predictor": load_predictor(ckpt), "key": "page-key-1"}


@pytest.fixture(scope="module")
def browser(browser_paths):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = browser_paths
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def upload(browser, server, path, key):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server["base"] + "/")
    browser.find_element(By.ID, "file").send_keys(str(path))
    browser.find_element(By.ID, "key").send_keys(key)
    browser.find_element(By.ID, "score").click()
    WebDriverWait(browser, 30).until(
        lambda d: d.execute_script("return document.body.dataset.done === '1' || "
                                   "document.getElementById('status').className === 'error'"))
    return browser.find_element(By.ID, "status").text


def test_upload_shows_the_flagged_rows_sorted_by_score(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    frame = make_frame(n=120, seed=5)
    path = tmp_path / "new traffic.csv"
    frame.to_csv(path, index=False)
    status = upload(browser, server, path, server["key"])

    predictor = server["predictor"]
    scores = predictor.score(frame.drop(columns=["label"]))
    flagged = np.flatnonzero(scores >= predictor.threshold)
    assert 0 < len(flagged) < len(frame), "the fixture should flag some rows and not others"
    assert status.startswith(f"{len(flagged)} of {len(frame)} rows flagged"), status
    cells = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
             for tr in browser.find_elements(By.CSS_SELECTOR, "#flagged tbody tr")]
    rows = [int(c[0]) for c in cells]
    assert sorted(rows) == sorted((flagged + 1).tolist())  # 1-based data rows
    shown = [float(c[1]) for c in cells]
    assert shown == sorted(shown, reverse=True)
    np.testing.assert_allclose(shown, scores[np.array(rows) - 1], atol=1e-6)
    first = path.read_text().splitlines()[rows[0]]
    assert cells[0][2] == first[:200]  # the record itself beside its score

    canvas = browser.find_element(By.ID, "histogram")
    counts = json.loads(canvas.get_attribute("data-counts"))
    assert sum(counts) == len(frame) and float(canvas.get_attribute("data-threshold")) == pytest.approx(
        predictor.threshold)
    assert browser.execute_script(  # something was drawn on the canvas
        "const c = document.getElementById('histogram');"
        "return c.getContext('2d').getImageData(0, 0, c.width, c.height).data.some(v => v !== 0);")


def test_records_with_quoted_line_breaks_are_shown_beside_their_own_scores(server, browser, tmp_path):
    """A pass-through text column whose quoted values hold line breaks (LF and CRLF), commas and doubled
    quotes, in a CRLF file: each flagged row is shown with its own record, not with line i of the file."""
    frame = make_frame(n=80, seed=5)
    frame.insert(0, "note", [f'row {i + 1}: "hi", then\nmore\r\nand "" more' if i % 3 else f"row {i + 1}"
                             for i in range(len(frame))])
    pieces = [frame.iloc[[i]].to_csv(index=False, header=False, lineterminator="\r\n") for i in range(len(frame))]
    path = tmp_path / "notes.csv"
    path.write_bytes((frame.head(0).to_csv(index=False, lineterminator="\r\n") + "".join(pieces)).encode())
    assert sum("\n" in piece[:-2] for piece in pieces) > 40  # most records span lines
    status = upload(browser, server, path, server["key"])

    predictor = server["predictor"]
    scores = predictor.score(frame[predictor.columns])
    flagged = np.flatnonzero(scores >= predictor.threshold)
    assert 0 < len(flagged) < len(frame) and flagged.max() > 2, "flagged rows after the first record with breaks"
    assert status.startswith(f"{len(flagged)} of {len(frame)} rows flagged"), status
    cells = browser.execute_script(  # textContent: the text exactly, line breaks included
        "return Array.from(document.querySelectorAll('#flagged tbody tr'))"
        ".map(tr => Array.from(tr.cells).map(td => td.textContent));")
    rows = [int(c[0]) for c in cells]
    assert sorted(rows) == sorted((flagged + 1).tolist())
    np.testing.assert_allclose([float(c[1]) for c in cells], scores[np.array(rows) - 1], atol=1e-6)
    for row, _, record in cells:
        assert record == pieces[int(row) - 1][:-2][:200], (row, record)  # its own record, breaks and all
        assert record.startswith(f'"row {row}:' if (int(row) - 1) % 3 else f"row {row},")


def test_errors_are_shown_on_the_page(server, browser, tmp_path):
    path = tmp_path / "broken.csv"
    make_frame(n=10, seed=1).drop(columns=["bytes"]).to_csv(path, index=False)
    assert "missing field (field bytes)" in upload(browser, server, path, server["key"])
    make_frame(n=10, seed=1).to_csv(path, index=False)
    assert "Error 401" in upload(browser, server, path, "wrong-key")


def test_a_missing_browser_skips_with_how_to_install_it_unless_ci_requires_it():
    """The rule of find_browser, both ways, without a browser."""
    nothing = lambda _name: None  # noqa: E731
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium chromium-driver"):
        find_browser(env={}, which=nothing)
    with pytest.raises(pytest.fail.Exception, match="NETAD_REQUIRE_BROWSER=1"):
        find_browser(env={"NETAD_REQUIRE_BROWSER": "1"}, which=nothing)
    only_browser = {"chromium": "/usr/bin/chromium"}.get
    with pytest.raises(pytest.fail.Exception, match=BROWSER_HINT.split("(")[0].strip()):
        find_browser(env={"NETAD_REQUIRE_BROWSER": "1"}, which=only_browser)
    both = {"chromium": "/usr/bin/chromium", "chromedriver": "/usr/bin/chromedriver"}.get
    assert find_browser(env={"NETAD_REQUIRE_BROWSER": "1"}, which=both) == ("/usr/bin/chromium", "/usr/bin/chromedriver")


def test_html_in_records_and_column_names_is_shown_as_text(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    attack = '<img src=x onerror="document.body.dataset.pwned=1">'
    frame = make_frame(n=60, seed=5).astype({"protocol": object})
    frame.insert(0, "<b>note</b>", attack)
    frame.loc[7, "protocol"] = "<script>document.body.dataset.pwned=2</script>"  # an unseen category
    path = tmp_path / "html.csv"
    frame.to_csv(path, index=False)
    status = upload(browser, server, path, server["key"])
    assert "rows flagged" in status, status
    assert browser.execute_script("return document.body.dataset.pwned") is None
    assert not browser.find_elements(By.CSS_SELECTOR, "#flagged img, #flagged b, #flagged script")
    records = [tr.find_elements(By.TAG_NAME, "td")[2].text for tr in
               browser.find_elements(By.CSS_SELECTOR, "#flagged tbody tr")]
    assert records and all(attack.replace('"', '""')[:20] in r or attack[:20] in r for r in records)


def test_clicking_a_flagged_row_shows_why_as_bars(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from netad.inference.explain import Explainer

    frame = make_frame(n=120, seed=5).astype({"protocol": object})
    frame.loc[:, "protocol"] = "<b>odd</b>"  # an unseen category, shown as text
    path = tmp_path / "why.csv"
    frame.to_csv(path, index=False)
    assert "rows flagged" in upload(browser, server, path, server["key"])
    first = browser.find_element(By.CSS_SELECTOR, "#flagged tbody tr.flagged-row")
    row = int(first.find_elements(By.TAG_NAME, "td")[0].text) - 1
    first.click()
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#flagged tr.why .bar"))
    bars = browser.find_elements(By.CSS_SELECTOR, "#flagged tr.why .bar")
    predictor = server["predictor"]
    e = Explainer(predictor).explain_encoded(predictor.preprocessor.encode(frame[predictor.columns].iloc[[row]]))
    index, values = e.top(5)
    assert [b.get_attribute("data-column") for b in bars] == [e.columns[j] for j in index[0]]
    np.testing.assert_allclose([float(b.get_attribute("data-contribution")) for b in bars], values[0], rtol=1e-5,
                               atol=1e-6)
    widths = [b.find_element(By.CSS_SELECTOR, ".fill").get_attribute("style") for b in bars]
    assert widths[0] == "width: 100%;" and all(w.startswith("width: ") for w in widths)
    names = [b.find_element(By.CSS_SELECTOR, ".name").text for b in bars]
    assert "protocol = <b>odd</b>" in names or "protocol" not in [e.columns[j] for j in index[0]]
    assert not browser.find_elements(By.CSS_SELECTOR, "#flagged tr.why b")
    first.click()  # a second click hides it
    assert not browser.find_elements(By.CSS_SELECTOR, "#flagged tr.why")
