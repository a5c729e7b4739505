"""A lean decode step for Llama-family decoders, with each group's prompt attended once.

`rollout.generate` uses it by default (rollout/decoders.py, choose_decoder) unless
`why_not_lean(model, ...)` finds something against the model: any architecture but llama /
qwen2 / qwen3 / mistral, a quantized or sharded layer, a PEFT adapter other than plain LoRA
(DoRA and other LoRA variants, prompt tuning, ...), a sliding window shorter than the
generation, an activation other than SiLU all send generation through the model's own forward
instead, with the reason logged once. A plain LoRA adapter (peft's LoraModel, `model.mode=lora`)
runs here: each adapted projection is base(x) + scaling * B(A(x)) per active adapter, as peft
computes it in eval mode (no dropout).

What it saves, per decode step, against the Hugging Face forward with a KV cache:
* the prompt's keys and values are kept once per prompt, not G times, and each prompt's G query
  rows attend to them in one matrix product: the cache read per step shrinks from G x (prompt +
  completion) to prompt + G x completion;
* no attention mask is built (finished rows are replaced by padding by the caller, and a row
  never attends to another row's tokens, so their values cannot leak);
* rotary cos/sin for every step are computed once, and the per-layer Python is a dozen tensor
  operations, not the generic layer's hundred-odd with its cache and mask bookkeeping;
* on a CPU, the LM head and every projection of at least PACK_MIN_ELEMENTS weights multiply by
  oneDNN's pre-packed copy of their float32 weight, packed once per generation (as much memory
  again as those weights while generating): with a decode step's few rows that runs the head
  ~2x faster than F.linear.

The math is the model's: the same weights, norms (the module itself where its dtype is not
float32), rotary embedding (the model's own `rotary_emb`) and softmax attention; results equal
the model's forward to float rounding (tests/test_lean_decode.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from grpokit.rollout.fallback import note_fallback

SUPPORTED = ("llama", "qwen2", "qwen3", "mistral")


def causal_lm(model):
    """The transformers *ForCausalLM: the model itself, or the one inside a PEFT wrapper."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _plain_linear(m) -> bool:
    return type(m) is torch.nn.Linear and type(m.weight) is torch.nn.Parameter


def _is_lora_linear(m) -> bool:
    return type(m).__module__.startswith("peft.tuners.lora") and type(m).__name__ == "Linear"


def _why_not_projection(m) -> str | None:
    """None when a projection is a plain nn.Linear, or peft's LoRA Linear over one whose active
    adapters are plain LoRA; else why LeanDecoder cannot compute it."""
    if _plain_linear(m):
        return None
    if _is_lora_linear(m):
        if not _plain_linear(m.base_layer):
            return f"LoRA over a {type(m.base_layer).__name__} layer with {type(m.base_layer.weight).__name__} weights (quantized?)"
        variants = [a for a in m.active_adapters if a in m.lora_variant]
        if variants:
            return f"LoRA adapter {variants[0]!r} is a {type(m.lora_variant[variants[0]]).__name__} (DoRA?), not plain LoRA"
        return None
    return f"{type(m).__name__} layer with {type(m.weight).__name__} weights (adapter, quantized or sharded)"


def _projections(layer) -> tuple:
    """A decoder layer's linear projections, in the order LeanDecoder uses them: q, k, v, o,
    gate, up, down."""
    a, m = layer.self_attn, layer.mlp
    return a.q_proj, a.k_proj, a.v_proj, a.o_proj, m.gate_proj, m.up_proj, m.down_proj


