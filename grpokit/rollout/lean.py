"""A lean decode step for Llama-family decoders, with each group's prompt attended once.

`rollout.generate` uses it by default (rollout/decoders.py, choose_decoder) unless
`why_not_lean(model, ...)` finds something against the model: any architecture but llama /
qwen2 / qwen3 / mistral, a PEFT adapter, a quantized or sharded layer, a sliding window shorter
than the generation, an activation other than SiLU all send generation through the model's own
forward instead, with the reason logged once.

What it saves, per decode step, against the Hugging Face forward with a KV cache:
* the prompt's keys and values are kept once per prompt, not G times, and each prompt's G query
  rows attend to them in one matrix product: the cache read per step shrinks from G x (prompt +
  completion) to prompt + G x completion;
* no attention mask is built (finished rows are replaced by padding by the caller, and a row
  never attends to another row's tokens, so their values cannot leak);
* rotary cos/sin for every step are computed once, and the per-layer Python is a dozen tensor
  operations, not the generic layer's hundred-odd with its cache and mask bookkeeping;
* the LM head reads a transposed copy of its weight made once per generation (V x E more
  memory while generating), on which the BLAS runs the few-row product faster.

The math is the model's: the same weights, norms (the module itself where its dtype is not
float32), rotary embedding (the model's own `rotary_emb`) and softmax attention; results equal
the model's forward to float rounding (tests/test_lean_decode.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SUPPORTED = ("llama", "qwen2", "qwen3", "mistral")


def why_not_lean(model, total_len: int) -> str | None:
    """None when LeanDecoder can run `model` for sequences of up to total_len positions, else why not."""
    config = getattr(model, "config", None)
    kind = getattr(config, "model_type", None)
    if kind not in SUPPORTED:
        return f"model type {kind!r} (supported: {', '.join(SUPPORTED)})"
    base = getattr(model, "model", None)
    if base is None or not hasattr(base, "layers") or not isinstance(getattr(model, "lm_head", None), torch.nn.Linear):
        return "not a plain *ForCausalLM (a PEFT wrapper?)"
    if getattr(config, "hidden_act", "silu") != "silu" or getattr(config, "pretraining_tp", 1) != 1:
        return "activation other than silu, or pretraining_tp > 1"
    linears = [model.lm_head]
    for layer in base.layers:
        a = layer.self_attn
        window = a.sliding_window if hasattr(a, "sliding_window") else getattr(config, "sliding_window", None)
        if window is not None and window < total_len:
            return f"sliding window {window} < {total_len} positions"
        linears += [a.q_proj, a.k_proj, a.v_proj, a.o_proj, layer.mlp.gate_proj, layer.mlp.up_proj, layer.mlp.down_proj]
    for m in linears:
        if type(m) is not torch.nn.Linear or type(m.weight) is not torch.nn.Parameter:
            return f"{type(m).__name__} layer with {type(m.weight).__name__} weights (adapter, quantized or sharded)"
    return None


def _norm(module, x: torch.Tensor) -> torch.Tensor:
    """The model's RMSNorm; fused for float32 (same formula, one kernel)."""
    if x.dtype == torch.float32 and module.weight.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), module.weight, module.variance_epsilon)
    return module(x)


def _linear(module: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, module.weight, module.bias)  # no module call: its hook machinery costs per token


