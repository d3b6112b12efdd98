"""The Phi-1.5 decoder as Show-o uses it, with an explicit omni-attention mask and a KV cache."""
from .cache import KVCache
from .phi import PhiConfig, PhiForCausalLM, PhiModel

__all__ = ["KVCache", "PhiConfig", "PhiForCausalLM", "PhiModel"]
