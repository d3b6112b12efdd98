"""Tokenizers: text (Phi-1.5 BPE plus Show-o's tokens) and image (MAGVIT-v2 with a lookup-free quantizer)."""
