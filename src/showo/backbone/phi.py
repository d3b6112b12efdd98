"""Phi-1.5 as modified by Show-o (spec §5): parallel attention + MLP on one pre-norm, per-head QK LayerNorm
after the head split and before partial rotary embeddings, untied LM head with bias, float32 logits.

Parameter names follow transformers' `PhiForCausalLM` so official Show-o state dicts load unchanged. The
transformers implementation is not reused because Show-o moves the QK LayerNorm after the head split, which
upstream Phi cannot express (see ../shared/reference/environment.md).
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.checkpoint import checkpoint

from ..errors import ConfigError
from ..fields import check_field_types
from .cache import KVCache


@dataclass
class PhiConfig:
    """Backbone hyper-parameters; defaults are microsoft/phi-1_5 resized to Show-o's 58 498-token vocabulary."""

    vocab_size: int = 58498
    hidden_size: int = 2048
    intermediate_size: int = 8192
    num_hidden_layers: int = 24
    num_attention_heads: int = 32
    partial_rotary_factor: float = 0.5
    rope_theta: float = 10000.0
    layer_norm_eps: float = 1e-5
    max_position_embeddings: int = 2048

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def rotary_dim(self) -> int:
        return int(self.partial_rotary_factor * self.head_dim)

    @classmethod
    def from_dict(cls, d: dict) -> "PhiConfig":
        """From our own dict or a transformers Phi `config.json` (unknown keys are ignored)."""
        check_field_types(cls, d, "backbone config")
        names = {f.name for f in fields(cls)}
        cfg = cls(**{k: v for k, v in d.items() if k in names})
        if d.get("num_key_value_heads", cfg.num_attention_heads) != cfg.num_attention_heads:
            raise ConfigError("grouped-query attention is not part of Phi-1.5 / Show-o")
        return cfg

    def __post_init__(self) -> None:  # also a config built in Python (from_dict checks a file's first)
        check_field_types(PhiConfig, vars(self), "backbone config")
        sizes = (self.vocab_size, self.hidden_size, self.intermediate_size, self.num_hidden_layers,
                 self.num_attention_heads, self.max_position_embeddings)
        if min(sizes) < 1 or self.hidden_size % self.num_attention_heads:
            raise ConfigError("backbone config: sizes must be >= 1 and hidden_size a multiple of num_attention_heads, "
                              f"got hidden_size {self.hidden_size}, num_attention_heads {self.num_attention_heads}")
        if self.rope_theta <= 0 or self.layer_norm_eps <= 0 or not 0 < self.partial_rotary_factor <= 1:
            raise ConfigError("backbone config: rope_theta and layer_norm_eps must be > 0 and partial_rotary_factor "
                              "in (0, 1]")

    def to_dict(self) -> dict:
        return asdict(self)


