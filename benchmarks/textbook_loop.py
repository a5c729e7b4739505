"""The textbook GRPO loop (the seed recipe grpokit grew from), written plainly, for bench_grpo.py.

Per prompt: G sequential `model.generate` calls of one sample each; decode to text; reward; skip
the group when all rewards are equal; otherwise, per completion, tokenize prompt text +
completion text again and run one forward over it, summing the completion tokens' log-probs;
loss = -(1/G) sum_i A_i sum_t log pi(o_i,t) with A_i = r_i - mean(r) (group-mean baseline,
sequence-sum). Its well-known bug, computing those log-probs under torch.no_grad() so nothing
trains (docs/design.md, pitfall 1), is fixed: the forward runs with gradients. One AdamW step per step.

Its other pitfalls are kept, since they are what a user of the textbook loop runs: completions
are re-tokenized from text (pitfall 2; the EOS is lost to skip_special_tokens) and the forward
computes the full-vocabulary logits at every position of every sequence.
"""

from __future__ import annotations

import time

import torch

from benchmarks import flops
from benchmarks.workloads import WORKLOADS, examples, load, task_reward


def prompt_text(tok, example: dict) -> str:
    return tok.apply_chat_template([{"role": "user", "content": example["prompt"]}], add_generation_prompt=True,
                                   tokenize=False)


class TextbookLoop:
    def __init__(self, workload: str, seed: int = 0):
        torch.manual_seed(seed)
        self.w = WORKLOADS[workload]
        self.model, self.tok = load(workload)
        self.examples = examples(workload)
        self.reward = task_reward(workload)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=self.w.lr, betas=(0.9, 0.99), weight_decay=0.0)
        self.position = 0
        self.shape = flops.ModelShape.from_config(self.model.config)

    def sample(self, text: str) -> list[int]:
        enc = self.tok(text, return_tensors="pt", add_special_tokens=False)
        out = self.model.generate(**enc, do_sample=True, temperature=self.w.temperature, top_p=self.w.top_p, top_k=0,
                                  max_new_tokens=self.w.max_new_tokens, min_new_tokens=self.w.min_new_tokens,
                                  pad_token_id=self.tok.pad_token_id, eos_token_id=self.tok.eos_token_id)
        return out[0, enc["input_ids"].shape[1]:].tolist()

    def sequence_logprob(self, text: str, response: str) -> torch.Tensor:
        """Sum of log pi over the response's tokens, from one forward over the re-tokenized text."""
        n_prompt = len(self.tok(text, add_special_tokens=False)["input_ids"])
        ids = self.tok(text + response, return_tensors="pt", add_special_tokens=False)["input_ids"]
        logits = self.model(input_ids=ids).logits[0, :-1] / self.w.temperature
        logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[0, 1:, None]).squeeze(-1)
        return logp[n_prompt - 1:].sum()

    def seek(self, step: int) -> None:
        """The next step samples for the prompts of step `step` (in the shared fixed order)."""
        self.position = step * self.w.prompts_per_step

    def step(self) -> dict:
        G = self.w.group_size
        batch = [self.examples[(self.position + i) % len(self.examples)] for i in range(self.w.prompts_per_step)]
        self.position += len(batch)
        t0, c0 = time.perf_counter(), time.process_time()
        gen_s = reward_s = 0.0
        lengths, rewards, prompt_len, rows = [], [], [], 0
        self.opt.zero_grad(set_to_none=True)
        for ex in batch:
            text = prompt_text(self.tok, ex)
            prompt_len.append(len(self.tok(text, add_special_tokens=False)["input_ids"]))
            g0 = time.perf_counter()
            self.model.eval()
            samples = [self.sample(text) for _ in range(G)]
            self.model.train()
            g1 = time.perf_counter()
            responses = [self.tok.decode(s, skip_special_tokens=True) for s in samples]
            r = [self.reward(resp, ex) for resp in responses]
            reward_s += time.perf_counter() - g1
            gen_s += g1 - g0
            lengths += [_length(s, self.tok.eos_token_id) for s in samples]
            rewards += r
            if all(x == r[0] for x in r):
                continue  # no learning signal in this group
            mean = sum(r) / G
            for resp, ri in zip(responses, r):
                loss = -(ri - mean) * self.sequence_logprob(text, resp) / G
                loss.backward()
                rows += 1
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        step_s = time.perf_counter() - t0
        rec = flops.step_record(self.shape, {"lengths": lengths, "rewards": rewards, "prompt_len": prompt_len,
                                             "rows_updated": rows}, G, step_s, gen_s, reward_s)
        return {**rec, "cpu_s": time.process_time() - c0}


def _length(sample: list[int], eos_id: int) -> int:
    """Tokens generated, EOS counted."""
    return sample.index(eos_id) + 1 if eos_id in sample else len(sample)
