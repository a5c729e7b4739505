"""grpokit's side of bench_grpo.py: Trainer.step() on a workload, timed step by step.

"default" is grpokit as `grpokit train` runs it: its defaults, no switch set here. Each other
variant forces one optimisation off, to show its gain: a config field where the choice is the
user's (train.keep_freed_memory, algo.skip_zero_advantage), otherwise the slower path that
grpokit's internal arguments select (generate's decoder= and share_prefill=, policy_logprobs_BT's
fused_head= and share_prompt=), or plain code substituted for grpokit's (multinomial sampling,
logits at every position, untrimmed padding). The thread count is the driver's business:
bench_grpo.py sets it per worker.
"""

from __future__ import annotations

import functools
import time

import torch

from benchmarks import flops
from benchmarks.workloads import WORKLOADS, examples, load, reward_spec


def _wrap(module, name: str, **kwargs):
    """A patch: module.name called with these keyword arguments added."""
    return lambda: setattr(module, name, functools.partial(getattr(module, name), **kwargs))


def _trainer():
    import grpokit.train.trainer

    return grpokit.train.trainer


def _all_position_logits(model, rollout):
    """The plain way: logits at every position, then keep the completion's."""
    from grpokit.rollout.generate import positions_from_mask

    T = rollout.completion_ids_BT.shape[1]
    ids_BS = torch.cat([rollout.prompt_ids_BL, rollout.completion_ids_BT], dim=1)
    mask_BS = torch.cat([rollout.prompt_mask_BL, rollout.completion_mask_BT.long()], dim=1)
    logits = model(input_ids=ids_BS, attention_mask=mask_BS, position_ids=positions_from_mask(mask_BS)).logits
    return logits[:, -T - 1 : -1]


def _select_untrimmed(self, rows_B):
    from grpokit.rollout.generate import Rollout

    ent = None if self.entropy_BT is None else self.entropy_BT[rows_B]
    return Rollout(self.prompt_ids_BL[rows_B], self.prompt_mask_BL[rows_B], self.completion_ids_BT[rows_B],
                   self.lengths_B[rows_B], self.ended_B[rows_B], 1, ent)


def _multinomial_next_B(logits_BV, *, temperature, top_k, top_p, generator):
    """torch.multinomial on the filtered softmax, entropy and the token's log-prob each in a pass
    of their own: the usual way."""
    from grpokit.algo.logprobs import entropy_BT, token_logprobs_BT
    from grpokit.algo.sampling import filter_logits_BV

    if temperature == 0.0:
        return logits_BV.argmax(-1), None, None
    z_BV = logits_BV.float() / temperature
    probs_BV = torch.softmax(filter_logits_BV(z_BV, top_k=top_k, top_p=top_p), dim=-1)
    tok_B = torch.multinomial(probs_BV, 1, generator=generator).squeeze(-1)
    return tok_B, entropy_BT(z_BV[:, None])[:, 0], token_logprobs_BT(z_BV[:, None], tok_B[:, None])[:, 0]


def _patch_full_logits():
    import grpokit.policy.forward

    _wrap(_trainer(), "policy_logprobs_BT", fused_head=False, share_prompt=False)()
    grpokit.policy.forward.completion_logits_BTV = _all_position_logits


def _patch_no_trim():
    import grpokit.rollout.generate

    grpokit.rollout.generate.Rollout.select = _select_untrimmed


def _patch_multinomial():
    import grpokit.rollout.generate

    grpokit.rollout.generate.sample_next_B = _multinomial_next_B


def _patch_model_decoder():
    from grpokit.rollout.decoders import ModelDecoder

    _wrap(_trainer(), "generate", decoder=ModelDecoder)()