class LeanDecoder:
    """Decode state for P prompts x G samples: rows b = p * G + g, like every [B, ...] tensor.
    Implements rollout.decoders.Decoder; the constructor is its DecoderFactory."""

    def __init__(self, model, ids_PL, mask_PL, positions_PL, group_size: int, max_new_tokens: int):
        base, config = model.model, model.config
        self.model, self.base, self.G = model, base, group_size
        out = base(input_ids=ids_PL, attention_mask=mask_PL, position_ids=positions_PL, use_cache=True)
        self.P, self.L = ids_PL.shape
        self.B = self.P * group_size
        self.h_BE = out.last_hidden_state[:, -1].repeat_interleave(group_size, 0)  # after the final norm
        cache = out.cache
        # prompt keys/values once per prompt [P, Hkv, L, D]; completion ones per row [B, Hkv, T, D]
        self.prompt_kv = [(layer.keys, layer.values) for layer in cache.layers]
        k0 = self.prompt_kv[0][0]
        self.Hkv, self.D = k0.shape[1], k0.shape[-1]
        self.H = config.num_attention_heads
        self.comp_kv = [(k0.new_empty(self.B, self.Hkv, max_new_tokens, self.D),
                         k0.new_empty(self.B, self.Hkv, max_new_tokens, self.D)) for _ in self.prompt_kv]
        # rotary cos/sin for every position a completion token will take: [B, T, D]
        next_B = (positions_PL[:, -1] + 1).repeat_interleave(group_size)
        pos_BT = next_B[:, None] + torch.arange(max_new_tokens, device=ids_PL.device)
        cos_BTD, sin_BTD = base.rotary_emb(self.h_BE[:, None], pos_BT)
        # rotate_half(x) = x[perm] * sign, so x*cos + rotate_half(x)*sin = x*cos + x[perm] * (sign*sin);
        # the queries' tables also carry the attention scale (one multiply fewer per layer)
        half = self.D // 2
        self.perm_D = torch.cat([torch.arange(half, self.D), torch.arange(half)]).to(ids_PL.device)
        sign_D = torch.cat([-torch.ones(half), torch.ones(self.D - half)]).to(cos_BTD)
        self.k_rope = (cos_BTD, sin_BTD * sign_D)
        scaling = base.layers[0].self_attn.scaling
        self.q_rope = (cos_BTD * scaling, sin_BTD * sign_D * scaling)
        # 0 / -inf over the prompt's padding, per (prompt, key head): [P*Hkv, 1, L]
        mask_PL1 = torch.zeros(self.P, self.L, dtype=self.h_BE.dtype, device=ids_PL.device).masked_fill(
            mask_PL == 0, float("-inf"))
        self.mask_N1L = mask_PL1[:, None, None, :].expand(-1, self.Hkv, 1, -1).reshape(self.P * self.Hkv, 1, self.L)
        # the LM head's weight transposed once, [E, V] contiguous, for this generation only: with
        # few rows, [B, E] @ [E, V] runs ~1.3x faster than F.linear on the [V, E] weight (the
        # BLAS repacks the whole weight on every call then), and it is most of a decode step
        head = model.lm_head
        self.head_EV, self.head_bias_V = head.weight.detach().t().contiguous(), head.bias
        self.t = 0  # completion tokens fed so far

    def logits_BV(self) -> torch.Tensor:
        if self.head_bias_V is None:
            return self.h_BE @ self.head_EV
        return torch.addmm(self.head_bias_V, self.h_BE, self.head_EV)

    def feed(self, tok_B: torch.Tensor, finished_B: torch.Tensor | None = None) -> None:
        """Run the decoder on one token per row (the token at completion position self.t). Rows
        already finished need no mask: their outputs are discarded and no other row reads them."""
        x_BE = self.base.embed_tokens(tok_B)
        t = self.t
        (qc_B1D, qs_B1D), (kc_B1D, ks_B1D) = [(c[:, t, None], s[:, t, None]) for c, s in (self.q_rope, self.k_rope)]
        for layer, (kp, vp), (kc, vc) in zip(self.base.layers, self.prompt_kv, self.comp_kv):
            a = layer.self_attn
            h_BE = _norm(layer.input_layernorm, x_BE)
            q_BHD = _linear(a.q_proj, h_BE).view(self.B, self.H, self.D)
            k_BKD = _linear(a.k_proj, h_BE).view(self.B, self.Hkv, self.D)
            if hasattr(a, "q_norm"):  # qwen3
                q_BHD, k_BKD = a.q_norm(q_BHD), a.k_norm(k_BKD)
            q_BHD = torch.addcmul(q_BHD * qc_B1D, q_BHD[..., self.perm_D], qs_B1D)  # scaled by a.scaling
            torch.addcmul(k_BKD * kc_B1D, k_BKD[..., self.perm_D], ks_B1D, out=kc[:, :, t])
            vc[:, :, t] = _linear(a.v_proj, h_BE).view(self.B, self.Hkv, self.D)
            o_BE = self._attend(q_BHD, kp, vp, kc[:, :, : t + 1], vc[:, :, : t + 1])
            x_BE = x_BE + _linear(a.o_proj, o_BE)
            h_BE = _norm(layer.post_attention_layernorm, x_BE)
            m = layer.mlp
            x_BE = x_BE + _linear(m.down_proj, F.silu(_linear(m.gate_proj, h_BE)) * _linear(m.up_proj, h_BE))
        self.h_BE = _norm(self.base.norm, x_BE)
        self.t += 1

    def _attend(self, q_BHD, kp_PKLD, vp_PKLD, kc_BKTD, vc_BKTD) -> torch.Tensor:
        """Softmax attention of each row's (pre-scaled) query over its prompt (shared by the group)
        and its own completion so far. Heads: H = Hkv * r, query head h reads key/value head h // r."""
        P, G, K, D, L = self.P, self.G, self.Hkv, self.D, self.L
        r = self.H // K
        # prompt part: the group's G*r queries per (prompt, key head) in one product [P*K, G*r, L]
        q_NQD = q_BHD.view(P, G, K, r, D).transpose(1, 2).reshape(P * K, G * r, D)
        sp_NQL = torch.baddbmm(self.mask_N1L, q_NQD, kp_PKLD.reshape(P * K, L, D).transpose(1, 2))
        sp_BKrL = sp_NQL.view(P, K, G, r, L).transpose(1, 2).reshape(self.B, K, r, L)
        sc_BKrT = torch.matmul(q_BHD.view(self.B, K, r, D), kc_BKTD.transpose(-1, -2))
        w_BKrS = torch.softmax(torch.cat([sp_BKrL, sc_BKrT], dim=-1), dim=-1)
        wp_PKQL = w_BKrS[..., :L].reshape(P, G, K, r, L).transpose(1, 2).reshape(P, K, G * r, L)
        op_BE = torch.matmul(wp_PKQL, vp_PKLD).view(P, K, G, r, D).transpose(1, 2).reshape(self.B, self.H * D)
        oc_BE = torch.matmul(w_BKrS[..., L:], vc_BKTD).reshape(self.B, self.H * D)
        return op_BE + oc_BE
