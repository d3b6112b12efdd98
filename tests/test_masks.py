"""Omni-attention masks against the official builders (exact), plus the batching helpers of our fast paths."""
import pytest
import torch
import torch.nn.functional as F

from showo.prompting import (
    BLOCKED,
    IGNORE_INDEX,
    Vocabulary,
    branches_after_prefix,
    causal_mask,
    left_pad_ids,
    lm_mask,
    lvg_mask,
    lvg_v2_mask,
    mmu_clip_mask,
    mmu_mask,
    pad_after_prefix,
    pad_left,
    positions_left_padded,
    t2i_gen_sequence,
    t2i_mask,
    t2i_sequence,
    to_additive,
)


def _equal(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, a.shape, b.dtype, b.shape)
    assert torch.equal(a, b)


def _no_empty_row(mask: torch.Tensor) -> None:
    assert bool(mask.any(dim=-1).all()), "a row of the mask is fully blocked"


# ------------------------------------------------------------------------------------------------ golden


@pytest.mark.golden
def test_attention_masks_case(golden, golden_tokenizer):
    d, vocab, ids = golden.case("attention_masks"), golden_tokenizer.vocab, golden.info("attention_masks")["ids"]
    assert (ids["pad"], ids["soi"], ids["eoi"], ids["mask"], ids["mmu"]) == (
        vocab.pad, vocab.soi, vocab.eoi, vocab.mask, vocab.mmu)
    seq = d["input.sequence"]
    for rm in (0, 1):
        m = t2i_mask(seq, vocab, rm_pad_in_image=bool(rm))
        _equal(m, d[f"output.predict_next_rm{rm}_bool"])
        _equal(to_additive(m), d[f"output.predict_next_rm{rm}_inverse"])
        _no_empty_row(m)
    m = mmu_mask(d["input.mmu_sequence"], vocab)
    _equal(m, d["output.for_mmu_bool"])
    _equal(to_additive(m), d["output.for_mmu_inverse"])
    _equal(mmu_mask(d["input.mmu_sequence"], vocab, per_row=True), m)  # same prefix in both rows


@pytest.mark.golden
def test_t2i_logits_mask(golden, golden_tokenizer):
    d = golden.case("t2i_logits")
    m = t2i_mask(d["input.input_ids"], golden_tokenizer.vocab)
    _equal(m, d["aux.attention_mask_bool"])
    _equal(to_additive(m), d["input.attention_mask"])


@pytest.mark.golden
def test_mmu_logits_mask(golden, golden_tokenizer):
    d = golden.case("mmu_logits")
    m = mmu_mask(d["input.input_ids"], golden_tokenizer.vocab)
    _equal(m, d["aux.attention_mask_bool"])
    _equal(to_additive(m), d["input.attention_mask"])


@pytest.mark.golden
def test_lm_logits_mask(golden, golden_tokenizer):
    d = golden.case("lm_logits")
    m = lm_mask(d["input.input_ids"], golden_tokenizer.vocab)
    _equal(m, causal_mask(m.shape[-1]).expand_as(m))
    _equal(to_additive(m), d["input.attention_mask"])


@pytest.mark.golden
@pytest.mark.parametrize("case", ["t2i_generate_cfg", "t2i_inpaint", "t2i_generate_nocfg"])
def test_t2i_generate_masks(golden, golden_tokenizer, case):
    d = golden.case(case)
    ids = d["input.input_ids"]
    if "input.uncond_input_ids" in d:
        ids = torch.cat([ids, d["input.uncond_input_ids"]])
    _equal(to_additive(t2i_mask(ids, golden_tokenizer.vocab)), d["input.attention_mask"])


@pytest.mark.golden
def test_mmu_generate_masks(golden, golden_tokenizer):
    d = golden.case("mmu_generate")
    for run in golden.info("mmu_generate")["runs"]:
        p = run["prefix"]
        m = mmu_mask(d[f"{p}.input.input_ids"], golden_tokenizer.vocab)
        _equal(to_additive(m), d[f"{p}.input.attention_mask"])


