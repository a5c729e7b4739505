"""Dynamic sampling (DAPO: Yu et al. 2025, "DAPO: An Open-Source LLM Reinforcement Learning System
at Scale", section 3.2): a step trains only on groups whose rewards are not all equal.

A group whose rewards are all equal has advantage 0 on every completion: it adds no policy
gradient, yet under token- or sequence-mean aggregation its completions still count in the
loss's denominator and dilute the step. With `algo.dynamic_sampling` the trainer samples a round
of P = rollout.prompts_per_step prompts, keeps the informative groups (judged rewards not all
equal), and samples further rounds of P prompts, at most `algo.dynamic_sampling_max_rounds`
extra, until it has P of them; then it trains on the first P informative groups, in round and
prompt order. The rest (equal rewards, or beyond P) are skipped and counted; the prompt order
records every round's rewards, so a curriculum learns from the skipped prompts too.

When the cap is reached with fewer than P informative groups, the step trains on those found
(the loss is normalised by what is trained on, over all processes); with none found, on the
first round's batch as without dynamic sampling (every advantage 0: no policy-gradient update).

Several processes: every rank samples its contiguous slice of each round's prompts and holds
every round's gathered rewards, so all ranks select the same groups and run the same number of
rounds. A rank trains on the selected groups of its own slices: counts per rank may differ (even
be 0); the loss is normalised by global counts, so the summed gradient is the one-process one.
"""

from __future__ import annotations

import torch

from grpokit.algo.advantages import zero_std_P
from grpokit.rollout.generate import Rollout, concat_rollouts
from grpokit.rewards.scorer import ScoreResult
from grpokit.train.logs import merge_records, merge_scores, rollout_record


def informative_groups(rewards_PGs: list[torch.Tensor], want: int) -> list[tuple[int, int]]:
    """(round, group) of the first `want` groups, rounds in order and groups in prompt order, whose
    judged rewards (NaN = not judged) are not all equal. rewards_PGs: one [P, G] tensor per round."""
    chosen = []
    for k, rewards_PG in enumerate(rewards_PGs):
        for p in (~zero_std_P(rewards_PG)).nonzero().view(-1).tolist():
            if len(chosen) == want:
                return chosen
            chosen.append((k, p))
    return chosen


def subset_scores(scores: ScoreResult, rows: list[int]) -> ScoreResult:
    """The completions `rows` of a ScoreResult (failure counts kept only as a total of 0: the
    failures were reported with the round that scored them)."""
    return ScoreResult(total=[scores.total[b] for b in rows],
                       components={n: [v[b] for b in rows] for n, v in scores.components.items()})


def sample_rounds(trainer) -> tuple[list, list[tuple[int, int]]]:
    """Sampling rounds until P informative groups are found or the cap is reached; the rounds and
    the chosen (round, group) pairs (the first round's every group when none is informative)."""
    P, cap = trainer.cfg.rollout.prompts_per_step, trainer.cfg.algo.dynamic_sampling_max_rounds
    rounds = [trainer.sample_round(0)]
    chosen = informative_groups([rounds[0].rewards_PG], P)
    while len(chosen) < P and len(rounds) <= cap:
        rounds.append(trainer.sample_round(len(rounds)))
        chosen = informative_groups([r.rewards_PG for r in rounds], P)
    return rounds, chosen or [(0, p) for p in range(P)]


def own_rows(rounds: list, chosen: list[tuple[int, int]], rank: int, per_rank: int, group_size: int):
    """This rank's part of the chosen groups: their positions in `chosen`, and per round the rows
    of its local rollout that hold them (whole groups, in chosen order)."""
    own = [j for j, (_, p) in enumerate(chosen) if p // per_rank == rank]
    rows_by_round = {}
    for j in own:
        k, p = chosen[j]
        q = p - rank * per_rank
        rows_by_round.setdefault(k, []).extend(range(q * group_size, (q + 1) * group_size))
    return own, rows_by_round


def dynamic_sampling_batch(trainer):
    """The step's StepBatch under dynamic sampling (module docstring), with its metrics:
    rollout/rounds, rollout/groups_generated, rollout/groups_used (informative groups trained
    on), rollout/groups_skipped_total (over the run), time/extra_rounds (sampling and scoring
    after the first round); reward/* and reward/zero_std_share describe every group generated."""
    cfg, d = trainer.cfg, trainer.dist
    P, G = cfg.rollout.prompts_per_step, cfg.rollout.group_size
    rounds, chosen = sample_rounds(trainer)
    own, rows_by_round = own_rows(rounds, chosen, d.rank, P // d.world, G)
    parts, examples, local, texts, scored = [], [], [], [], []
    for k, rows in rows_by_round.items():
        rnd = rounds[k]
        parts.append(rnd.rollout.select(torch.tensor(rows, device=rnd.rollout.lengths_B.device)))
        groups = rows[::G]
        examples += [rnd.examples[b // G] for b in groups]
        local += [rnd.local[b // G] for b in groups]
        texts += [rnd.texts[b] for b in rows]
        scored.append(subset_scores(rnd.local_scores, rows))
    first = rounds[0].rollout
    rollout = concat_rollouts(parts, trainer.tokenizer.pad_token_id) if parts else first.select(
        torch.zeros(0, dtype=torch.long, device=first.lengths_B.device))
    rollout.group_size = G
    rewards_PG = torch.stack([rounds[k].rewards_PG[p] for k, p in chosen])
    batch = trainer.make_batch(rollout, rewards_PG, own_P=torch.tensor(own, dtype=torch.long))
    batch.spare = first
    used = sum(bool(x) for x in ~zero_std_P(rewards_PG))
    trainer.groups_skipped += P * len(rounds) - used
    _record(trainer, rounds, chosen, examples, local, rollout, texts, scored, batch.adv_B)
    generated = torch.cat([r.rewards_PG for r in rounds])
    batch.metrics.update({
        "time/generation": sum(r.gen_s for r in rounds), "time/reward": sum(r.reward_s for r in rounds),
        "time/extra_rounds": sum(r.gen_s + r.reward_s for r in rounds[1:]),
        **merge_scores([r.scores for r in rounds]).metrics(),
        "reward/zero_std_share": float(zero_std_P(generated).float().mean()),
        "rollout/rounds": len(rounds), "rollout/groups_generated": P * len(rounds), "rollout/groups_used": used,
        "rollout/groups_skipped_total": trainer.groups_skipped,
    })
    return batch


def _record(trainer, rounds, chosen, examples, local, rollout, texts, scored, adv_B) -> None:
    """The step's rollouts.jsonl line: the groups trained on, and `skipped_indices`, the prompts
    sampled this step and left out (equal rewards, or beyond P)."""
    indices = [i for r in rounds for i in r.indices]
    kept = {k * len(rounds[0].indices) + p for k, p in chosen}
    skipped = [i for n, i in enumerate(indices) if n not in kept]
    trainer.last_record = {"indices": [rounds[k].indices[p] for k, p in chosen]}
    if trainer.cfg.log.rollouts:
        local_scores = merge_scores(scored) if scored else ScoreResult([], {n: [] for n in
                                                                                  rounds[0].scores.components})
        record = rollout_record(examples, local, rollout, texts, local_scores, adv_B)
        trainer.last_record = merge_records(trainer.dist.gather_objects(record))
    trainer.last_record["skipped_indices"] = skipped
