"""Datasets -> prompt records, and the order in which training visits them."""

from __future__ import annotations

import random


def example_prompt_ids(tokenizer, example: dict) -> list[int]:
    """Chat-templated prompt ids of an example, tokenized once and cached on the record.

    Tokenizing once matters: templating to text and tokenizing again can add a second BOS
    (DESIGN pitfall 3)."""
    if "prompt_ids" not in example:
        messages = []
        if example.get("system"):
            messages.append({"role": "system", "content": example["system"]})
        messages.append({"role": "user", "content": example["prompt"]})
        out = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        example["prompt_ids"] = list(out["input_ids"] if hasattr(out, "keys") else out)
    return example["prompt_ids"]


class PromptSampler:
    """Visits training examples in a seeded shuffled order, epoch after epoch.

    Its whole state is (seed, epoch, position), so a resumed run continues the same order."""

    def __init__(self, n: int, seed: int):
        if n <= 0:
            raise ValueError("the training set is empty")
        self.n, self.seed, self.epoch, self.position = n, seed, 0, 0
        self._order = self._make_order()

    def _make_order(self) -> list[int]:
        order = list(range(self.n))
        random.Random(f"{self.seed}:{self.epoch}").shuffle(order)
        return order

    def next_indices(self, k: int) -> list[int]:
        out = []
        while len(out) < k:
            if self.position == self.n:
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self._make_order()
            out.append(self._order[self.position])
            self.position += 1
        return out

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.epoch, self.position = state["seed"], state["epoch"], state["position"]
        self._order = self._make_order()


def load_examples(cfg, tokenizer) -> tuple[list[dict], list[dict]]:
    """(train examples, held-out eval examples) for the configured source."""
    if cfg.source == "arithmetic":
        from grpokit.tasks.arithmetic import ArithmeticSpec, split_problems

        splits = split_problems(ArithmeticSpec(), eval_size=cfg.eval_size)
        return splits["train"], splits["eval"]
    raise ValueError(f"data.source: unknown source {cfg.source!r} (choices: arithmetic)")
