"""The Phi-1.5 decoder as Show-o uses it, with an explicit omni-attention mask and a KV cache."""
from .cache import KVCache
from .packed import PackedLinear, pack_linears, packing_available
from .phi import PhiConfig, PhiForCausalLM, PhiModel

__all__ = ["KVCache", "PackedLinear", "pack_linears", "packing_available", "PhiConfig", "PhiForCausalLM", "PhiModel"]
