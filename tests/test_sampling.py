"""Mask schedules, Gumbel noise, re-masking and logit filters: golden vectors of the official
`models/sampling.py` (case `sampling`, bit-exact) plus properties of the clean decoding helpers."""
from __future__ import annotations

import ast
import math
import re

import pytest
import torch

from showo.errors import ConfigError, InputError
from showo.sampling.filters import (apply_top_k, apply_top_p, gumbel_noise, gumbel_sample, log, mask_by_random_topk,
                                    top_k, top_k_top_p_filtering)
from showo.sampling.autoregressive import shared_prefix
from showo.sampling.schedules import get_mask_schedule, mask_count

CASE = "sampling"


def _call(golden, needle: str) -> str:
    """The golden.json call string of case `sampling` that mentions `needle`."""
    hits = [c for c in golden.info(CASE)["calls"] if needle in c]
    assert len(hits) == 1, f"expected one call mentioning {needle!r}, got {hits}"
    return hits[0]


def _assert_float_equal(got: torch.Tensor, want: torch.Tensor) -> None:
    """Equal up to the last bits of float32. torch's vectorized pow and log round differently on different CPU
    models (the golden set was made on one; on an AMD EPYC the outputs differ by up to 1.2e-7: one or two ulps
    before the final subtraction or outer log), so outputs of these functions match the golden set to 4 float32
    epsilons, not bit for bit. A wrong formula misses by far more."""
    assert got.dtype == want.dtype == torch.float32
    eps = torch.finfo(torch.float32).eps
    torch.testing.assert_close(got, want, rtol=4 * eps, atol=4 * eps)


def _seed(call: str) -> int:
    return int(re.search(r"manual_seed\((\d+)\)", call).group(1))


def _kwargs(text: str) -> dict:
    """'start=-2, end=4, tau=0.7' -> {'start': -2, 'end': 4, 'tau': 0.7}."""
    return {k.strip(): ast.literal_eval(v.strip()) for k, v in (item.split("=") for item in text.split(","))}


def _outputs(golden, prefix: str) -> dict[str, torch.Tensor]:
    """Output tensors named `output.<prefix><suffix>`, keyed by suffix."""
    return {k[len("output." + prefix):]: v for k, v in golden.case(CASE).items() if k.startswith("output." + prefix)}


# ---------------------------------------------------------------- golden


@pytest.mark.golden
@pytest.mark.parametrize("name, key", [("cosine", "cosine_schedule"), ("linear", "linear_schedule"),
                                       ("pow2", "pow2"), ("pow0.5", "pow0.5"), ("sigmoid", "sigmoid_default")])
def test_schedules_golden(golden, name, key):
    d = golden.case(CASE)
    got = get_mask_schedule(name)(d["input.ratios"])
    _assert_float_equal(got, d[f"output.{key}"])


@pytest.mark.golden
def test_sigmoid_custom_params_golden(golden):
    call = _call(golden, "get_mask_chedule('sigmoid', ")
    params = _kwargs(re.search(r"get_mask_chedule\('sigmoid', ([^)]*)\)", call).group(1))
    assert params  # e.g. start=-2, end=4, tau=0.7
    d = golden.case(CASE)
    assert torch.equal(get_mask_schedule("sigmoid", **params)(d["input.ratios"]), d["output.sigmoid_custom"])


@pytest.mark.golden
def test_t2i_step_mask_ratio_golden(golden):
    # t2i_generate evaluates the schedule on a 0-d float32 tensor built from the Python ratio (s+1)/S.
    want = golden.case(CASE)["output.t2i_step_mask_ratio"]
    steps = int(re.search(r"\(s\+1\)/(\d+)", _call(golden, "t2i_step_mask_ratio")).group(1))
    assert steps == want.shape[0]
    schedule = get_mask_schedule("cosine")
    got = torch.stack([schedule(torch.tensor((s + 1) / steps)) for s in range(steps)])
    assert torch.equal(got, want)