@pytest.mark.golden
def test_mmu_clip_masks(golden):
    info, d = golden.info("mmu_clip"), golden.case("mmu_clip")
    s, n = info["system_prompt_len"], info["num_image_tokens"]
    runs = {r["prefix"]: r for r in info["runs"]}
    m0 = mmu_clip_mask(runs["q0"]["seq_len"], s, n)
    _equal(to_additive(m0), d["q0.input.attention_mask"])
    m1 = mmu_clip_mask(runs["q1"]["seq_len"], s, n)
    _equal(m1, d["q1.aux.attention_mask_bool"])
    _no_empty_row(m1)


@pytest.mark.golden
def test_train_losses_mask(golden, golden_tokenizer):
    d, vocab = golden.case("train_losses"), golden_tokenizer.vocab
    masks = [t2i_mask(d["aux.t2i_input_ids"], vocab), lm_mask(d["aux.lm_input_ids"], vocab),
             mmu_mask(d["aux.mmu_input_ids"], vocab)]
    _equal(to_additive(torch.cat(masks)), d["input.attention_mask"])


@pytest.mark.golden
def test_lvg_masks_case(golden, golden_tokenizer):
    d, vocab, ids = golden.case("lvg_masks"), golden_tokenizer.vocab, golden.info("lvg_masks")["ids"]
    assert ids["sot=eot=bos=eos"] == vocab.eos
    a, b = d["input.sequence_a"], d["input.sequence_b"]
    m = lvg_mask(a, vocab)
    _equal(to_additive(m), d["output.lvg_a_inverse"])
    _equal(m.float(), d["output.lvg_a_plain"])
    _equal(to_additive(lvg_mask(b, vocab)), d["output.lvg_b_inverse"])
    m = lvg_v2_mask(a, vocab)
    _equal(to_additive(m), d["output.lvg_v2_a_inverse"])
    _equal(m.int(), d["output.lvg_v2_a_plain"])
    m = lvg_v2_mask(b, vocab, sot_id=vocab.eos, eot_id=ids["eot_marker_b"])
    _equal(to_additive(m), d["output.lvg_v2_b_inverse"])
    _equal(m.int(), d["output.lvg_v2_b_plain"])


# -------------------------------------------------------------------------------------------- unit tests

TINY = Vocabulary.standard(text_size=20, eos=19, codebook_size=8)  # pad 20, soi 21, eoi 22, image 30..37, mask 38


def _t2i_rows(texts, t=6):
    image = torch.tensor([[30, 38, 31, 38]] * len(texts))
    return t2i_gen_sequence(TINY, texts, image, t)


def test_t2i_mask_semantics():
    ids = _t2i_rows([[1, 2]])  # [pad, pad, t2i, bos, 1, 2, eos, soi, 30, 38, 31, 38, eoi]
    m = t2i_mask(ids, TINY)[0, 0]
    pads, text, image = slice(0, 2), slice(2, 7), slice(7, 13)
    assert torch.equal(m[pads, pads], causal_mask(2))
    assert not m[text, pads].any() and torch.equal(m[text, text], causal_mask(5))
    assert not m[text, image].any()
    assert m[image, text].all() and m[image, image].all() and not m[image, pads].any()
    _no_empty_row(m)


def test_t2i_mask_row_without_image_is_text():
    v = TINY
    ids = torch.tensor([[v.pad, v.pad, 1, 2, 3], [1, 2, 3, v.pad, v.pad]])
    m = t2i_mask(ids, v)[:, 0]
    left = causal_mask(5)
    left[2:, :2] = False  # text after the padding cannot see it
    assert torch.equal(m[0], left)
    assert torch.equal(m[1], causal_mask(5))  # right padding: nothing after the last pad
    assert torch.equal(t2i_mask(ids, v, rm_pad_in_image=False)[:, 0], causal_mask(5).expand(2, 5, 5))
    _no_empty_row(m)


