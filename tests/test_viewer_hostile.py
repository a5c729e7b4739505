"""Model-written text is untrusted: completions, prompts, token texts and reward names holding
script tags, event handlers and javascript: URLs appear as text and run nothing."""

from __future__ import annotations

import json

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from grpokit.viewer.data import load_run
from grpokit.viewer.page import json_for_script, write_page
from tests.viewer_support import chromium, console, open_view, record, screenshot, wait_ready, write_run

HOSTILE = [
    "<script>window.__pwned = 1</script>",
    "</script><script>window.__pwned = 2</script>",
    '<img src=x onerror="window.__pwned = 3">',
    '<a href="javascript:window.__pwned = 4">click me</a>',
    "<svg onload=\"window.__pwned = 5\"></svg>",
    "{{SCRIPT}} <!-- \u2028 \u2029 --> & &amp; <style>body{display:none}</style>",
    '"><iframe srcdoc="<script>parent.__pwned=6</script>">',
    "plain answer 42",
]
COMPONENT = '<b onmouseover="window.__pwned = 7">acc</b>'


def test_json_for_script_cannot_end_the_element_and_round_trips():
    value = {"t": "</script><!-- \u2028\u2029 & <b>", "k</script>": [1.5, None]}
    text = json_for_script(value)
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text and "\u2029" not in text
    assert json.loads(text) == value
    with pytest.raises(ValueError):
        json_for_script({"x": float("nan")})


@pytest.fixture(scope="module")
def hostile_page(tmp_path_factory):
    G = 4
    texts = HOSTILE[:G], HOSTILE[G:]
    ids = [[k, k + 1, k + 2] for k in range(G)]
    records = []
    for step in (1, 2):  # the same two prompts at both steps, so every view has something to show
        rewards = [1.0, None, 0.0, 0.5, 0.0, 1.0, None, 1.0]
        records.append(record(step, [7, 9], list(texts[0] + texts[1]), group_size=G, rewards=rewards,
                              components={COMPONENT: rewards}, ids=ids + ids, prompts=[HOSTILE[0], HOSTILE[2]]))
    folder = write_run(tmp_path_factory.mktemp("hostile") / '<img src=x onerror="window.__pwned=8">', records,
                       components=[COMPONENT], summary={"note": HOSTILE[1]},
                       metrics=[{"step": 1, "reward/total/mean": 0.5, "alerts": [HOSTILE[3]]}, {"step": 2, "reward/total/mean": 0.6}])
    vocab = {i: HOSTILE[i % len(HOSTILE)] for i in range(16)}  # token texts are model-side too
    path, _ = write_page(load_run(folder), folder / "view.html", decode=vocab.get)
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


def text_of(node) -> str:
    return node.get_property("textContent")  # exactly the DOM's text (WebElement.text normalises spaces)


def assert_nothing_ran(driver):
    assert driver.execute_script("return typeof window.__pwned") == "undefined"
    assert driver.execute_script("return document.querySelectorAll('img, iframe, a[href], svg b, b[onmouseover]').length") == 0
    assert driver.execute_script("return document.scripts.length") == 2  # the data and the page's own script
    assert console(driver) == []


def test_hostile_text_renders_as_text_and_runs_nothing(hostile_page, browser, tmp_path):
    driver = browser
    driver.get(hostile_page.resolve().as_uri())
    wait_ready(driver, "overview")
    assert_nothing_ran(driver)
    open_view(driver, "step")
    shown = [text_of(p) for p in driver.find_elements(By.CSS_SELECTOR, "#step-groups .card pre.text")]
    assert sorted(shown) == sorted(HOSTILE)  # every text, as text (None rewards included)
    prompts = [text_of(p) for p in driver.find_elements(By.CSS_SELECTOR, "#step-groups .group-head .prompt")]
    assert prompts == [HOSTILE[0], HOSTILE[2]]
    names = {n.get_attribute("data-name") for n in driver.find_elements(By.CSS_SELECTOR, ".v-comp")}
    assert names == {COMPONENT}
    for card in driver.find_elements(By.CSS_SELECTOR, "#step-groups .card"):
        card.click()
    tokens = [text_of(t) for t in driver.find_elements(By.CSS_SELECTOR, "#detail .tok")]
    assert tokens and set(tokens) <= set(HOSTILE)
    driver.find_element(By.ID, "f-search").send_keys("<script>", Keys.ENTER)
    wait_ready(driver, "step")
    assert sorted(text_of(p) for p in driver.find_elements(By.CSS_SELECTOR, "#step-groups .card pre.text")) == sorted(
        t for t in HOSTILE if "<script>" in t)
    driver.find_element(By.ID, "f-search").clear()
    wait_ready(driver, "step")
    driver.find_element(By.ID, "f-none").click()  # the None rewards: two per step
    wait_ready(driver, "step")
    assert len(driver.find_elements(By.CSS_SELECTOR, "#step-groups .card")) == 2
    assert {c.find_element(By.CLASS_NAME, "v-reward").text for c in driver.find_elements(By.CSS_SELECTOR, "#step-groups .card")} == {"None"}
    screenshot(driver, tmp_path / "hostile-step.png")
    for view in ("prompt", "compare", "overview"):
        open_view(driver, view)
        screenshot(driver, tmp_path / f"hostile-{view}.png")
    alert = driver.find_element(By.CSS_SELECTOR, "#alerts li").text
    assert alert.endswith(HOSTILE[3])
    charts = driver.find_elements(By.CSS_SELECTOR, "#overview-charts .chart")
    assert len(driver.find_elements(By.CSS_SELECTOR, "#overview-charts .alert-mark")) == len(charts) > 0  # one per chart
    assert_nothing_ran(driver)
