"""Shared by the viewer tests: a headless Chromium driven by selenium, screenshots checked to be
non-blank, and synthetic run folders (metrics.jsonl, rollouts.jsonl) written without training."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1000"]


def chromium(profile: Path):
    """A headless Chromium (Debian's chromium + chromium-driver) that keeps the page's console.
    Without them the test fails naming the packages (skips with GRPOKIT_BROWSER_OPTIONAL=1)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        message = "headless browser tests need Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        if os.environ.get("GRPOKIT_BROWSER_OPTIONAL") == "1":
            pytest.skip(message)
        pytest.fail(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def wait_ready(driver, view: str | None = None, timeout: float = 10.0):
    """Wait until the page has rendered (a view, when given) and return the view element."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def ready(d):
        node = d.find_elements(By.CSS_SELECTOR, "#view[data-ready=yes]")
        return node[0] if node and (view is None or node[0].get_attribute("data-view") == view) else False

    return WebDriverWait(driver, timeout).until(ready)


def open_view(driver, view: str):
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, f"tab-{view}").click()
    return wait_ready(driver, view)


def console(driver) -> list[dict]:
    """Browser console entries since the last call (errors, warnings, logs)."""
    return driver.get_log("browser")


def screenshot(driver, path: Path) -> Path:
    """Save a screenshot and check it is not blank: its pixels vary (std > 10 of 255 in some band)."""
    from PIL import Image, ImageStat

    driver.save_screenshot(str(path))
    with Image.open(path) as image:
        spread = max(ImageStat.Stat(image.convert("RGB")).stddev)
    assert spread > 10, f"{path} looks blank (pixel std {spread:.1f})"
    return path


def write_run(folder: Path, records: list[dict], *, components: list[str], metrics: list[dict] | None = None,
              summary: dict | None = None) -> Path:
    """A run folder holding `records` as its rollouts log, and a metrics row per step."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"reward": {"names": components, "accuracy_reward": ""}}))
    rows = metrics if metrics is not None else [
        {"step": r["step"], "reward/total/mean": sum(x for x in r["rewards"] if x is not None) / len(r["rewards"])} for r in records]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "rollouts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def record(step: int, indices: list[int], texts: list[str], *, group_size: int, rewards: list, components: dict,
           ids: list[list[int]] | None = None, prompts: list | None = None) -> dict:
    """One rollouts record with the given texts and rewards (advantage = reward - group mean)."""
    ids = ids or [[i % 50 for i in range(len(t) % 7 + 1)] for t in texts]
    adv = []
    for p in range(len(indices)):
        group = rewards[p * group_size:(p + 1) * group_size]
        judged = [x for x in group if x is not None]
        mean = sum(judged) / len(judged) if judged else 0.0
        adv += [0.0 if x is None else round(x - mean, 6) for x in group]
    return {"step": step, "group_size": group_size, "indices": indices,
            "prompts": prompts or [f"prompt {i}" for i in indices], "answers": [str(i) for i in indices],
            "completion_ids": ids, "texts": texts, "rewards": rewards, "components": components,
            "advantages": adv, "lengths": [len(x) for x in ids], "ended": [len(x) < 6 for x in ids],
            "logprobs": [[round(-0.1 * (k + 1), 4) for k in range(len(x))] for x in ids]}