def test_mmu_mask_errors_and_per_row():
    v = TINY
    with pytest.raises(ValueError, match="no <eoi>"):
        mmu_mask(torch.tensor([[v.mmu, v.soi, 30, 1, 2]]), v)
    ids = torch.tensor([[v.mmu, v.soi, 30, v.eoi, 1, 2], [v.mmu, v.soi, 30, 31, v.eoi, 2]])
    official = mmu_mask(ids, v)[:, 0]
    assert official[1, 0, 3] and not official[1, 0, 4]  # row 1 uses row 0's <eoi> index (3)
    own = mmu_mask(ids, v, per_row=True)[:, 0]
    assert own[1, 0, 4] and not own[0, 0, 4]
    with pytest.raises(ValueError, match="rows \\[1\\]"):
        mmu_mask(torch.tensor([[v.mmu, v.soi, v.eoi], [v.mmu, v.soi, 30]]), v, per_row=True)


def test_mmu_clip_mask_layout():
    s, n, q = 3, 4, 2
    length = 1 + s + 1 + n + 1 + q
    m = mmu_clip_mask(length, s, num_image_tokens=n, batch=2)
    assert m.shape == (2, 1, length, length)
    expected = causal_mask(length)
    expected[:, 2 + s:2 + s + n] = True
    assert torch.equal(m[1, 0], expected)
    with pytest.raises(ValueError):
        mmu_clip_mask(2 + s + n, s, num_image_tokens=n)


def test_lvg_masks_need_images():
    v = TINY
    with pytest.raises(ValueError, match="no <soi>"):
        lvg_mask(torch.tensor([[v.bos, 1, v.eos]]), v)
    with pytest.raises(ValueError, match="openings"):
        lvg_v2_mask(torch.tensor([[v.bos, v.soi, 30, v.eoi, v.soi, 31]]), v)


def test_to_additive_dtypes():
    m = causal_mask(3)
    f32 = to_additive(m)
    assert f32.dtype == torch.float32 and f32[0, 1] == BLOCKED == -9.223372036854775808e18 and f32[1, 0] == 0
    assert to_additive(m, torch.bfloat16)[0, 1] == BLOCKED
    assert torch.isinf(to_additive(m, torch.float16)[0, 1])


def test_no_row_fully_blocked_on_random_layouts():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        texts = [torch.randint(0, 19, (int(torch.randint(0, 9, (1,), generator=g)),), generator=g).tolist()
                 for _ in range(3)]
        image = TINY.image_offset + torch.randint(0, 9, (3, 4), generator=g)
        labels = torch.full((3, 4), IGNORE_INDEX)
        ids = t2i_sequence(TINY, texts, image, labels, 6, cond_dropout_prob=0.3, generator=g).ids
        for rm in (False, True):
            _no_empty_row(t2i_mask(ids, TINY, rm_pad_in_image=rm))
        _no_empty_row(lvg_mask(ids, TINY))
        _no_empty_row(lvg_v2_mask(ids, TINY))


