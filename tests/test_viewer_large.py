"""A run of 5,000 steps x 128 completions: the page holds metrics and groups for every step and
completions for a bounded set of steps (the file's size is bounded), opens in the browser within
10 s and stays responsive (a step renders within 2 s); the steps left out say how to see them."""

from __future__ import annotations

import json
import time

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from grpokit.viewer.data import load_run
from grpokit.viewer.page import DEFAULT_MAX_MB, write_page
from tests.viewer_support import chromium, console, open_view, record, wait_ready

STEPS, P, G, TOKENS = 5000, 16, 8, 12


def write_large_run(folder):
    """The same step's completions at every step (only the step and the prompts drawn change),
    written by substituting into one serialised record: seconds, not minutes."""
    folder.mkdir()
    texts = [f"answer {b} " * 3 for b in range(P * G)]
    rewards = [float(b % 3 == 0) for b in range(P * G)]
    ids = [[(b + k) % 300 for k in range(TOKENS)] for b in range(P * G)]
    template = json.dumps(record(-1, [-2] * P, texts, group_size=G, rewards=rewards, components={"acc": rewards}, ids=ids))
    head, rest = template.split("-1", 1)
    before, after = rest.split(json.dumps([-2] * P), 1)
    with open(folder / "rollouts.jsonl", "w") as fh:
        for step in range(1, STEPS + 1):
            fh.write(head + str(step) + before + json.dumps([(step * P + p) % 4000 for p in range(P)]) + after + "\n")
    with open(folder / "metrics.jsonl", "w") as fh:
        for step in range(1, STEPS + 1):
            fh.write(json.dumps({"step": step, "reward/total/mean": step / STEPS, "completion/entropy": 1 - step / STEPS / 2,
                                 "completion/length_mean": 12.0, "completion/truncated_share": 0.1,
                                 "reward/zero_std_share": 0.25, "update/clipped_share": 0.01, "update/lr": 1e-5,
                                 "reward/acc/mean": step / STEPS}) + "\n")
    (folder / "config.json").write_text(json.dumps({"reward": {"names": ["acc"]}}))
    return folder


@pytest.fixture(scope="module")
def large_page(tmp_path_factory):
    folder = write_large_run(tmp_path_factory.mktemp("large") / "run")
    t0 = time.perf_counter()
    run = load_run(folder)
    path, steps = write_page(run, folder / "view.html")
    build_s = time.perf_counter() - t0
    log_mb, page_mb = (folder / "rollouts.jsonl").stat().st_size / 1e6, path.stat().st_size / 1e6
    print(f"\n5000x128 run: rollouts.jsonl {log_mb:.0f} MB; view.html {page_mb:.1f} MB with the completions of "
          f"{len(steps)} steps; built in {build_s:.1f} s")
    return path, steps, page_mb


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


def test_the_file_is_bounded_and_holds_first_last_and_spread_steps(large_page):
    path, steps, page_mb = large_page
    assert steps[0] == 1 and steps[-1] == STEPS and 100 < len(steps) < STEPS
    gaps = {b - a for a, b in zip(steps, steps[1:])}
    assert max(gaps) <= 2 * min(gaps) + 1  # evenly spread
    assert page_mb < DEFAULT_MAX_MB + 10  # completions within the budget; metrics and groups of every step on top


def test_a_large_run_opens_within_10_s_and_stays_responsive(large_page, browser):
    path, steps, _ = large_page
    t0 = time.perf_counter()
    browser.get(path.resolve().as_uri())
    wait_ready(browser, "overview", timeout=30)
    opened = time.perf_counter() - t0
    charts = browser.find_elements(By.CSS_SELECTOR, "#overview-charts .chart")
    assert int(charts[0].get_attribute("data-points")) == STEPS
    t0 = time.perf_counter()
    open_view(browser, "step")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#step-groups .card")) == P * G
    step_s = time.perf_counter() - t0
    missing = next(s for s in range(1, STEPS) if s not in set(steps))
    field = browser.find_element(By.ID, "step-input")
    field.clear()
    field.send_keys(str(missing), Keys.ENTER)
    wait_ready(browser, "step")
    assert "--serve" in browser.find_element(By.ID, "step-missing").text
    assert browser.find_element(By.CSS_SELECTOR, "#step-metrics tr[data-key='reward/total/mean'] .value").text == str(missing / STEPS)
    t0 = time.perf_counter()
    browser.find_element(By.ID, "tab-prompt").click()
    wait_ready(browser, "prompt")
    prompt_s = time.perf_counter() - t0
    print(f"\nopened in {opened:.2f} s; a step of 128 completions rendered in {step_s:.2f} s; a prompt in {prompt_s:.2f} s")
    assert opened < 10 and step_s < 2 and prompt_s < 2
    assert console(browser) == []