def why_not_lean(model, total_len: int) -> str | None:
    """None when LeanDecoder can run `model` (a *ForCausalLM, or one wrapped by peft with plain
    LoRA adapters) for sequences of up to total_len positions, else why not."""
    if hasattr(model, "get_base_model") and type(getattr(model, "base_model", None)).__name__ != "LoraModel":
        kinds = sorted({str(getattr(c.peft_type, "value", c.peft_type)) for c in model.peft_config.values()})
        return f"a PEFT adapter of type {', '.join(kinds)} (the lean decoder runs plain LoRA only)"
    model = causal_lm(model)
    config = getattr(model, "config", None)
    kind = getattr(config, "model_type", None)
    if kind not in SUPPORTED:
        return f"model type {kind!r} (supported: {', '.join(SUPPORTED)})"
    base = getattr(model, "model", None)
    if base is None or not hasattr(base, "layers") or getattr(model, "lm_head", None) is None:
        return f"{type(model).__name__} is not a plain *ForCausalLM"
    if getattr(config, "hidden_act", "silu") != "silu" or getattr(config, "pretraining_tp", 1) != 1:
        return "activation other than silu, or pretraining_tp > 1"
    linears = [model.lm_head]
    for layer in base.layers:
        a = layer.self_attn
        window = a.sliding_window if hasattr(a, "sliding_window") else getattr(config, "sliding_window", None)
        if window is not None and window < total_len:
            return f"sliding window {window} < {total_len} positions"
        linears += _projections(layer)
    for m in linears:
        reason = _why_not_projection(m)
        if reason is not None:
            return reason
    return None


_PACKED_OK: list[bool] = []  # [whether oneDNN's packed product works here], decided once per process
# Smallest weight (elements) worth packing. Measured on 2 cores with 32-64 rows: packing costs
# >= ~110 us a weight; a 128 x 128 weight then multiplies slower (19 against 11 us), 256 x 256
# no faster, 1024 x 256 ~1.4x faster (94 against 129 us), the 32k x 256 LM head ~2.7x.
PACK_MIN_ELEMENTS = 1 << 18


def _packed_products_work() -> bool:
    """Whether oneDNN's packed-weight product (the op torch.compile uses for CPU linear layers)
    runs in this torch build and equals F.linear on a probe; checked once, the answer logged
    once when it is no."""
    if not _PACKED_OK:
        reason = None
        try:
            g = torch.Generator().manual_seed(0)
            w_OI, x_NI, b_O = (torch.randn(*shape, generator=g) for shape in ((40, 24), (5, 24), (40,)))
            got = torch.ops.mkldnn._linear_pointwise(x_NI, torch.ops.mkldnn._reorder_linear_weight(w_OI, 5), b_O,
                                                     "none", [], "")
            worst = float((got - F.linear(x_NI, w_OI, b_O)).abs().max())
            reason = None if worst <= 1e-5 else f"its product differs from F.linear by {worst:.3g}"
        except (AttributeError, RuntimeError, NotImplementedError) as exc:
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'unavailable'}"
        if reason is not None:
            note_fallback("rollout: the lean decoder multiplies by torch's matmul, not oneDNN's packed weights", reason)
        _PACKED_OK.append(reason is None)
    return _PACKED_OK[0]


def packed_weight(weight_OI: torch.Tensor, rows: int) -> torch.Tensor | None:
    """oneDNN's pre-packed copy of a float32 CPU weight [O, I], for products with about `rows`
    rows (any row count works), or None where it does not run or pay (another device or dtype, a
    build without oneDNN, fewer than PACK_MIN_ELEMENTS elements): then F.linear does. With the
    decoder's few rows, the packed product runs a 32k x 256 LM head ~2x and a 1024 x 256 MLP
    projection ~1.4x faster than F.linear, which re-packs the weight on every call
    (docs/performance.md, "The lean decoder"). Same values to float rounding (another summation
    order)."""
    if (weight_OI.numel() < PACK_MIN_ELEMENTS or weight_OI.device.type != "cpu" or weight_OI.dtype != torch.float32
            or not _packed_products_work()):
        return None
    return torch.ops.mkldnn._reorder_linear_weight(weight_OI.detach(), rows)