@pytest.mark.golden
def test_mask_by_random_topk_golden(golden):
    d = golden.case(CASE)
    seed = _seed(_call(golden, "mask_by_random_topk("))
    wants = _outputs(golden, "mask_by_random_topk_T")
    assert set(wants) == {"0.0", "0.5", "1.0", "4.5"}
    for temperature, want in wants.items():
        got = mask_by_random_topk(d["input.topk_mask_len"], d["input.topk_probs"], float(temperature),
                                  generator=torch.Generator().manual_seed(seed))
        assert got.dtype == torch.bool
        assert torch.equal(got, want), f"temperature {temperature}"
        assert torch.equal(got.sum(-1, keepdim=True), d["input.topk_mask_len"])
        # Positions holding float32 max (known tokens in t2i_generate) are never re-masked.
        assert not got[0, :3].any()


@pytest.mark.golden
def test_gumbel_noise_golden(golden):
    d = golden.case(CASE)
    seed = _seed(_call(golden, "gumbel_noise("))
    got = gumbel_noise(d["input.topk_probs"], generator=torch.Generator().manual_seed(seed))
    _assert_float_equal(got, d["output.gumbel_noise"])


@pytest.mark.golden
def test_gumbel_sample_golden(golden):
    d = golden.case(CASE)
    seed = _seed(_call(golden, "gumbel_sample("))
    (suffix, want), = _outputs(golden, "gumbel_sample_T").items()
    got = gumbel_sample(d["input.logits3d"], temperature=float(suffix), generator=torch.Generator().manual_seed(seed))
    assert torch.equal(got, want)


@pytest.mark.golden
def test_top_k_thres_golden(golden):
    d = golden.case(CASE)
    (suffix, want), = _outputs(golden, "top_k_thres").items()
    assert torch.equal(top_k(d["input.logits3d"], thres=float(suffix)), want)


def _filter_params(suffix: str) -> dict:
    """'k7_p0.6_min2' -> {'top_k': 7, 'top_p': 0.6, 'min_tokens_to_keep': 2}."""
    names = {"k": ("top_k", int), "p": ("top_p", float), "min": ("min_tokens_to_keep", int)}
    out = {}
    for part in suffix.split("_"):
        tag, value = re.fullmatch(r"(min|k|p)([0-9.]+)", part).groups()
        out[names[tag][0]] = names[tag][1](value)
    return out


@pytest.mark.golden
def test_top_k_top_p_filtering_golden(golden):
    d = golden.case(CASE)
    logits = d["input.logits2d"]
    before = logits.clone()
    wants = _outputs(golden, "top_k_top_p_")
    assert set(wants) == {"k5", "p0.8", "k7_p0.6_min2"}
    for suffix, want in wants.items():
        assert torch.equal(top_k_top_p_filtering(logits, **_filter_params(suffix)), want), suffix
    assert torch.equal(logits, before)  # unlike the official function, the input is left untouched


@pytest.mark.golden
def test_log_of_probs_golden(golden):
    probs = golden.case(CASE)["input.topk_probs"]
    got = log(torch.cat([probs[1:], torch.zeros(1, probs.shape[1])]))
    _assert_float_equal(got, golden.case(CASE)["output.log_of_probs"])
    assert torch.isfinite(got).all()


# ---------------------------------------------------------------- schedules


def test_unknown_schedule_raises_config_error():
    for bad in ("cosinus", "pow", "powx", "pow-1", "xpow2", ""):
        with pytest.raises(ConfigError):
            get_mask_schedule(bad)


def test_bad_schedule_params_raise_config_error():
    with pytest.raises(ConfigError):
        get_mask_schedule("cosine", tau=2.0)
    with pytest.raises(ConfigError):
        get_mask_schedule("sigmoid", temperature=2.0)
    with pytest.raises(ConfigError):
        get_mask_schedule("sigmoid", tau=0)
    with pytest.raises(ConfigError):
        get_mask_schedule("sigmoid", start=3, end=-3)
    with pytest.raises(ConfigError):
        get_mask_schedule("sigmoid", start="a")


