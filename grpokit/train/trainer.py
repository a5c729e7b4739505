"""The GRPO step, top to bottom. It only connects modules:
prompts -> rollout -> rewards -> advantages -> loss -> optimiser step -> metrics.

Every metric of a step describes the global batch, whatever the number of processes: rewards,
scores and the rollout record are gathered from every rank, counts and sums are added over
ranks. Metric names are `group/name` (reward/, completion/, update/, time/; README "Metrics")."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field

import torch

from grpokit.algo.advantages import compute_advantages_PG, zero_std_P
from grpokit.algo.aggregate import aggregate
from grpokit.algo.losses import per_token_loss_BT
from grpokit.algo.sampling import seeded_generator
from grpokit.config import Config, check_whole_groups
from grpokit.data.chat import stop_token_ids
from grpokit.data.order import PromptOrder, ShuffledOrder
from grpokit.data.records import example_prompt_ids
from grpokit.envs import make_environment
from grpokit.eval.evaluate import decode_completions
from grpokit.parallel.dist import Dist
from grpokit.parallel.sharding import Sharding, full_norm, is_sharded, passes_to_match
from grpokit.policy.forward import dropout_off, policy_logprobs_BT
from grpokit.policy.reference import Reference
from grpokit.rewards.scorer import ScoreResult
from grpokit.rewards.overlong import completion_records
from grpokit.rollout.generate import Rollout, eval_mode, generate
from grpokit.rollout.multiturn import episode_records, sample_episodes
from grpokit.train.dynamic_sampling import dynamic_sampling_batch
from grpokit.train.logs import merge_records, merge_scores, rollout_record


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float, betas: tuple[float, float]):
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    # the fused kernel updates in place (no temporaries, one pass per tensor); it takes plain
    # floating-point tensors on the CPU or CUDA (not FSDP's DTensors)
    fused = all(type(p) is torch.nn.Parameter and p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point
                for p in params)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=betas, fused=fused or None)


def warmup_cosine(step: int, *, warmup: int, total: int, min_ratio: float) -> float:
    """Learning-rate multiplier: linear warm-up to 1, then cosine down to min_ratio at `total`."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass
class SampledRound:
    """One sampling round: the P prompts drawn (global indices), this rank's share of them
    (`local`, `examples`) with its rollout, texts and scores, and the global scores and rewards."""

    indices: list[int]
    local: list[int]
    examples: list[dict]
    rollout: Rollout
    texts: list[str]
    local_scores: ScoreResult
    scores: ScoreResult
    rewards_PG: torch.Tensor
    gen_s: float
    reward_s: float


def episode_metrics(rollout: Rollout, d: Dist) -> dict:
    """episode/* metrics of a multi-turn rollout over the global batch: model turns per episode,
    the share of episodes that called a tool, the share of tool calls that failed, and how many
    episodes a full re-render would have tokenized differently (env.strict_tokens makes that an
    error)."""
    eps = rollout.episodes or []
    n, turns, calling, calls, failed, mismatched = d.sum_floats(
        len(eps), sum(len(e.turns) for e in eps), sum(bool(e.tool_calls) for e in eps),
        sum(len(e.tool_calls) for e in eps), sum(bool(c.error) for e in eps for c in e.tool_calls),
        sum(e.retokenize_mismatch >= 0 for e in eps))
    return {"episode/turns_mean": turns / max(n, 1), "episode/tool_call_rate": calling / max(n, 1),
            "episode/tool_error_share": failed / max(calls, 1), "episode/retokenize_mismatch": int(mismatched)}


@dataclass
class StepBatch:
    """Everything one step's update needs, after rollout and scoring."""

    rollout: Rollout
    adv_B: torch.Tensor
    rows_B: torch.Tensor  # rows that take part in forward/backward
    num_seqs: int
    num_tokens: int
    old_logp_BT: torch.Tensor | None = None  # of rows_B, when mu > 1
    ref_logp_BT: torch.Tensor | None = None  # of rows_B, when beta > 0
    metrics: dict = field(default_factory=dict)
    spare: Rollout | None = None  # rows for zero-weighted passes when `rollout` has none (dynamic sampling)