class RotaryEmbedding(nn.Module):
    """GPT-NeoX rotate-half RoPE on the first `dim` channels of each head, cos/sin computed in float32.

    One table serves every layer (they share `dim` and `base`), looked up once per forward. The table covers
    `max_positions` and is built up front, so a forward has no data-dependent branch (torch.compile traces it
    whole); it is a plain attribute, not a buffer, so casting the model never rounds it."""

    def __init__(self, dim: int, base: float, max_positions: int):
        super().__init__()
        cpu = torch.device("cpu")  # explicit: models are often built under a meta-device context
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64, device=cpu).float() / dim))
        freqs = torch.outer(torch.arange(max_positions, dtype=torch.int64, device=cpu).type_as(inv_freq), inv_freq)
        self.table = (freqs.cos(), freqs.sin())

    def cos_sin(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin of shape [B, q, 1, dim / 2] for integer `positions` [B, q] (the two halves of the
        rotate-half table are equal, so one half is kept)."""
        if self.table[0].device != positions.device:
            self.table = tuple(t.to(positions.device) for t in self.table)
        cos, sin = self.table
        return cos[positions].to(dtype).unsqueeze(2), sin[positions].to(dtype).unsqueeze(2)


def apply_partial_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """`x * cos + rotate_half(x) * sin` on the first 2 * cos.shape[-1] channels of x [B, q, H, D]; the rest
    passes through. Written per half (`x1 c - x2 s`, `x2 c + x1 s`): the same float operations as the
    rotate-half form, so the same bits, with one concatenation instead of three copies."""
    half = cos.shape[-1]
    x1, x2, rest = x[..., :half], x[..., half:2 * half], x[..., 2 * half:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin, rest), dim=-1)


class PhiAttention(nn.Module):
    def __init__(self, cfg: PhiConfig):
        super().__init__()
        h, self.heads, self.head_dim = cfg.hidden_size, cfg.num_attention_heads, cfg.head_dim
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(h, h), nn.Linear(h, h), nn.Linear(h, h)
        self.dense = nn.Linear(h, h)
        # Show-o: one LayerNorm over head_dim, shared by all heads, applied after the head split.
        self.q_layernorm = nn.LayerNorm(self.head_dim, eps=cfg.layer_norm_eps)
        self.k_layernorm = nn.LayerNorm(self.head_dim, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, rope: tuple[torch.Tensor, torch.Tensor],
                cache: KVCache | None = None, layer: int = 0, start: int | torch.Tensor = 0) -> torch.Tensor:
        b, q_len, _ = x.shape
        # Norm and rotary work on the contiguous [B, q, H, D] layout; attention takes the [B, H, q, D] view.
        split = lambda t: t.view(b, q_len, self.heads, self.head_dim)  # noqa: E731
        q = apply_partial_rotary(self.q_layernorm(split(self.q_proj(x))), *rope).transpose(1, 2)
        k = apply_partial_rotary(self.k_layernorm(split(self.k_proj(x))), *rope).transpose(1, 2)
        v = split(self.v_proj(x)).transpose(1, 2)
        if cache is not None:
            k, v = cache.update(layer, start, k, v)
        causal = mask is None and q_len > 1
        if causal and k.shape[2] != q_len:
            raise ValueError("a cached forward needs an explicit attention mask")
        # In bf16 the CPU flash kernel's backward is slower than autograd through the unfused math kernel at
        # training shapes (a training step of the embedded model: 0.96 -> 0.80 s), so attention that will be
        # differentiated in low precision runs the math kernel on CPU. Not in float32: there the speed is equal
        # (Phi widths) and the math kernel keeps every layer's attention probabilities for the backward pass
        # (+2.8 GiB of activations for the benchmark's training batch at 24 layers).
        math_kernel = (q.requires_grad and q.device.type == "cpu"
                       and _attention_dtype(q) in MATH_KERNEL_TRAINING_DTYPES)
        if q_len == 1 and mask is not None and q.device.type == "cuda" and not q.requires_grad:
            out = single_query_attention(q, k, v, mask)
        else:
            with sdpa_kernel(SDPBackend.MATH) if math_kernel else nullcontext():
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
        return self.dense(out.transpose(1, 2).reshape(b, q_len, -1))


MATH_KERNEL_TRAINING_DTYPES = (torch.bfloat16, torch.float16)  # see PhiAttention.forward


def single_query_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Attention of one new token per sequence (q [B, H, 1, D]) over the cache, as two batched matrix-vector
    products. The GPU's fused kernels tile 64 queries per block: with one query, a decoded token at Phi-1.5
    size spent about 1 ms of its 3.7 ms of kernel time in them (H200, fp32, 42 us a layer). Scores and softmax
    are float32 whatever the dtype, as in the fused kernels (bf16 scores lost up to 0.47 of an output's scale in
    a check with peaked attention). Unlike them, a row that may see no position gives NaN, not 0: our decoding
    always lets a token see itself."""
    scores = (q.float() @ k.float().transpose(-2, -1)) * q.shape[-1] ** -0.5
    scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    return scores.softmax(dim=-1).to(v.dtype) @ v


def _attention_dtype(q: torch.Tensor) -> torch.dtype:
    """The dtype attention computes in: autocast's when it is on (the QK norms hand it float32 tensors)."""
    device = q.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else q.dtype


class PhiMLP(nn.Module):
    def __init__(self, cfg: PhiConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.fc2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))  # gelu_new


