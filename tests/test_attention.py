"""Single-query attention (the GPU's decode path) against PyTorch's scaled_dot_product_attention."""
import pytest
import torch
import torch.nn.functional as F

from showo.backbone.phi import single_query_attention


@pytest.mark.parametrize("dtype,atol", [(torch.float32, 1e-6), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("additive", [False, True])
def test_single_query_attention_equals_sdpa(dtype, atol, additive):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 4, n, 16, generator=g).to(dtype) for n in (1, 9, 9))
    mask = torch.rand(3, 1, 1, 9, generator=g) < 0.6
    mask[..., 0] = True  # every row sees something
    if additive:
        mask = torch.zeros(mask.shape, dtype=dtype).masked_fill(~mask, float("-inf"))
    got = single_query_attention(q, k, v, mask)
    assert got.dtype == dtype and got.shape == q.shape
    torch.testing.assert_close(got, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=atol, rtol=0)


def test_low_precision_scores_are_computed_in_float32():
    """Peaked attention of layer-normed bf16 queries and keys (Phi's QK norms): within 0.02 of the exact result on
    the same rounded inputs, as PyTorch's kernel is; bf16 scores were off by up to 0.47."""
    g = torch.Generator().manual_seed(0)
    d = 64
    q = F.layer_norm(torch.randn(1, 32, 1, d, generator=g), (d,)) * 3
    k = F.layer_norm(torch.randn(1, 32, 380, d, generator=g), (d,)) * 3
    k[..., :50, :] += q  # keys that match the query well: a peaked softmax
    q, k, v = q.bfloat16(), k.bfloat16(), torch.randn(1, 32, 380, d, generator=g).bfloat16()
    mask = torch.ones(1, 1, 1, 380, dtype=torch.bool)
    exact = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), attn_mask=mask)
    torch.testing.assert_close(single_query_attention(q, k, v, mask).double(), exact, atol=2e-2, rtol=0)


def test_kv_cache_refuses_to_write_past_its_capacity():
    """A write that would end past max_len raises instead of silently keeping a truncated slice (the guard was
    loosened by one without any test failing)."""
    from showo.backbone.cache import KVCache

    cache = KVCache(num_layers=1, batch=1, num_heads=1, max_len=4, head_dim=2)
    k = torch.ones(1, 1, 2, 2)
    keys, _ = cache.update(0, 2, k, k)  # positions 2 and 3: the last two
    assert keys.shape[2] == 4 and torch.equal(cache.k[0][0, 0, 2:], k[0, 0])
    with pytest.raises(ValueError, match="KV cache overflow: position 5 > capacity 4"):
        cache.update(0, 3, k, k)