def test_schedules_start_full_and_decrease():
    t = torch.linspace(0, 1, 101)
    for name in ("cosine", "linear", "pow2", "pow0.5", "sigmoid"):
        r = get_mask_schedule(name)(t)
        assert r.dtype == torch.float32
        assert r[0] == pytest.approx(1.0, abs=1e-6)
        assert (r[1:] <= r[:-1]).all(), name
        assert r[-1] < 1e-5, name


def test_mask_count_matches_official_counts():
    # Masked-token counts after each step of the official cosine sampler (spec section 6.1), all slots unknown.
    expected = {(16, 256): [254, 251, 244, 236, 225, 212, 197, 181, 162, 142, 120, 97, 74, 49, 25, 1],
                (12, 256): [253, 247, 236, 221, 203, 181, 155, 127, 97, 66, 33, 1]}
    cosine = get_mask_schedule("cosine")
    for (steps, n), want in expected.items():
        counts, unknown = [], n
        for step in range(steps):
            unknown = mask_count(step, steps, n, cosine, num_unknown=unknown)
            counts.append(unknown)
        assert counts == want
    assert mask_count(7, 8, 16, cosine) == 1  # cos(pi/2) is slightly negative in float32: floor -1 -> 1


# ---------------------------------------------------------------- re-masking


def test_mask_by_random_topk_masks_exactly_mask_len():
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(6, 32, generator=g).softmax(-1)
    mask_len = torch.tensor([[0], [1], [5], [16], [30], [31]])
    for temperature in (0.0, 1.0, 3.0):
        m = mask_by_random_topk(mask_len, probs, temperature, generator=torch.Generator().manual_seed(1))
        assert torch.equal(m.sum(-1, keepdim=True), mask_len)
    # temperature 0: the least probable tokens are the masked ones
    m = mask_by_random_topk(mask_len, probs, 0.0, generator=torch.Generator().manual_seed(1))
    for row in range(6):
        k = int(mask_len[row])
        assert set(m[row].nonzero().flatten().tolist()) == set(probs[row].argsort()[:k].tolist())