class Projection:
    """One linear projection as LeanDecoder computes it: x W^T + b, plus scaling * (x A^T) B^T
    (+ B's bias) for each active LoRA adapter, in peft's order and dtypes (the adapter's input in
    A's dtype, the sum cast back to the base output's dtype). The adapters are read once, when the
    decoder is built: none changes while a generation runs. A merged or disabled adapter adds
    nothing (a merged one is already in W; a disabled one is unmerged first, as peft's forward
    does, which the prefill never runs for the LM head). W is packed for `rows` rows where
    packed_weight can."""

    def __init__(self, module: torch.nn.Module, rows: int):
        lora = _is_lora_linear(module)
        if lora and module.disable_adapters and module.merged:
            module.unmerge()  # as peft's forward does on a disabled layer's next call
        base = module.base_layer if lora else module
        self.weight, self.bias = base.weight, base.bias
        self.packed = packed_weight(self.weight, rows)
        self.adapters = [] if not lora or module.merged or module.disable_adapters else [
            (module.lora_A[a].weight, module.lora_B[a].weight, module.lora_B[a].bias, module.scaling[a])
            for a in module.active_adapters if a in module.lora_A.keys()]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # no module call: its hook machinery costs per token
        if self.packed is None:
            y = F.linear(x, self.weight, self.bias)
        else:
            y = torch.ops.mkldnn._linear_pointwise(x.contiguous(), self.packed, self.bias, "none", [], "")
        if not self.adapters:
            return y
        out = y
        for a_RI, b_OR, b_bias, scaling in self.adapters:
            out = out + F.linear(F.linear(x.to(a_RI.dtype), a_RI), b_OR, b_bias) * scaling
        return out.to(y.dtype)


def _norm(module, x: torch.Tensor) -> torch.Tensor:
    """The model's RMSNorm; fused for float32 (same formula, one kernel)."""
    if x.dtype == torch.float32 and module.weight.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), module.weight, module.variance_epsilon)
    return module(x)


class LeanDecoder:
    """Decode state for P prompts x G samples: rows b = p * G + g, like every [B, ...] tensor.
    Implements rollout.decoders.Decoder; the constructor is its DecoderFactory."""

    def __init__(self, model, ids_PL, mask_PL, positions_PL, group_size: int, max_new_tokens: int):
        model = causal_lm(model)
        base, config = model.model, model.config
        self.base, self.G = base, group_size
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
        # the LM head (most of a decode step) and each layer's projections q, k, v, o, gate, up,
        # down: weights packed and adapters looked up once, for this generation only
        self.head = Projection(model.lm_head, self.B)
        self.proj = [[Projection(m, self.B) for m in _projections(layer)] for layer in base.layers]
        self.t = 0  # completion tokens fed so far

    def logits_BV(self) -> torch.Tensor:
        return self.head(self.h_BE)

    def feed(self, tok_B: torch.Tensor, finished_B: torch.Tensor | None = None) -> None:
        """Run the decoder on one token per row (the token at completion position self.t). Rows
        already finished need no mask: their outputs are discarded and no other row reads them."""
        x_BE = self.base.embed_tokens(tok_B)
        t = self.t
        (qc_B1D, qs_B1D), (kc_B1D, ks_B1D) = [(c[:, t, None], s[:, t, None]) for c, s in (self.q_rope, self.k_rope)]
        for layer, (q, k, v, o, gate, up, down), (kp, vp), (kc, vc) in zip(self.base.layers, self.proj,
                                                                          self.prompt_kv, self.comp_kv):
            a = layer.self_attn
            h_BE = _norm(layer.input_layernorm, x_BE)
            q_BHD = q(h_BE).view(self.B, self.H, self.D)
            k_BKD = k(h_BE).view(self.B, self.Hkv, self.D)
            if hasattr(a, "q_norm"):  # qwen3
                q_BHD, k_BKD = a.q_norm(q_BHD), a.k_norm(k_BKD)
            q_BHD = torch.addcmul(q_BHD * qc_B1D, q_BHD[..., self.perm_D], qs_B1D)  # scaled by a.scaling
            torch.addcmul(k_BKD * kc_B1D, k_BKD[..., self.perm_D], ks_B1D, out=kc[:, :, t])
            vc[:, :, t] = v(h_BE).view(self.B, self.Hkv, self.D)
            o_BE = self._attend(q_BHD, kp, vp, kc[:, :, : t + 1], vc[:, :, : t + 1])
            x_BE = x_BE + o(o_BE)
            h_BE = _norm(layer.post_attention_layernorm, x_BE)
            x_BE = x_BE + down(F.silu(gate(h_BE)) * up(h_BE))
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