def _toy_attention(ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """One attention layer whose queries/keys depend on token and position (a stand-in for the model)."""
    g = torch.Generator().manual_seed(1)
    tok, pos = torch.randn(64, 8, generator=g), torch.randn(64, 8, generator=g)
    x = (tok[ids] + pos[positions]).unsqueeze(1)  # [B, 1, L, 8]
    return F.scaled_dot_product_attention(x, x, x, attn_mask=to_additive(mask))


def test_pad_left_matches_unbatched_rows():
    v = TINY
    rows = [_t2i_rows([t], t=len(t) + 2)[0] for t in ([1], [1, 2, 3, 4], [])]  # no left padding inside
    per_row = [t2i_mask(r[None], v)[0, 0] for r in rows]
    lengths = [r.shape[0] for r in rows]
    length = max(lengths)
    batch_ids = left_pad_ids(rows, v.pad)
    batch_mask = pad_left(per_row)
    positions = positions_left_padded(lengths, length)
    assert batch_ids.shape == (3, length) and batch_mask.shape == (3, 1, length, length)
    _no_empty_row(batch_mask)
    out = _toy_attention(batch_ids, positions, batch_mask)
    for i, (r, m, n) in enumerate(zip(rows, per_row, lengths)):
        k = length - n
        assert torch.equal(batch_mask[i, 0, k:, k:], m)
        assert not batch_mask[i, 0, k:, :k].any()  # real rows never see pad columns
        assert torch.equal(batch_mask[i, 0, :k, :k], torch.eye(k, dtype=torch.bool))  # pads see themselves only
        assert positions[i, k:].tolist() == list(range(n)) and not positions[i, :k].any()
        single = _toy_attention(r[None], torch.arange(n)[None], m[None, None])
        torch.testing.assert_close(out[i, :, k:], single[0], rtol=1e-6, atol=1e-6)


def test_pad_after_prefix_keeps_the_shared_prefix_in_place():
    mask, positions, slots = pad_after_prefix([causal_mask(5), causal_mask(3)], shared=2)
    assert [s.tolist() for s in slots] == [[0, 1, 2, 3, 4], [0, 1, 4]]  # the pads sit after the prefix
    assert positions.tolist() == [[0, 1, 2, 3, 4], [0, 1, 0, 0, 2]]  # and the positions skip them
    assert torch.equal(mask[1, 0][slots[1][:, None], slots[1][None, :]], causal_mask(3))
    assert not mask[1, 0, 4, 2:4].any() and torch.equal(mask[1, 0, 2:4, 2:4], torch.eye(2, dtype=torch.bool))
    with pytest.raises(ValueError):
        pad_after_prefix([causal_mask(5), causal_mask(3)], shared=4)


def test_pad_left_validation():
    with pytest.raises(ValueError):
        pad_left([])
    with pytest.raises(ValueError):
        pad_left([torch.ones(2, 3, dtype=torch.bool)])
    with pytest.raises(ValueError):
        pad_left([causal_mask(4)], length=3)
    with pytest.raises(ValueError):
        positions_left_padded([5], 4)
    assert pad_left([causal_mask(2)], length=4).shape == (1, 1, 4, 4)


def test_branches_after_prefix_sees_the_prefix_and_itself_only():
    prefix = torch.ones(3, 3, dtype=torch.bool)  # a fully visible prefix (an image block)
    mask, positions = branches_after_prefix(prefix, [2, 3], length=10)
    assert positions.tolist() == [0, 1, 2, 3, 4, 3, 4, 5, 0, 0]  # each branch restarts after the prefix
    assert torch.equal(mask[:3, :3], prefix) and not mask[:3, 3:].any()  # the prefix never sees a branch
    assert mask[3:8, :3].all()  # every branch sees the whole prefix
    assert torch.equal(mask[3:5, 3:5], causal_mask(2)) and torch.equal(mask[5:8, 5:8], causal_mask(3))
    assert not mask[5:8, 3:5].any() and not mask[3:5, 5:8].any()  # and never another branch
    assert not mask[:8, 8:].any() and torch.equal(mask[8:, 8:], torch.eye(2, dtype=torch.bool))  # pads
    assert mask[8:, :8].sum() == 0
    with pytest.raises(ValueError, match="shorter"):
        branches_after_prefix(prefix, [2, 3], length=7)
    with pytest.raises(ValueError, match=">= 1"):
        branches_after_prefix(prefix, [2, 0])
    with pytest.raises(ValueError, match="square"):
        branches_after_prefix(torch.ones(2, 3, dtype=torch.bool), [1])