class PhiDecoderLayer(nn.Module):
    """Parallel block: `x + attn(ln(x)) + mlp(ln(x))`."""

    def __init__(self, cfg: PhiConfig):
        super().__init__()
        self.input_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.self_attn = PhiAttention(cfg)
        self.mlp = PhiMLP(cfg)

    def forward(self, x, mask, rope, cache=None, layer=0, start=0):
        h = self.input_layernorm(x)
        return self.self_attn(h, mask, rope, cache, layer, start) + self.mlp(h) + x


class PhiModel(nn.Module):
    def __init__(self, cfg: PhiConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(PhiDecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.final_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.rotary = RotaryEmbedding(cfg.rotary_dim, cfg.rope_theta, cfg.max_position_embeddings)  # not in state dict
        self.gradient_checkpointing = False

    def forward(self, embeds, mask, positions, cache=None, start=0):
        x = embeds
        rope = self.rotary.cos_sin(positions, x.dtype)
        for i, layer in enumerate(self.layers):
            if self.gradient_checkpointing and self.training and cache is None:
                x = checkpoint(layer, x, mask, rope, use_reentrant=False)
            else:
                x = layer(x, mask, rope, cache, i, start)
        return self.final_layernorm(x)


class LMHead(nn.Linear):
    """The untied LM head; `rows` computes only those vocabulary entries (the same call as `PackedLinear`'s,
    so a packed head drops in). A subclass of `nn.Linear`: its parameters keep the official key names."""

    def forward(self, x: torch.Tensor, rows: slice | None = None) -> torch.Tensor:
        return super().forward(x) if rows is None else F.linear(x, self.weight[rows], self.bias[rows])


class PhiForCausalLM(nn.Module):
    """Embeddings -> decoder -> untied LM head (with bias). Logits are returned in float32."""

    def __init__(self, cfg: PhiConfig):
        super().__init__()
        self.config = cfg
        self.model = PhiModel(cfg)
        self.lm_head = LMHead(cfg.hidden_size, cfg.vocab_size, bias=True)

    def forward(self, input_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                cache: KVCache | None = None, start: int | torch.Tensor = 0,
                logits_slice: slice | torch.Tensor | None = None,
                vocab_slice: slice | None = None) -> torch.Tensor:
        """Logits [B, q, V] (float32).

        attention_mask: [B, 1, q, start+q], boolean (True = may attend) or additive float; None = causal.
        position_ids: [B, q]; default `start + arange(q)` for every row (the official behaviour).
        cache/start: keys and values are written at positions `[start, start+q)` and attention runs over
        `[0, start+q)`; a 0-d tensor `start` keeps shapes fixed (CUDA graphs): attention then runs over the whole
        cache, and the mask is [B, 1, q, max_len] (see `KVCache.update`).
        logits_slice: compute the LM head only on these positions (saves a 58k-wide matmul); a boolean [B, q]
        tensor selects positions row by row and the logits come back flat, [M, V].
        vocab_slice: compute only these vocabulary entries (e.g. the image codebook: 8k of Show-o's 58k rows);
        the returned last dimension is then the slice's length.
        """
        x = self.model.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        if position_ids is None:
            position_ids = (start + torch.arange(x.shape[1], device=x.device)).expand(x.shape[0], -1)
        if attention_mask is not None and attention_mask.dtype != torch.bool:
            attention_mask = attention_mask.to(x.dtype)
        h = self.model(x, attention_mask, position_ids, cache, start)
        if isinstance(logits_slice, torch.Tensor):
            h = h[logits_slice]
        elif logits_slice is not None:
            h = h[:, logits_slice]
        return self.lm_head(h, vocab_slice).float()

    def new_cache(self, batch: int, max_len: int) -> KVCache:
        """An empty cache matching this model's dtype and device."""
        cfg, w = self.config, self.model.embed_tokens.weight  # never packed: its dtype and device are the model's
        return KVCache(cfg.num_hidden_layers, batch, cfg.num_attention_heads, max_len, cfg.head_dim, w.dtype, w.device)