def test_mask_by_random_topk_int_mask_len_and_rng_use():
    probs = torch.rand(3, 10, generator=torch.Generator().manual_seed(2))
    a = mask_by_random_topk(4, probs, 1.0, generator=torch.Generator().manual_seed(5))
    b = mask_by_random_topk(torch.full((3, 1), 4.0), probs, 1.0, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and (a.sum(-1) == 4).all()
    # one uniform_ draw of probs' shape, even at temperature 0
    g = torch.Generator().manual_seed(5)
    mask_by_random_topk(4, probs, 0.0, generator=g)
    ref = torch.Generator().manual_seed(5)
    torch.zeros(3, 10).uniform_(0, 1, generator=ref)
    assert torch.equal(torch.rand(4, generator=g), torch.rand(4, generator=ref))


# ---------------------------------------------------------------- logit filters


def _brute_force_min_nucleus(probs: torch.Tensor, p: float) -> int:
    """Size of the smallest prefix of the descending probabilities with mass >= p."""
    cum = 0.0
    for i, q in enumerate(sorted(probs.tolist(), reverse=True), start=1):
        cum += q
        if cum >= p - 1e-6:
            return i
    return len(probs)


def test_apply_top_p_keeps_smallest_set_reaching_p():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(8, 50, generator=g) * 2
    for p in (0.01, 0.3, 0.5, 0.9, 0.99):
        out = apply_top_p(logits, p)
        probs = logits.softmax(-1)
        for row in range(logits.shape[0]):
            kept = torch.isfinite(out[row])
            assert kept.sum() >= 1
            assert int(kept.sum()) == _brute_force_min_nucleus(probs[row], p)
            assert probs[row][kept].sum() >= p - 1e-6
            # the kept tokens are the most probable ones and keep their logits
            if (~kept).any():
                assert probs[row][kept].min() >= probs[row][~kept].max()
            assert torch.equal(out[row][kept], logits[row][kept])


def test_apply_top_p_keeps_one_token_on_peaked_rows_and_p1_is_noop():
    logits = torch.tensor([[20.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    out = apply_top_p(logits, 0.5)
    assert torch.isfinite(out).sum(-1).tolist() == [1, 2]
    assert torch.equal(apply_top_p(logits, 1.0), logits)
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(InputError):
            apply_top_p(logits, bad)


def test_apply_top_k():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(5, 30, generator=g)
    for k in (1, 3, 29):
        out = apply_top_k(logits, k)
        assert (torch.isfinite(out).sum(-1) == k).all()
        kept = torch.isfinite(out)
        assert torch.equal(out[kept], logits[kept])
        assert torch.equal(kept, logits >= logits.topk(k, -1).values[:, -1:])
    for k in (30, 31, 1000):  # k >= V is a no-op
        assert torch.equal(apply_top_k(logits, k), logits)
    assert torch.equal(apply_top_k(logits[None], 3)[0], apply_top_k(logits, 3))  # leading dims
    for bad in (0, -1, 2.5):
        with pytest.raises(InputError):
            apply_top_k(logits, bad)


def test_top_k_top_p_filtering_official_quirks():
    logits = torch.tensor([[10.0, 0.0, 0.0, 0.0, -1.0, -2.0]])
    # min_tokens_to_keep=2 keeps 3 tokens in the top-p step (official off-by-one); 1 keeps 1.
    assert torch.isfinite(top_k_top_p_filtering(logits, top_p=0.5)).sum() == 1
    assert torch.isfinite(top_k_top_p_filtering(logits, top_p=0.5, min_tokens_to_keep=2)).sum() == 3
    # top-k keeps ties with the k-th value
    assert torch.isfinite(top_k_top_p_filtering(logits, top_k=2)).sum() == 4
    assert torch.equal(top_k_top_p_filtering(logits), logits)


def test_official_top_k_count():
    logits = torch.randn(1, 2, 40)
    assert torch.isfinite(top_k(logits, thres=0.9)).sum(-1).tolist() == [[math.ceil((1 - 0.9) * 40)] * 2]


def test_gumbel_sample_low_temperature_is_argmax():
    logits = torch.randn(4, 7, 25, generator=torch.Generator().manual_seed(6))
    got = gumbel_sample(logits, temperature=1e-6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(got, logits.argmax(-1))


def _causal(n: int) -> torch.Tensor:
    return torch.ones(n, n, dtype=torch.bool).tril()


def test_shared_prefix_stops_where_ids_masks_or_attention_part():
    a, b = torch.arange(40), torch.cat([torch.arange(30), torch.arange(100, 110)])
    assert shared_prefix([a, b, a], [_causal(40)] * 3) == (30, [0, 0, 0])
    assert shared_prefix([a, a[:25]], [_causal(40), _causal(25)]) == (24, [0, 0])  # each keeps a position
    assert shared_prefix([a, torch.cat([a[:10], b[30:]])], [_causal(40), _causal(20)])[0] == 0  # too short
    assert shared_prefix([a], [_causal(40)]) == (0, [0])
    block = _causal(40)
    block[20:35, 20:35] = True  # full attention over [20, 35): cutting it at 30 would let row 20 see row 30
    assert shared_prefix([a, b], [block, block]) == (20, [0, 0])
    other = _causal(40)
    other[25, 3] = False
    assert shared_prefix([a, b], [_causal(40), other]) == (25, [0, 0])
    e = torch.randn(40, 8)
    f = e.clone()
    f[33] += 1
    assert shared_prefix([e, f], [_causal(40)] * 2) == (33, [0, 0])  # embeddings (the CLIP path)


def test_shared_prefix_groups_prompts_by_what_they_share():
    """Two questions about each of two images: each image's positions are computed once, in two groups."""
    one, two = torch.arange(30), torch.arange(50, 80)
    q1, q2, q3 = torch.tensor([1, 2]), torch.tensor([3, 4, 5]), torch.tensor([6])
    rows = [torch.cat([one, q1]), torch.cat([two, q2]), torch.cat([one, q3]), torch.cat([two[:27], q1])]
    masks = [_causal(len(r)) for r in rows]
    assert shared_prefix(rows, masks) == (27, [0, 1, 0, 1])  # the last row shares 27 positions of image two
    assert shared_prefix(rows + [torch.arange(200, 240)], masks + [_causal(40)])[0] == 0  # one shares nothing
    assert shared_prefix(rows[:2], masks[:2])[0] == 0  # nothing in common


def _shared_prefix_by_pairs(seqs, masks):
    """The definition of `shared_prefix`, checked pair by pair (what it computed before it sorted the prompts)."""
    from showo.sampling.autoregressive import MIN_SHARED_PREFIX

    b, n = len(seqs), min(s.shape[0] for s in seqs) - 1
    alone = (0, list(range(b)))
    if b < 2 or n < MIN_SHARED_PREFIX:
        return alone
    common = torch.zeros(b, b, dtype=torch.long)
    for i in range(b):
        for j in range(i + 1, b):
            k = next((p for p in range(n) if not torch.equal(seqs[i][p], seqs[j][p])), n)
            k = next((p for p in range(k) if not (torch.equal(masks[i][p, :p + 1], masks[j][p, :p + 1])
                                                  and torch.equal(masks[i][:p, p], masks[j][:p, p]))), k)
            common[i, j] = common[j, i] = k
    n = int(common.max(dim=1).values.min())
    while n and any(bool(m[:n, n:].any()) for m in masks):  # a row of the prefix sees past it
        n -= 1
    group = []
    for i in range(b):
        group.append(next((group[j] for j in range(i) if common[i, j] >= n), max(group, default=-1) + 1))
    return (n, group) if n >= MIN_SHARED_PREFIX and max(group) + 1 < b else alone


@pytest.mark.parametrize("seed", range(40))
def test_shared_prefix_agrees_with_the_pairwise_definition(seed):
    g = torch.Generator().manual_seed(seed)
    r = lambda lo, hi: int(torch.randint(lo, hi, (1,), generator=g))  # noqa: E731
    bases = [torch.randint(0, 5, (40,), generator=g) for _ in range(r(1, 4))]
    seqs, masks = [], []
    for _ in range(r(2, 9)):
        base = bases[r(0, len(bases))]
        keep = r(10, 40)
        row = torch.cat([base[:keep], torch.randint(0, 5, (r(1, 12),), generator=g)])
        if seed % 4 == 1:  # embeddings (the CLIP path)
            row = torch.stack([torch.full((3,), float(t)) for t in row])
        mask = _causal(len(row))
        if r(0, 3) == 0:
            mask[r(0, len(row)), r(0, len(row))] ^= True
        if seed % 4 == 2:
            mask[15:25, 15:25] = True
        seqs.append(row)
        masks.append(mask)
    assert shared_prefix(seqs, masks) == _shared_prefix_by_pairs(seqs, masks)


def test_shared_prefix_of_thousands_of_prompts():
    """4096 questions about 64 images (it compared every pair: minutes)."""
    images = [torch.randint(0, 1000, (200,), generator=torch.Generator().manual_seed(i)) for i in range(64)]
    seqs = [torch.cat([images[i % 64], torch.tensor([i // 64, 7])]) for i in range(4096)]
    n, group = shared_prefix(seqs, [_causal(202)] * 4096)
    assert n == 200 and group == [i % 64 for i in range(4096)]


def test_shared_prefix_confirms_what_its_hashes_say(monkeypatch):
    """Keys are hashes: prompts whose keys collide but whose positions differ share nothing."""
    from showo.sampling import autoregressive

    monkeypatch.setattr(autoregressive, "_position_keys", lambda seqs, masks: torch.zeros(len(seqs), len(seqs[0]),
                                                                                           dtype=torch.long))
    a, b = torch.arange(40), torch.arange(40) + 100
    assert shared_prefix([a, b, a], [_causal(40)] * 3) == (0, [0, 1, 2])


def test_generate_text_checks_what_it_is_given():
    """An empty list, ids past the vocabulary, a temperature of -1, top_p 2 or an answer past the context ran
    (sampling garbage) or failed deep inside with an index error."""
    from showo.errors import InputError
    from showo.sampling.autoregressive import generate_text
    from showo.tiny import tiny_random_pipeline

    model = tiny_random_pipeline(seed=0).model
    v, ctx, hidden = model.config.vocab_size, model.config.llm.max_position_embeddings, model.config.llm.hidden_size
    ok = torch.tensor([1, 2, 3])
    for kwargs, match in (
            ({"prompts": []}, "prompts must be a non-empty list of tensors"),
            ({"prompts": ok}, "prompts must be a non-empty list of tensors"),
            ({"prompts": [torch.tensor([1, v])]}, rf"prompt ids must lie in \[0, {v}\), got 1..{v}"),
            ({"prompts": [torch.tensor([-1, 2])]}, "prompt ids must lie in"),
            ({"prompts": [torch.tensor([1.0, 2.0])]}, "1-D tensors of token ids, got torch.float32"),
            ({"prompts": [torch.zeros(0, dtype=torch.long)]}, "non-empty 1-D tensors"),
            ({"prompts": None}, "give exactly one of prompts or prompt_embeds"),
            ({"prompts": None, "prompt_embeds": [torch.zeros(3, hidden + 1)]}, rf"\[L, {hidden}\] float tensors"),
            ({"prompt_masks": [torch.ones(2, 2)]}, r"\[L, L\] tensor for its prompt's L, got \[2, 2\] for L = 3"),
            ({"prompt_masks": [_causal(3)] * 2}, "one \\[L, L\\] mask per prompt \\(1\\)"),
            ({"prompt_masks": [_causal(3).float()]}, "prompt masks must be boolean"),  # additive ones were inverted
            ({"temperature": -1.0}, "temperature must be a number in"),
            ({"top_p": 2.0}, r"top_p must be in \(0, 1\]"),
            ({"top_k": 0}, "top_k must be a positive integer"),
            ({"max_new_tokens": 0}, "max_new_tokens must be a positive integer"),
            ({"eos_id": "x"}, "eos_id must be a token id or None"), ({"use_cache": "no"}, "use_cache must be True"),
            ({"generator": 5}, "generator must be a torch.Generator"),
            ({"on_token": lambda a: 0}, "on_token is called as on_token\\(step, ids, finished\\)"),
            ({"max_new_tokens": ctx}, f"a prompt of 3 positions \\+ max_new_tokens {ctx} exceeds the model's {ctx}")):
        with pytest.raises(InputError, match=match):
            generate_text(model, **{"prompts": [ok], "max_new_tokens": 2, **kwargs})
    assert len(generate_text(model, [ok], max_new_tokens=2, temperature=0)[0]) == 2
    assert generate_text(model, [ok.int()], max_new_tokens=2, temperature=0) == generate_text(  # int32 ids failed
        model, [ok], max_new_tokens=2, temperature=0)


def test_maskgit_generate_checks_what_it_is_given():
    """A misplaced image block was decoded from the wrong slots, a guidance scale without unconditional rows was
    silently ignored, NaN guidance ran, and the rest failed deep inside."""
    from showo.errors import InputError
    from showo.prompting.sequences import t2i_gen_sequence
    from showo.sampling.maskgit import maskgit_generate
    from showo.tiny import tiny_random_pipeline

    pipe = tiny_random_pipeline(seed=0)
    v = pipe.vocab
    ids = t2i_gen_sequence(v, [[1, 2, 3]], torch.full((1, 16), v.mask), 32)
    unc = t2i_gen_sequence(v, [[]], torch.full((1, 16), v.mask), 32)
    for kwargs, match in (({"num_image_tokens": 15}, "must end with the image block <soi>, 15 image ids, <eoi>"),
                          ({"num_image_tokens": 10 ** 6}, "num_image_tokens must be an integer in"),
                          ({"guidance_scale": 3.0}, "guidance_scale > 0 needs uncond_input_ids"),
                          ({"uncond_input_ids": unc, "guidance_scale": float("nan")}, "guidance_scale must be"),
                          ({"temperature": -1.0}, "temperature must be"),
                          ({"num_inference_steps": 2.5}, "num_inference_steps must be a positive integer"),
                          ({"generator": 0}, "generator must be a torch.Generator"),
                          ({"input_ids": ids + 10 ** 6}, "input_ids must lie in"),
                          ({"uncond_input_ids": unc[:, 1:], "guidance_scale": 1.0}, "shaped like input_ids"),
                          ({"callback": lambda a, b: 0}, "callback is called as callback\\(step\\)")):
        with pytest.raises(InputError, match=match):
            maskgit_generate(pipe.model, **{"input_ids": ids, "vocab": v, "num_image_tokens": 16,
                                            "num_inference_steps": 2, **kwargs})
    assert maskgit_generate(pipe.model, ids, v, 16, num_inference_steps=2).shape == (1, 16)


def test_next_token_draws_from_the_tempered_filtered_distribution():
    """temperature, top_k and top_p each change what is drawn: the draws of 256 rows equal torch.multinomial on
    the distribution worked out by hand, with the same generator (the pipeline tests passed the same arguments
    to both sides of an equality, so dropping one went unseen)."""
    from showo.sampling.autoregressive import next_token

    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0, 2.5]]).repeat(256, 1)

    def drawn(probs: list[float], **kwargs) -> None:
        want = torch.multinomial(torch.tensor(probs).repeat(256, 1), 1, generator=torch.Generator().manual_seed(5))
        got = next_token(logits, generator=torch.Generator().manual_seed(5), **kwargs)
        assert torch.equal(got, want[:, 0]), kwargs

    drawn(torch.softmax(logits[0] / 0.5, -1).tolist(), temperature=0.5)
    drawn(torch.softmax(logits[0] / 2.0, -1).tolist(), temperature=2.0)
    kept = torch.tensor([float("-inf"), float("-inf"), float("-inf"), 3.0, 2.5])  # the two largest
    drawn(torch.softmax(kept / 0.5, -1).tolist(), temperature=0.5, top_k=2)
    # top_p 0.6 at temperature 0.5: token 3 holds 0.66 of the mass alone, so only it is kept
    drawn([0.0, 0.0, 0.0, 1.0, 0.0], temperature=0.5, top_p=0.6)
    assert torch.equal(next_token(logits, temperature=0), torch.full((256,), 3))


def test_a_finished_row_of_a_batch_stays_finished():
    """Rows that reach eos at different steps: each row's answer is its answer alone (a finished row that
    started again after the next token was no eos went unseen: no test had eos in a batch)."""
    from showo.sampling.autoregressive import generate_text
    from showo.tiny import tiny_random_pipeline

    model = tiny_random_pipeline(seed=0).model
    prompts = [torch.tensor([1, 2, 3]), torch.tensor([7, 8, 9, 10])]
    free = [generate_text(model, [p], max_new_tokens=8, temperature=0)[0] for p in prompts]
    eos = free[0][1]  # row 0 stops at its second token
    assert eos not in free[0][:1] and free[0][2] != eos  # (the case the test is about)
    alone = [generate_text(model, [p], max_new_tokens=8, temperature=0, eos_id=eos)[0] for p in prompts]
    assert alone[0] == free[0][:2] and len(alone[1]) > 2
    assert generate_text(model, prompts, max_new_tokens=8, temperature=0, eos_id=eos) == alone