# name -> (config overrides, patch to apply or None, what is turned off)
VARIANTS = {
    "default": ({}, None, "grpokit's defaults"),
    "no_shared_prefill": ({}, lambda: _wrap(_trainer(), "generate", share_prefill=False)(),
                          "prefill every sample's prompt, not once per group"),
    "no_lean_decode": ({}, _patch_model_decoder,
                       "decode through the model's own forward (its KV cache holds each prompt G times)"),
    "no_keep_freed_memory": ({"train.keep_freed_memory": False}, None,
                             "glibc returns freed blocks to the OS; large tensors are page-faulted in every step"),
    "multinomial": ({}, _patch_multinomial,
                    "torch.multinomial (an exponential per vocabulary entry) instead of one uniform per row"),
    "no_skip_zero_adv": ({"algo.skip_zero_advantage": False}, None,
                         "forward/backward also on rows whose advantage is 0"),
    "no_fused_logprobs": ({}, lambda: _wrap(_trainer(), "policy_logprobs_BT", fused_head=False)(),
                          "logits of the micro-batch built, then chunked log-softmax by autograd"),
    "no_share_prompt": ({}, lambda: _wrap(_trainer(), "policy_logprobs_BT", share_prompt=False)(),
                        "update runs each row's prompt, not once per group"),
    "full_logits": ({"train.logprob_chunk": 1 << 30}, _patch_full_logits,
                    "logits at every position (no logits_to_keep), one log-softmax for the whole micro-batch"),
    "no_trim": ({}, _patch_no_trim, "micro-batches keep padding columns every row has"),
}


class SequentialOrder:
    """Prompts in a fixed order shared with the other systems (grpokit's own prompt order
    shuffles): file order for n prompts, or the given list of indices, cycled."""

    def __init__(self, order: int | list[int]):
        self.indices = list(range(order)) if isinstance(order, int) else list(order)
        self.position = 0

    def next_indices(self, k: int) -> list[int]:
        out = [self.indices[(self.position + i) % len(self.indices)] for i in range(k)]
        self.position += k
        return out

    def record(self, indices, rewards_PG) -> None:
        pass

    def stats(self) -> dict:
        return {}

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.position = state["position"]


def make_config(workload: str, overrides: dict):
    from grpokit.config import Config, validate

    w = WORKLOADS[workload]
    cfg = Config()
    r, t = cfg.rollout, cfg.train
    r.prompts_per_step, r.group_size = w.prompts_per_step, w.group_size
    r.max_new_tokens, r.min_new_tokens, r.temperature, r.top_p = w.max_new_tokens, w.min_new_tokens, w.temperature, w.top_p
    t.lr, t.warmup_steps, t.min_lr_ratio, t.micro_batch_size, t.steps = w.lr, 0, 1.0, 64, 10_000
    cfg.reward.names, cfg.reward.weights = [reward_spec(workload)], [1.0]
    for key, value in overrides.items():
        section, name = key.split(".")
        setattr(getattr(cfg, section), name, value)
    return validate(cfg)


class GrpokitSession:
    def __init__(self, workload: str, variant: str = "default", seed: int = 0):
        from grpokit.cli.main import apply_process_settings
        from grpokit.rewards import RewardScorer
        from grpokit.train.trainer import Trainer

        overrides, patch, _ = VARIANTS[variant]
        if patch is not None:
            patch()
        cfg = make_config(workload, overrides)
        cfg.train.seed = seed
        apply_process_settings(cfg, log=lambda *a: None)  # as `grpokit train` does at its start
        torch.manual_seed(seed)
        model, tok = load(workload)
        exs = examples(workload)
        scorer = RewardScorer(cfg.reward.names, cfg.reward.weights)
        self.trainer = Trainer(cfg, model, tok, exs, scorer, prompt_order=SequentialOrder(len(exs)))
        self.batches = []
        update = self.trainer.update
        self.trainer.update = lambda batch: (self.batches.append(batch), update(batch))[1]
        self.shape = flops.ModelShape.from_config(model.config)

    def seek(self, step: int) -> None:
        """The next step samples for the prompts of step `step` (in the shared fixed order)."""
        self.trainer.prompt_order.position = step * self.trainer.cfg.rollout.prompts_per_step

    def step(self) -> dict:
        t0, c0 = time.perf_counter(), time.process_time()
        out = self.trainer.step()
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        batch = self.batches.pop()
        ro, adv_B = batch.rollout, batch.adv_B
        G = ro.group_size
        prompt_len_P = ro.prompt_mask_BL.sum(-1).tolist()[::G]
        lengths_B = ro.lengths_B.tolist()
        need = flops.step_flops(self.shape, prompt_len_P, lengths_B, G, (adv_B != 0).tolist())
        zero_groups = sum(not bool(adv_B[i : i + G].any()) for i in range(0, len(adv_B), G))
        return {"step_s": dt, "cpu_s": cpu, "gen_s": out["time/generation"], "reward_s": out["time/reward"],
                "update_s": out["time/update"], "completions": len(lengths_B), "gen_tokens": int(sum(lengths_B)),
                "rows_updated": len(batch.rows_B), "zero_std_groups": zero_groups,
                "gen_flops": need["gen"], "update_flops": need["update"]}
