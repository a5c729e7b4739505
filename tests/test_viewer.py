"""`grpokit view` on a short real demo run, checked in a real headless Chromium: the page loads
with an empty console, each view renders (screenshots), the numbers shown equal metrics.jsonl
and rollouts.jsonl, filters and search change what is shown, tokens carry their values."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import threading

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from tests.viewer_support import chromium, console, open_view, screenshot, wait_ready

SUMS = [(12, 34), (5, 7), (40, 90), (23, 23), (80, 61), (99, 99), (1, 2), (17, 4), (97, 98), (50, 75)]


@pytest.fixture(scope="module")
def demo_run(arithmetic_model_dir, tmp_path_factory):
    """4 steps of the demo model on 10 sums (3 prompts x 4 completions per step, so prompts
    come back), up to 3 new tokens (half the answers have 3 digits and are cut: truncated rows;
    4 of the 10 are held out, so training sees at least one of each kind)."""
    folder = tmp_path_factory.mktemp("viewer") / "run"
    data = folder.parent / "sums.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{a}+{b}", "answer": str(a + b)}) + "\n" for a, b in SUMS))
    args = ["--output-dir", str(folder), "--model.name-or-path", str(arithmetic_model_dir), "--data.source", str(data),
            "--data.eval-split", "none", "--data.eval-size", "4", "--reward.names", "arithmetic",
            "--rollout.prompts-per-step", "3", "--rollout.group-size", "4", "--rollout.max-new-tokens", "3",
            "--train.steps", "4", "--train.eval-every", "2", "--log.no-progress", "--log.no-tensorboard", "--log.no-plot"]
    done = subprocess.run([sys.executable, "-m", "grpokit", "train", *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return folder, done.stdout


@pytest.fixture(scope="module")
def page(demo_run):
    folder, _ = demo_run
    done = subprocess.run([sys.executable, "-m", "grpokit", "view", str(folder)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"file://{(folder / 'view.html').resolve()}" in done.stdout
    return folder / "view.html"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


@pytest.fixture()
def loaded(browser, page):
    browser.get(page.resolve().as_uri())
    wait_ready(browser, "overview")
    return browser


def logs(folder):
    metrics = {}
    for line in (folder / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        metrics.setdefault(row["step"], {}).update(row)
    rollouts = {json.loads(line)["step"]: json.loads(line) for line in (folder / "rollouts.jsonl").read_text().splitlines()}
    return metrics, rollouts


def shown_rows(driver) -> list[int]:
    return [int(c.get_attribute("data-row")) for c in driver.find_elements(By.CSS_SELECTOR, "#step-groups .card")]


def test_the_demo_prints_the_view_command_and_the_page_is_one_offline_file(demo_run, page):
    folder, stdout = demo_run
    assert f"grpokit view {folder}" in stdout
    html = page.read_text()
    assert re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)\s*=\s*[\"']?(https?:)?//", html) is None
    assert html.count("<script") == 2 and "connect-src 'self'" in html and "default-src 'none'" in html


def test_each_view_renders_without_console_errors(loaded, demo_run, tmp_path):
    driver = loaded
    assert console(driver) == []
    charts = {c.get_attribute("id") for c in driver.find_elements(By.CSS_SELECTOR, "#overview-charts .chart")}
    assert {"chart-reward_total_mean", "chart-reward_arithmetic_mean", "chart-eval_accuracy", "chart-completion_entropy",
            "chart-update_lr"} <= charts
    assert "chart-update_kl" not in charts  # beta = 0: the run logged no KL, so no empty chart
    screenshot(driver, tmp_path / "overview.png")
    for view in ("step", "prompt", "compare"):
        open_view(driver, view)
        screenshot(driver, tmp_path / f"{view}.png")
    driver.find_element(By.CSS_SELECTOR, "#cmp-left .card")
    open_view(driver, "step")
    driver.find_element(By.CSS_SELECTOR, "#step-groups .card").click()
    driver.find_element(By.CSS_SELECTOR, "#detail .tok")
    screenshot(driver, tmp_path / "completion.png")
    assert console(driver) == []


def test_a_steps_numbers_equal_the_logs(loaded, demo_run):
    driver = loaded
    metrics, rollouts = logs(demo_run[0])
    step, group = 2, 1
    open_view(driver, "step")
    field = driver.find_element(By.ID, "step-input")
    field.clear()
    field.send_keys(str(step), Keys.ENTER)
    wait_ready(driver, "step")
    table = {tr.get_attribute("data-key"): tr.find_element(By.CLASS_NAME, "value").text
             for tr in driver.find_elements(By.CSS_SELECTOR, "#step-metrics tr")}
    numeric = {k: v for k, v in metrics[step].items() if k != "step" and isinstance(v, (int, float)) and math.isfinite(v)}
    assert set(table) == set(numeric)
    for key, value in numeric.items():
        assert float(table[key]) == pytest.approx(value, rel=1e-5, abs=1e-12), key
    rec, G = rollouts[step], rollouts[step]["group_size"]
    box = driver.find_element(By.CSS_SELECTOR, f"#step-groups .group[data-group='{group}']")
    assert box.get_attribute("data-prompt") == str(rec["indices"][group])
    cards = box.find_elements(By.CLASS_NAME, "card")
    rows = [int(c.get_attribute("data-row")) for c in cards]
    assert sorted(rows) == list(range(group * G, (group + 1) * G))
    assert [rec["advantages"][b] for b in rows] == sorted((rec["advantages"][b] for b in rows), reverse=True)
    for card, b in zip(cards, rows):
        assert float(card.find_element(By.CLASS_NAME, "v-adv").text) == pytest.approx(rec["advantages"][b], abs=1e-4)
        assert float(card.find_element(By.CLASS_NAME, "v-reward").text) == pytest.approx(rec["rewards"][b], abs=1e-4)
        comp = card.find_element(By.CSS_SELECTOR, ".v-comp[data-name='arithmetic']").text
        assert float(comp) == pytest.approx(rec["components"]["arithmetic"][b], abs=1e-4)
        assert int(card.find_element(By.CLASS_NAME, "v-len").text) == rec["lengths"][b]
        assert card.find_element(By.CLASS_NAME, "v-ended").text == ("ended" if rec["ended"][b] else "truncated")
        assert card.find_element(By.CSS_SELECTOR, "pre.text").text == rec["texts"][b].strip()


def test_filters_and_search_change_what_is_shown(loaded, demo_run):
    driver = loaded
    _, rollouts = logs(demo_run[0])
    mixed = [s for s in rollouts if 0 < sum(not e for e in rollouts[s]["ended"]) < len(rollouts[s]["ended"])]
    assert mixed, "the fixture should give a step with both truncated and ended rows"
    step = max(mixed, key=lambda s: sum(not e for e in rollouts[s]["ended"]))  # of those, the most truncated rows
    rec, G = rollouts[step], rollouts[step]["group_size"]
    open_view(driver, "step")
    field = driver.find_element(By.ID, "step-input")
    field.clear()
    field.send_keys(str(step), Keys.ENTER)
    wait_ready(driver, "step")
    B = len(rec["texts"])
    assert sorted(shown_rows(driver)) == list(range(B))

    def apply(action, expected):
        action()
        wait_ready(driver, "step")
        assert sorted(shown_rows(driver)) == sorted(expected)

    truncated = [b for b in range(B) if not rec["ended"][b]]
    assert 0 < len(truncated) < B, "the fixture should give both truncated and ended rows"
    apply(lambda: driver.find_element(By.ID, "f-truncated").click(), truncated)
    apply(lambda: driver.find_element(By.ID, "f-truncated").click(), range(B))
    equal = {p for p in range(len(rec["indices"])) if len(set(rec["rewards"][p * G:(p + 1) * G])) == 1}
    apply(lambda: Select(driver.find_element(By.ID, "f-equal")).select_by_value("hide"), [b for b in range(B) if b // G not in equal])
    apply(lambda: Select(driver.find_element(By.ID, "f-equal")).select_by_value("any"), range(B))
    Select(driver.find_element(By.ID, "f-comp")).select_by_value("arithmetic")
    wait_ready(driver, "step")
    Select(driver.find_element(By.ID, "f-op")).select_by_value("<")
    wait_ready(driver, "step")
    apply(lambda: driver.find_element(By.ID, "f-value").send_keys("0.5", Keys.ENTER),
          [b for b in range(B) if rec["components"]["arithmetic"][b] < 0.5])
    apply(lambda: driver.find_element(By.ID, "f-value").clear(), range(B))
    word = rec["texts"][truncated[0]].strip()
    apply(lambda: driver.find_element(By.ID, "f-search").send_keys(word, Keys.ENTER),
          [b for b in range(B) if word.lower() in rec["texts"][b].lower()])
    hits = driver.find_element(By.ID, "search-hits").text
    assert f"step {step} (" in hits
    apply(lambda: driver.find_element(By.ID, "f-none").click(), [])  # arithmetic never returns None


def test_tokens_are_coloured_by_the_chosen_value_with_the_value_on_hover(loaded, demo_run, tmp_path):
    driver = loaded
    _, rollouts = logs(demo_run[0])
    rec = rollouts[1]
    open_view(driver, "step")
    card = driver.find_element(By.CSS_SELECTOR, "#step-groups .card")
    b = int(card.get_attribute("data-row"))
    card.click()
    tokens = driver.find_elements(By.CSS_SELECTOR, "#detail .tok")
    assert len(tokens) == rec["lengths"][b]
    assert [float(t.get_attribute("data-value")) for t in tokens] == rec["logprobs"][b]
    colours = {t.value_of_css_property("background-color") for t in tokens}
    ActionChains(driver).move_to_element(tokens[0]).perform()
    assert f"log-prob {rec['logprobs'][b][0]:.4f}" in driver.find_element(By.ID, "tok-info").text
    Select(driver.find_element(By.ID, "colour-by")).select_by_value("entropy")
    tokens = driver.find_elements(By.CSS_SELECTOR, "#detail .tok")
    assert [float(t.get_attribute("data-value")) for t in tokens] == rec["entropies"][b]
    assert {t.value_of_css_property("background-color") for t in tokens} != colours
    screenshot(driver, tmp_path / "tokens-by-entropy.png")
    Select(driver.find_element(By.ID, "colour-by")).select_by_value("advantage")
    tokens = driver.find_elements(By.CSS_SELECTOR, "#detail .tok")
    assert {float(t.get_attribute("data-value")) for t in tokens} == {rec["advantages"][b]}
    Select(driver.find_element(By.ID, "colour-by")).select_by_value("logprob")
    assert console(driver) == []


def test_a_prompt_across_the_run_and_one_completion_between_two_steps(loaded, demo_run):
    driver = loaded
    _, rollouts = logs(demo_run[0])
    drawn = {}
    for step, rec in sorted(rollouts.items()):
        for p, index in enumerate(rec["indices"]):
            drawn.setdefault(index, []).append((step, p))
    index, seen = max(drawn.items(), key=lambda kv: len(kv[1]))
    assert len(seen) >= 2, "the fixture should draw a prompt twice"
    open_view(driver, "prompt")
    field = driver.find_element(By.ID, "prompt-input")
    field.clear()
    field.send_keys(str(index), Keys.ENTER)
    wait_ready(driver, "prompt")
    assert driver.find_element(By.ID, "prompt-drawn").text == f"drawn at {len(seen)} steps"
    G = rollouts[seen[0][0]]["group_size"]
    passes = [sum(x > 0 for x in rollouts[s]["components"]["arithmetic"][p * G:(p + 1) * G]) / G for s, p in seen]
    assert int(driver.find_element(By.ID, "chart-pass").get_attribute("data-points")) == len(passes)
    groups = driver.find_elements(By.CSS_SELECTOR, "#prompt-groups .group")
    assert [g.get_attribute("data-prompt") for g in groups] == [str(index)] * len(seen)
    open_view(driver, "compare")
    field = driver.find_element(By.ID, "cmp-prompt")
    field.clear()
    field.send_keys(str(index), Keys.ENTER)
    wait_ready(driver, "compare")
    (sa, pa), (sb, pb) = seen[0], seen[1]
    left, right = (driver.find_element(By.ID, side) for side in ("cmp-left", "cmp-right"))
    for node, step, p in ((left, sa, pa), (right, sb, pb)):
        rec = rollouts[step]
        best = max(range(p * G, (p + 1) * G), key=lambda b: (rec["advantages"][b], -b))
        card = node.find_element(By.CLASS_NAME, "card")
        assert card.get_attribute("data-step") == str(step)
        assert float(card.find_element(By.CLASS_NAME, "v-adv").text) == pytest.approx(rec["advantages"][best], abs=1e-4)
        assert len(node.find_elements(By.CLASS_NAME, "tok")) == rec["lengths"][int(card.get_attribute("data-row"))]
    assert console(driver) == []


def test_serve_loads_each_steps_completions_when_shown(demo_run, browser):
    from grpokit.viewer.cli import token_decoder
    from grpokit.viewer.data import load_run
    from grpokit.viewer.server import make_server

    folder = demo_run[0]
    server = make_server(load_run(folder), port=0, decode=token_decoder(folder))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        browser.get(f"http://127.0.0.1:{server.server_address[1]}/")
        wait_ready(browser, "overview")
        open_view(browser, "step")
        _, rollouts = logs(folder)
        assert len(browser.find_elements(By.CSS_SELECTOR, "#step-groups .card")) == len(rollouts[1]["texts"])
        browser.find_element(By.ID, "step-next").click()
        wait_ready(browser, "step")
        assert browser.find_element(By.ID, "step-input").get_attribute("value") == "2"
        assert len(browser.find_elements(By.CSS_SELECTOR, "#step-groups .card")) == len(rollouts[2]["texts"])
        assert console(browser) == []
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_view_names_the_missing_or_broken_file(tmp_path):
    done = subprocess.run([sys.executable, "-m", "grpokit", "view", str(tmp_path / "nope")], capture_output=True, text=True)
    assert done.returncode == 2 and f"{tmp_path / 'nope'}: no such run folder" in done.stderr
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2, oops\n')
    done = subprocess.run([sys.executable, "-m", "grpokit", "view", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 2 and f"{tmp_path / 'metrics.jsonl'}: line 2 is not valid JSON" in done.stderr


def test_a_run_without_rollouts_gets_a_metrics_only_page(tmp_path):
    from grpokit.viewer.data import load_run
    from grpokit.viewer.page import write_page

    (tmp_path / "metrics.jsonl").write_text('{"step": 0, "eval_accuracy": 0.25}\n{"step": 1, "reward_mean": NaN, "kl": 0.5}\n'
                                            '{"step": 1, "eval_accuracy": 0.5}\n')
    run = load_run(tmp_path)
    assert run.metrics == {"step": [0, 1], "eval_accuracy": [0.25, 0.5], "kl": [None, 0.5]}
    path, steps = write_page(run, tmp_path / "view.html")
    assert steps == [] and '"has_rollouts":false' in path.read_text()
