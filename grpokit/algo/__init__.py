"""Pure tensor math for GRPO: no model, no I/O, no torch.distributed.

Shape letters used in names throughout grpokit:
    P prompts in a step, G completions per prompt (the group), B = P*G sequences,
    T completion tokens (padded), L prompt tokens (padded), V vocabulary size.
"""

from grpokit.algo.advantages import ADVANTAGES, compute_advantages_PG
from grpokit.algo.aggregate import AGGREGATIONS, aggregate
from grpokit.algo.logprobs import completion_mask_BT, entropy_BT, token_logprobs_BT
from grpokit.algo.losses import KL_ESTIMATORS, OBJECTIVES, kl_BT, per_token_loss_BT
from grpokit.algo.sampling import sample_next_B

__all__ = [
    "ADVANTAGES",
    "AGGREGATIONS",
    "KL_ESTIMATORS",
    "OBJECTIVES",
    "aggregate",
    "completion_mask_BT",
    "compute_advantages_PG",
    "entropy_BT",
    "kl_BT",
    "per_token_loss_BT",
    "sample_next_B",
    "token_logprobs_BT",
]
