"""Live alerts: each fires once, at the step its condition starts, on a metrics sequence made to
trigger it; re-arms after its condition cleared; stays silent on three whole demo runs' rows;
and a real run prints its alert and records it in metrics.jsonl and summary.json."""

import csv
import json
import math
from pathlib import Path

from grpokit.config import AlertsConfig, Config
from grpokit.train.alerts import AlertMonitor

HEALTHY = {"reward/zero_std_share": 0.25, "completion/truncated_share": 0.0, "completion/entropy": 0.7,
           "reward/total/mean": 0.3, "update/loss": 0.01, "update/grad_norm": 0.5, "update/clipped_share": 0.0,
           "update/nonfinite_steps": 0}


def rows(n: int, start: int = 1, **values):
    """n healthy rows from step `start`, with `values` (metric name with / written as __) set."""
    return [{"step": s, **HEALTHY, **{k.replace("__", "/"): v for k, v in values.items()}}
            for s in range(start, start + n)]


def fired(sequence, cfg: AlertsConfig | None = None) -> list[tuple[str, int]]:
    monitor = AlertMonitor(cfg or AlertsConfig())
    return [(a.kind, a.step) for row in sequence for a in monitor.update(row)]


def test_a_streak_of_equal_reward_groups_fires_once_when_it_reaches_its_length():
    seq = rows(5) + rows(25, start=6, reward__zero_std_share=0.95)
    assert fired(seq) == [("equal_rewards", 25)]  # the 20th step in a row at >= 0.9
    broken = rows(5) + rows(19, start=6, reward__zero_std_share=1.0) + rows(1, start=25) + \
        rows(19, start=26, reward__zero_std_share=1.0)
    assert fired(broken) == []  # never 20 in a row


def test_truncation_fires_on_its_window_mean():
    assert fired(rows(3) + rows(10, start=4, completion__truncated_share=0.9)) == [("truncation", 6)]
    assert fired(rows(20, completion__truncated_share=0.45)) == []  # under 0.5


def test_entropy_collapse_is_measured_against_the_run_s_own_start():
    seq = rows(10, completion__entropy=0.7) + rows(15, start=11, completion__entropy=0.05)
    assert fired(seq) == [("entropy_collapse", 20)]  # 0.05 < 0.1 x 0.7 for 10 steps
    assert fired(rows(10, completion__entropy=0.7) + rows(30, start=11, completion__entropy=0.1)) == []


def test_a_flat_reward_fires_after_its_patience_and_a_rising_one_does_not():
    # the 50-step mean is full at step 50 (its first best); 200 steps without a gain of 0.01: step 250
    assert fired(rows(300, reward__total__mean=0.3)) == [("reward_flat", 250)]
    rising = [{**r, "reward/total/mean": 0.2 + 0.001 * r["step"]} for r in rows(400)]
    assert fired(rising) == []  # a new best (+0.011) every 11 steps
    noisy = [{**r, "reward/total/mean": 0.3 + (0.1 if r["step"] % 2 else -0.1)} for r in rows(300)]
    assert fired(noisy) == [("reward_flat", 250)]  # noise around a flat mean is still flat
    late = [{**r, "reward/total/mean": 0.2 if r["step"] <= 100 else 0.35} for r in rows(400)]
    # the 50-step mean gains 0.012 every 4 steps from 104 to its last best at 148 (48 of 50 at 0.35): 148 + 200
    assert fired(late) == [("reward_flat", 348)]


def test_kl_and_clip_blowups():
    assert fired(rows(3) + [{**rows(1, start=4)[0], "update/kl": 2.5}]) == [("kl_blowup", 4)]
    assert fired(rows(2) + rows(2, start=3, update__clipped_share=0.8)) == [("clip_blowup", 3)]
    assert fired(rows(5, update__kl=0.02, update__clipped_share=0.1)) == []


def test_non_finite_values_fire_at_once():
    assert fired(rows(3) + rows(2, start=4, update__nonfinite_steps=1)) == [("nonfinite", 4)]
    monitor = AlertMonitor(AlertsConfig())
    monitor.update(rows(1)[0])
    [alert] = monitor.update({**rows(1, start=2)[0], "update/loss": math.nan})
    assert alert.message == "non-finite update/loss (update skipped)" and "lower train.lr" in alert.fix


def test_an_alert_fires_again_only_after_its_condition_cleared_for_rearm_steps():
    cfg = AlertsConfig(rearm_steps=3)
    on, off = {"update__kl": 5.0}, {"update__kl": 0.01}
    seq = rows(2, **on) + rows(2, start=3, **off) + rows(1, start=5, **on) + rows(3, start=6, **off) + \
        rows(1, start=9, **on)
    assert fired(seq, cfg) == [("kl_blowup", 1), ("kl_blowup", 9)]


def test_silent_on_three_whole_demo_runs():
    """tests/data/demo_metrics.csv: the alert metrics of `make demo` at --train.seed 0, 1, 2 (600
    steps each; the runs behind the README's figures), 5 significant digits."""
    with open(Path(__file__).parent / "data" / "demo_metrics.csv") as fh:
        table = list(csv.DictReader(fh))
    for seed in "012":
        demo = [{k: int(v) if k in ("step", "update/nonfinite_steps") else float(v) for k, v in r.items() if k != "seed"}
                for r in table if r["seed"] == seed]
        assert len(demo) == 600 and fired(demo) == [], seed
        # the same rows with their reward frozen after step 300 do fire: the rule can see a stall here
        frozen = [{**r, "reward/total/mean": demo[299]["reward/total/mean"]} if r["step"] > 300 else r for r in demo]
        assert [kind for kind, _ in fired(frozen)] == ["reward_flat"], seed


def test_a_real_run_prints_and_records_the_alert_it_triggers(arithmetic_model_dir, tmp_path):
    from grpokit.train.run import run_training
    from grpokit.viewer.data import load_run

    out = tmp_path / "run"
    cfg = Config(output_dir=str(out))
    cfg.model.name_or_path = str(arithmetic_model_dir)
    cfg.data.eval_size, cfg.train.steps, cfg.train.eval_every = 8, 4, 0
    cfg.log.progress = cfg.log.plot = cfg.log.tensorboard = cfg.log.rollouts = False
    cfg.doctor.preflight = False
    cfg.alerts.zero_std_share, cfg.alerts.zero_std_steps = 0.0, 3  # any share, 3 steps in a row: fires at step 3
    lines = []
    summary = run_training(cfg, log=lines.append)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    [alert] = summary["alerts"]  # the demo's steps trigger no other alert
    assert alert["kind"] == "equal_rewards" and alert["step"] == 3
    assert [r["step"] for r in metrics if "alerts" in r] == [3] and metrics[3]["alerts"] == [alert]
    assert json.loads((out / "summary.json").read_text())["alerts"] == [alert]
    assert [line for line in lines if line.startswith("alert")] == [
        f"alert at step 3: {alert['message']}; {alert['fix']}"]
    assert [a["step"] for a in load_run(out).alerts] == [3]  # the viewer lists it once, not once per file