class Trainer:
    """One GRPO step at a time (`step`), on this process's share of every step's prompts.

    reference: the KL's pi_ref (needed when algo.beta > 0); prompt_order: which prompts each step
    visits (default: a seeded shuffle); sharding: how the weights lie over the processes."""

    def __init__(self, cfg: Config, model, tokenizer, train_examples: list[dict], scorer,
                 reference: Reference | None = None, dist: Dist | None = None,
                 prompt_order: PromptOrder | None = None, sharding: Sharding | None = None):
        self.cfg, self.model, self.tokenizer, self.examples = cfg, model, tokenizer, train_examples
        self.scorer, self.reference, self.dist = scorer, reference, dist or Dist()
        self.sharding = sharding or Sharding("none", self.dist)
        self.device = next(model.parameters()).device
        t = cfg.train
        self.optimizer = make_optimizer(model, t.lr, t.weight_decay, (t.adam_beta1, t.adam_beta2))
        total = t.steps * cfg.algo.mu
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: warmup_cosine(s, warmup=t.warmup_steps, total=total, min_ratio=t.min_lr_ratio))
        self.prompt_order: PromptOrder = prompt_order or ShuffledOrder(len(train_examples), cfg.data.seed)
        self.stop_ids = stop_token_ids(tokenizer, model, cfg.rollout.stop_token_ids)  # every end-of-turn id
        self.env = make_environment(cfg.env) if cfg.env.name else None  # multi-turn tool episodes
        self.step_idx = 0
        self.nonfinite_in_a_row = 0
        self.nonfinite_total = 0
        self.groups_skipped = 0  # algo.dynamic_sampling: groups sampled and not trained on, over the run
        self.last_record: dict = {}  # the last step's prompts, completions and rewards (global batch)
        check_whole_groups(cfg.rollout.prompts_per_step, self.dist.world)
        if cfg.algo.beta > 0 and reference is None:
            raise ValueError("algo.beta > 0 needs a reference policy")

    def policy_logprobs(self, part: Rollout) -> torch.Tensor:
        return policy_logprobs_BT(self.model, part, temperature=self.cfg.rollout.temperature,
                                  chunk=self.cfg.train.logprob_chunk)

    def _sample(self, examples: list[dict], round_: int = 0) -> Rollout:
        r, d = self.cfg.rollout, self.dist
        # the draws depend on (seed, step, rank, round) alone, so a resumed run samples the same
        gen = seeded_generator(self.device, self.cfg.train.seed, self.step_idx, d.rank, round_)
        # ranks stop decoding at different steps: no per-forward collectives
        with self.sharding.gathered(self.model):
            if self.env is not None:
                return sample_episodes(self.model, self.tokenizer, self.env, examples, self.cfg, self.stop_ids,
                                       generator=gen, logprobs=self.cfg.log.rollouts)
            return generate(
                self.model, [example_prompt_ids(self.tokenizer, ex) for ex in examples], group_size=r.group_size,
                max_new_tokens=r.max_new_tokens, min_new_tokens=r.min_new_tokens, eos_id=self.stop_ids,
                pad_id=self.tokenizer.pad_token_id, temperature=r.temperature, top_p=r.top_p, top_k=r.top_k,
                generator=gen, logprobs=self.cfg.log.rollouts,
            )

    def sample_round(self, round_: int = 0) -> SampledRound:
        """Draw the next P prompts of the order, sample this rank's share of them, score them.

        Every rank draws the same global prompt order and keeps its own contiguous slice, so
        whole groups stay on one rank; scores are gathered, so every rank holds the global
        rewards_PG. The prompt order records them (a curriculum learns pass rates from them)."""
        r, d = self.cfg.rollout, self.dist
        indices = self.prompt_order.next_indices(r.prompts_per_step)
        per_rank = r.prompts_per_step // d.world
        local = indices[d.rank * per_rank:(d.rank + 1) * per_rank]
        examples = [self.examples[i] for i in local]
        t0 = time.perf_counter()
        rollout = self._sample(examples, round_)
        t1 = time.perf_counter()
        texts = decode_completions(self.tokenizer, rollout)
        local_scores = self.scorer.score(texts, episode_records(rollout, completion_records(
            examples, r.group_size, rollout.lengths_B.tolist(), rollout.ended_B.tolist(), r.max_new_tokens)))
        scores = merge_scores(d.gather_objects(local_scores))  # every rank's scores, in prompt order
        rewards_PG = torch.tensor([math.nan if x is None else x for x in scores.total],
                                  dtype=torch.float32).view(r.prompts_per_step, r.group_size)
        self.prompt_order.record(indices, rewards_PG)
        return SampledRound(indices, local, examples, rollout, texts, local_scores, scores, rewards_PG,
                            t1 - t0, time.perf_counter() - t1)

    def rollout_and_score(self) -> StepBatch:
        """Sample and score this rank's share of the step's prompts, and build the batch
        (advantages and metrics over the global batch). With algo.dynamic_sampling the batch is
        the informative groups of one or more rounds (dynamic_sampling_batch)."""
        if self.cfg.algo.dynamic_sampling:
            return dynamic_sampling_batch(self)
        rnd = self.sample_round()
        batch = self.make_batch(rnd.rollout, rnd.rewards_PG)
        self.last_record = {"indices": rnd.indices}
        if self.cfg.log.rollouts:  # a line of rollouts.jsonl (logs.ROLLOUTS_FORMAT) over the global batch
            local_record = rollout_record(rnd.examples, rnd.local, rnd.rollout, rnd.texts, rnd.local_scores, batch.adv_B)
            self.last_record = merge_records(self.dist.gather_objects(local_record))
        batch.metrics.update({"time/generation": rnd.gen_s, "time/reward": rnd.reward_s, **rnd.scores.metrics()})
        return batch

    def make_batch(self, rollout: Rollout, rewards_PG: torch.Tensor, own_P: torch.Tensor | None = None) -> StepBatch:
        """Advantages from the global rewards_PG; this rank's rows are the groups own_P of it
        (default: its contiguous slice), in that order, as `rollout` holds them."""
        cfg, d = self.cfg, self.dist
        if own_P is None:
            per_rank = rewards_PG.shape[0] // d.world
            own_P = torch.arange(d.rank * per_rank, (d.rank + 1) * per_rank)
        adv_PG = compute_advantages_PG(rewards_PG, cfg.algo.advantage, eps=cfg.algo.adv_eps)
        adv_B = adv_PG[own_P].reshape(-1).to(self.device)
        skip = cfg.algo.skip_zero_advantage and cfg.algo.beta == 0
        rows_B = (adv_B != 0).nonzero().view(-1) if skip else torch.arange(len(adv_B), device=self.device)
        mask_BT, ent = rollout.train_mask_BT, rollout.entropy_BT
        kept_B = rollout.ended_B if cfg.algo.mask_truncated else torch.ones_like(rollout.ended_B)
        rows_B = rows_B[kept_B[rows_B]]  # algo.mask_truncated: truncated rows take no part in the loss
        num_all, num_seqs, all_tokens, num_tokens, len_sum, trunc, ent_sum, in_update = d.sum_floats(
            len(adv_B), float(kept_B.sum()), float(mask_BT.sum()), float((mask_BT * kept_B[:, None]).sum()),
            float(rollout.lengths_B.sum()), float((~rollout.ended_B).sum()),
            float((ent * mask_BT).sum()) if ent is not None else math.nan, len(rows_B))
        judged = rewards_PG.reshape(-1)[~rewards_PG.reshape(-1).isnan()]
        metrics = {
            "reward/total/std": float(judged.std()) if len(judged) > 1 else 0.0,
            "reward/zero_std_share": float(zero_std_P(rewards_PG).float().mean()),
            "completion/length_mean": len_sum / num_all,
            "completion/truncated_share": trunc / num_all,
            "completion/entropy": ent_sum / max(all_tokens, 1),
            "update/seqs": int(in_update),
        }
        return StepBatch(rollout, adv_B, rows_B, num_seqs=max(int(num_seqs), 1), num_tokens=int(num_tokens),
                         metrics=metrics)

    def _micro_batches(self, batch: StepBatch):
        size = self.cfg.train.micro_batch_size
        for start in range(0, len(batch.rows_B), size):
            yield slice(start, start + size)

    @torch.no_grad()
    def _fixed_logprobs(self, batch: StepBatch, fn, model) -> torch.Tensor:
        """Detached per-token log-probs of the update rows, padded to the rollout's width.
        Every rank calls it (a sharded `model` is gathered once), with rows or not."""
        T = batch.rollout.completion_ids_BT.shape[1]
        out = torch.zeros(len(batch.rows_B), T, device=self.device)
        frozen = eval_mode(model) if model is not None else contextlib.nullcontext()
        with self.sharding.gathered(model), eval_mode(self.model), frozen:  # dropout off; train mode comes back
            for sl in self._micro_batches(batch):
                part = batch.rollout.select(batch.rows_B[sl])
                out[sl, : part.completion_ids_BT.shape[1]] = fn(part)
        return out

    def update(self, batch: StepBatch) -> dict:
        a = self.cfg.algo
        t0 = time.perf_counter()
        if a.mu > 1:
            batch.old_logp_BT = self._fixed_logprobs(batch, self.policy_logprobs, self.model)
        if a.beta > 0:
            batch.ref_logp_BT = self._fixed_logprobs(batch, self.reference.logprobs, self.reference.model)
        stats = {}
        # With mu > 1 each pass's ratio compares against the fixed old log-probs, taken without
        # dropout: the passes run without it too, so unchanged weights give a ratio of exactly 1.
        with dropout_off(self.model) if a.mu > 1 else contextlib.nullcontext():
            for _ in range(a.mu):
                stats = self._one_pass(batch)
        stats["update/lr"] = self.scheduler.get_last_lr()[0]
        stats["time/update"] = time.perf_counter() - t0
        if a.beta == 0:
            stats.pop("update/kl")
        return stats

    def _one_pass(self, batch: StepBatch) -> dict:
        self.optimizer.zero_grad(set_to_none=True)
        stats = self.accumulate_gradients(batch)
        stats["update/grad_norm"] = self._optimizer_step()
        return stats

    def accumulate_gradients(self, batch: StepBatch) -> dict:
        """Backward over this rank's rows in micro-batches, then sum gradients over ranks (a
        sharded model's backward reduce-scatters them itself: every rank runs as many passes).

        Losses are normalised by the global batch's counts, so the summed gradient equals the
        single-process gradient of the whole batch, for every aggregation. `update/clipped_share`
        is the share of update tokens the objective's own clip acted on (algo/losses.py)."""
        self.model.train()
        totals = [0.0, 0.0, 0.0, 0.0]  # loss, KL summed over tokens, clipped tokens, tokens
        slices = list(self._micro_batches(batch))
        extra = passes_to_match(self.model, self.dist, len(slices))  # agreed on before any pass runs
        for sl in slices:
            totals = [x + y for x, y in zip(totals, self._micro_batch_backward(batch, sl))]
        for _ in range(extra):
            self._zero_weighted_pass(batch)
        if not is_sharded(self.model):
            self.dist.all_reduce_grads_([p for g in self.optimizer.param_groups for p in g["params"]])
        loss, kl, clipped, counted = self.dist.sum_floats(*totals)
        return {"update/loss": loss, "update/kl": kl / max(counted, 1), "update/clipped_share": clipped / max(counted, 1)}

    def _micro_batch_backward(self, batch: StepBatch, sl: slice) -> tuple[float, float, float, float]:
        """Forward and backward of the update rows batch.rows_B[sl]: (loss, KL summed over tokens,
        clipped tokens, tokens)."""
        a = self.cfg.algo
        part = batch.rollout.select(batch.rows_B[sl])
        T = part.completion_ids_BT.shape[1]
        logp_BT = self.policy_logprobs(part)
        old_BT = logp_BT.detach() if batch.old_logp_BT is None else batch.old_logp_BT[sl, :T]
        ref_BT = None if batch.ref_logp_BT is None else batch.ref_logp_BT[sl, :T]
        mask_BT = part.train_mask_BT  # the sampled tokens (tool results of a multi-turn episode excluded)
        terms = per_token_loss_BT(
            logp_BT, old_BT, batch.adv_B[batch.rows_B[sl]], mask_BT, objective=a.objective,
            eps_low=a.eps_low, eps_high=a.eps_high, beta=a.beta, ref_logp_BT=ref_BT, kl_estimator=a.kl_estimator)
        loss = aggregate(terms.loss_BT, mask_BT, a.aggregation, num_seqs=batch.num_seqs,
                         num_tokens=batch.num_tokens, max_len=self.cfg.rollout.max_new_tokens)
        loss.backward()
        kl = float((terms.kl_BT.detach() * mask_BT).sum()) if terms.kl_BT is not None else 0.0
        return float(loss.detach()), kl, float((terms.clipped_BT * mask_BT).sum()), float(mask_BT.sum())

    def _zero_weighted_pass(self, batch: StepBatch) -> None:
        """Forward/backward of one row with weight 0: joins the busier ranks' collectives and adds
        nothing to the gradient."""
        source = batch.rollout if len(batch.rollout.lengths_B) else batch.spare
        part = source.select(torch.zeros(1, dtype=torch.long, device=self.device))
        (self.policy_logprobs(part).sum() * 0.0).backward()

    def clip_gradients(self) -> torch.Tensor:
        """Clip to train.max_grad_norm by the global norm (sharded gradients included); the norm."""
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        max_norm = self.cfg.train.max_grad_norm
        return full_norm(torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf")))

    def _optimizer_step(self) -> float:
        norm = self.clip_gradients()
        if torch.isfinite(norm):
            self.nonfinite_in_a_row = 0
            self.optimizer.step()
        else:  # skip the update, keep the schedule moving; counted and reported
            self.optimizer.zero_grad(set_to_none=True)
            self.nonfinite_in_a_row += 1
            self.nonfinite_total += 1
        self.scheduler.step()
        return float(norm)

    def step(self) -> dict:
        """One GRPO step; its log row (global batch; the prompt order's stats included)."""
        batch = self.rollout_and_score()
        stats = self.update(batch)
        self.step_idx += 1
        stats["update/nonfinite_steps"] = self.nonfinite_total
        episodes = episode_metrics(batch.rollout, self.dist) if self.env is not None else {}  # of the episodes trained on
        return {"step": self.step_idx, **stats, **batch.metrics, **episodes, **self.prompt_order.stats()}

    def state_dict(self) -> dict:
        """JSON-able loop state (model and optimiser tensors are saved by checkpoint.py)."""
        sched = {k: v for k, v in self.scheduler.state_dict().items() if k != "lr_lambdas"}
        return {"step": self.step_idx, "nonfinite_in_a_row": self.nonfinite_in_a_row,
                "nonfinite_total": self.nonfinite_total, "prompt_order": self.prompt_order.state_dict(),
                "scheduler": sched, "groups_skipped": self.groups_skipped}

    def load_state_dict(self, state: dict) -> None:
        self.step_idx = state["step"]
        self.nonfinite_in_a_row, self.nonfinite_total = state["nonfinite_in_a_row"], state["nonfinite_total"]
        self.groups_skipped = state.get("groups_skipped", 0)  # absent from checkpoints before dynamic sampling
        self.prompt_order.load_state_dict(state["prompt_order"])
        self.scheduler.load_state_dict({**state["scheduler"], "lr_lambdas": [None] * len(self.optimizer.param_groups)})
