"""Sequence builders against the official `UniversalPrompting` / inference-script layouts (exact ids and labels)."""
import pytest
import torch

from showo.prompting import (
    IGNORE_INDEX,
    SYSTEM_PROMPT,
    Vocabulary,
    clip_image_slot,
    clip_question_text,
    lm_sequence,
    lvg_gen_sequence,
    lvg_sequence,
    mmu_clip_prompt_ids,
    mmu_prompt_ids,
    mmu_question_text,
    mmu_sequence,
    t2i_gen_sequence,
    t2i_sequence,
    t2v_gen_sequence,
    t2v_sequence,
    text_condition,
)


def _max_text_len(golden) -> int:
    t = golden.meta["omegaconf_config_passed_as_config"]["dataset"]["preprocessing"]["max_seq_length"]
    assert t == golden.layout["max_seq_length"]
    return t


def _equal(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, a.shape, b.dtype, b.shape)
    assert torch.equal(a, b), f"\n{a}\n!=\n{b}"


# ------------------------------------------------------------------------------------------------ golden


@pytest.mark.golden
def test_t2i_gen_logits_case(golden, golden_tokenizer):
    info, d = golden.info("t2i_logits"), golden.case("t2i_logits")
    ids = t2i_gen_sequence(golden_tokenizer.vocab, golden_tokenizer.encode_batch(info["prompts"]),
                           d["input.image_tokens"], _max_text_len(golden))
    _equal(ids, d["input.input_ids"])
    assert ids.shape[1] == golden.layout["t2i_seq_len"]
    assert ids[2, 0] == golden_tokenizer.vocab.t2i  # the truncated row has no padding


@pytest.mark.golden
@pytest.mark.parametrize("case", ["t2i_generate_cfg", "t2i_inpaint", "t2i_generate_nocfg"])
def test_t2i_gen_and_uncond(golden, golden_tokenizer, case):
    info, d = golden.info(case), golden.case(case)
    vocab, t = golden_tokenizer.vocab, _max_text_len(golden)
    image = d["input.image_tokens"]
    _equal(t2i_gen_sequence(vocab, golden_tokenizer.encode_batch(info["prompts"]), image, t), d["input.input_ids"])
    if "input.uncond_input_ids" in d:
        uncond = t2i_gen_sequence(vocab, golden_tokenizer.encode_batch([""] * image.shape[0]), image, t)
        _equal(uncond, d["input.uncond_input_ids"])
        _equal(t2i_gen_sequence(vocab, [[]] * image.shape[0], image, t), uncond)


@pytest.mark.golden
def test_t2i_gen_extrapolation_prompts(golden, golden_tokenizer):
    d = golden.case("extrapolate_grid")
    for name, run in golden.info("extrapolate_grid")["runs"].items():
        steps = sorted({k.split(".")[1] for k in d if k.startswith(name + ".step")})
        for k, step in enumerate(steps):  # step k of a chain uses prompt k for the whole batch
            grid = d[f"{name}.{step}.input_grid"]
            prompts = [run["prompts"][k]] * grid.shape[0]
            ids = t2i_gen_sequence(golden_tokenizer.vocab, golden_tokenizer.encode_batch(prompts), grid,
                                   _max_text_len(golden))
            _equal(ids, d[f"{name}.{step}.input_ids"])


@pytest.mark.golden
def test_mmu_logits_case(golden, golden_tokenizer):
    info, d = golden.info("mmu_logits"), golden.case("mmu_logits")
    ids, labels = mmu_sequence(golden_tokenizer.vocab, d["input.image_tokens"],
                               golden_tokenizer.encode_batch(info["questions"]), _max_text_len(golden))
    _equal(ids, d["input.input_ids"])
    _equal(labels, d["aux.labels"])


@pytest.mark.golden
def test_lm_logits_case(golden, golden_tokenizer):
    info, d = golden.info("lm_logits"), golden.case("lm_logits")
    ids, labels = lm_sequence(golden_tokenizer.vocab, golden_tokenizer.encode_batch(info["texts"]), info["max_seq_len"])
    _equal(ids, d["input.input_ids"])
    _equal(labels, d["aux.labels"])
    assert ids[2, -1] != golden_tokenizer.vocab.eos  # truncated without eos


def _train_inputs(golden, golden_tokenizer):
    info, d = golden.info("train_losses"), golden.case("train_losses")
    cfg = info["config_passed_as_config"]
    return info, d, cfg["dataset"]["preprocessing"]["max_seq_length"], cfg["training"]["cond_dropout_prob"]


@pytest.mark.golden
def test_train_t2i_with_given_draw(golden, golden_tokenizer):
    info, d, t, p = _train_inputs(golden, golden_tokenizer)
    ids, labels = t2i_sequence(golden_tokenizer.vocab, golden_tokenizer.encode_batch(info["t2i_prompts"]),
                               d["output.t2i_image_input_ids"], d["output.t2i_image_labels"], t,
                               cond_dropout_prob=p, dropout_draw=d["aux.cond_dropout_draw"])
    _equal(ids, d["aux.t2i_input_ids"])
    _equal(labels, d["aux.t2i_labels"])
    dropped = (d["aux.cond_dropout_draw"] < p).nonzero().flatten().tolist()
    assert dropped == info["cond_dropped_t2i_rows"]


@pytest.mark.golden
def test_train_t2i_seeded_rng_order(golden, golden_tokenizer):
    # Global RNG: seed, the masking function's rand(B) and rand(B, N), then the builder's own rand(B).
    info, d, t, p = _train_inputs(golden, golden_tokenizer)
    image = d["input.t2i_image_tokens"]
    b, n = image.shape
    seed = int(info["seeds"]["global RNG"].split("manual_seed(")[1].split(")")[0])
    torch.manual_seed(seed)
    _equal(torch.rand(b), d["aux.mask_timesteps_draw"])
    _equal(torch.rand(b, n), d["aux.mask_randperm_draw"])
    ids, labels = t2i_sequence(golden_tokenizer.vocab, golden_tokenizer.encode_batch(info["t2i_prompts"]),
                               d["output.t2i_image_input_ids"], d["output.t2i_image_labels"], t, cond_dropout_prob=p)
    _equal(ids, d["aux.t2i_input_ids"])
    _equal(labels, d["aux.t2i_labels"])
    # the same with an explicit generator in the same state
    g = torch.Generator().manual_seed(seed)
    torch.rand(b, generator=g), torch.rand(b, n, generator=g)
    again = t2i_sequence(golden_tokenizer.vocab, golden_tokenizer.encode_batch(info["t2i_prompts"]),
                         d["output.t2i_image_input_ids"], d["output.t2i_image_labels"], t, cond_dropout_prob=p,
                         generator=g)
    _equal(again.ids, ids)


@pytest.mark.golden
def test_train_lm_and_mmu(golden, golden_tokenizer):
    info, d, t, _ = _train_inputs(golden, golden_tokenizer)
    vocab = golden_tokenizer.vocab
    lm = lm_sequence(vocab, golden_tokenizer.encode_batch(info["lm_texts"]), d["aux.t2i_input_ids"].shape[-1])
    _equal(lm.ids, d["aux.lm_input_ids"])
    _equal(lm.labels, d["aux.lm_labels"])
    mmu = mmu_sequence(vocab, d["input.mmu_image_tokens"], golden_tokenizer.encode_batch(info["mmu_captions"]), t)
    _equal(mmu.ids, d["aux.mmu_input_ids"])
    _equal(mmu.labels, d["aux.mmu_labels"])
    assert lm.ids.shape[1] == mmu.ids.shape[1] == info["seq_len"]
    _equal(torch.cat([d["aux.t2i_input_ids"], lm.ids, mmu.ids]), d["input.input_ids"])
    _equal(torch.cat([d["aux.t2i_labels"], lm.labels, mmu.labels]), d["input.labels"])


@pytest.mark.golden
def test_mmu_generate_prompts(golden, golden_tokenizer):
    d, vocab, n = golden.case("mmu_generate"), golden_tokenizer.vocab, golden.layout["num_vq_tokens"]
    for run in golden.info("mmu_generate")["runs"]:
        expected = d[f"{run['prefix']}.input.input_ids"]
        assert mmu_question_text(run["question"]) == run["prompt_text"]
        image = expected[0, 2:2 + n]  # the image tokens are only stored inside the prompt
        ids = mmu_prompt_ids(vocab, image, golden_tokenizer.encode(mmu_question_text(run["question"])))
        _equal(ids, expected)


@pytest.mark.golden
def test_mmu_clip_prompts(golden, golden_tokenizer):
    info, d, vocab = golden.info("mmu_clip"), golden.case("mmu_clip"), golden_tokenizer.vocab
    assert SYSTEM_PROMPT == info["system_prompt"]
    system = golden_tokenizer.encode(SYSTEM_PROMPT)
    _equal(torch.tensor([system]), d["input.input_ids_system"])
    s = len(system)
    assert s == info["system_prompt_len"]
    for run in info["runs"]:
        key = f"{run['prefix']}.input.input_ids_llava"
        if key not in d:
            continue
        assert clip_question_text(run["question"]) == run["prompt_text"]
        question = golden_tokenizer.encode(clip_question_text(run["question"]))
        assert len(question) == run["question_ids_len"]
        ids = mmu_clip_prompt_ids(vocab, system, question)
        _equal(ids, d[key])
        slot = clip_image_slot(s)
        assert ids[0, slot - 1] == vocab.soi and ids[0, slot] == vocab.eoi
        assert ids.shape[1] + info["num_image_tokens"] == run["seq_len"]


@pytest.mark.golden
def test_lvg_and_t2v_builders(golden, golden_tokenizer):
    info, d, vocab = golden.info("lvg_masks"), golden.case("lvg_masks"), golden_tokenizer.vocab
    t, p = _max_text_len(golden), info["cond_dropout_prob"]
    texts = golden_tokenizer.encode_batch(info["prompt_texts"])
    seed = int(next(c for c in info["calls"] if "manual_seed(" in c).split("manual_seed(")[1].split(")")[0])
    b = len(texts)

    torch.manual_seed(seed)
    lvg = lvg_sequence(vocab, texts, d["input.image_ids"], d["input.image_labels"], t, cond_dropout_prob=p)
    t2v = t2v_sequence(vocab, texts, d["input.video_ids"], d["input.video_labels"], t, cond_dropout_prob=p)
    _equal(lvg.ids, d["output.lvg_input_ids"])
    _equal(lvg.labels, d["output.lvg_labels"])
    _equal(t2v.ids, d["output.t2v_input_ids"])
    _equal(t2v.labels, d["output.t2v_labels"])

    # the draws the builders consumed, in order
    torch.manual_seed(seed)
    _equal(torch.rand(b), d["aux.lvg_cond_dropout_draw"])
    _equal(torch.rand(b), d["aux.lvg_unused_second_draw"])
    _equal(torch.rand(b), d["aux.t2v_cond_dropout_draw"])
    assert (d["aux.lvg_cond_dropout_draw"] < p).nonzero().flatten().tolist() == info["lvg_dropped_rows"]
    assert (d["aux.t2v_cond_dropout_draw"] < p).nonzero().flatten().tolist() == info["t2v_dropped_rows"]

    # given draws reproduce the same rows without touching the RNG
    state = torch.get_rng_state()
    lvg2 = lvg_sequence(vocab, texts, d["input.image_ids"], d["input.image_labels"], t, cond_dropout_prob=p,
                        dropout_draw=d["aux.lvg_cond_dropout_draw"])
    t2v2 = t2v_sequence(vocab, texts, d["input.video_ids"], d["input.video_labels"], t, cond_dropout_prob=p,
                        dropout_draw=d["aux.t2v_cond_dropout_draw"])
    assert torch.equal(torch.get_rng_state(), state)
    _equal(lvg2.ids, lvg.ids)
    _equal(t2v2.labels, t2v.labels)

    _equal(lvg_gen_sequence(vocab, texts, d["input.image_ids"], t), d["output.lvg_gen_input_ids"])
    _equal(t2v_gen_sequence(vocab, texts, d["input.video_ids"], t), d["output.t2v_gen_input_ids"])


# -------------------------------------------------------------------------------------------- unit tests

TINY = Vocabulary.standard(text_size=20, eos=19, codebook_size=8)  # pad 20, soi 21, ..., image 30..37, mask 38


def test_real_phi_t2i_length():
    v = Vocabulary.standard(text_size=50295, eos=50256, codebook_size=8192)
    t, n = 128, 256
    image = torch.full((2, n), v.mask)
    labels = torch.full((2, n), IGNORE_INDEX)
    ids, lab = t2i_sequence(v, [[10, 11, 12], list(range(300))], image, labels, t, dropout_draw=torch.tensor([0.5, 0.5]))
    assert ids.shape == lab.shape == (2, t + n + 3) == (2, 387)
    assert ids[0, :t + 1].tolist() == [v.pad] * (t + 1 - 6) + [v.t2i, v.bos, 10, 11, 12, v.eos]
    assert ids[1, :t + 1].tolist() == [v.t2i, v.bos, *range(t - 2), v.eos]
    assert ids[0, t + 1] == v.soi and ids[0, -1] == v.eoi
    assert t2i_gen_sequence(v, [[]], image[:1], t).shape == (1, 387)
    mmu = mmu_sequence(v, torch.full((1, n), v.image_offset), [[1, 2]], t)
    assert mmu.ids.shape == (1, 387)
    assert lm_sequence(v, [[1, 2]], 387).ids.shape == (1, 387)


def test_text_condition_rules():
    v = TINY
    assert text_condition(v, [], v.t2i, 5) == [v.pad, v.pad, v.pad, v.t2i, v.bos, v.eos]
    assert text_condition(v, [v.bos, 3], v.t2i, 5) == [v.pad, v.pad, v.t2i, v.bos, 3, v.eos]  # bos not doubled
    assert text_condition(v, [3, 4, 5, 6], v.t2i, 5) == [v.t2i, v.bos, 3, 4, 5, v.eos]  # 7 ids > 6: cut, end with eos
    assert text_condition(v, [3, 4, 5], v.t2i, 5) == [v.t2i, v.bos, 3, 4, 5, v.eos]
    assert text_condition(v, [3, 4, 5], v.t2i, 5, drop=True) == [v.pad] * 3 + [v.t2i, v.bos, v.eos]


def test_condition_dropout_threshold_and_labels():
    v = TINY
    image = torch.tensor([[30, 38], [31, 38]])
    labels = torch.tensor([[IGNORE_INDEX, 33], [IGNORE_INDEX, 35]])
    out = t2i_sequence(v, [[3], [4]], image, labels, 4, cond_dropout_prob=0.5, dropout_draw=torch.tensor([0.49, 0.5]))
    assert out.ids.tolist() == [[v.pad, v.pad, v.t2i, v.bos, v.eos, v.soi, 30, 38, v.eoi],
                                [v.pad, v.t2i, v.bos, 4, v.eos, v.soi, 31, 38, v.eoi]]
    assert out.labels.tolist() == [[-100, -100, v.t2i, v.bos, v.eos, v.soi, -100, 33, v.eoi],
                                   [-100, v.t2i, v.bos, 4, v.eos, v.soi, -100, 35, v.eoi]]


def test_lvg_draws_twice_t2i_once():
    v = TINY
    image = torch.full((3, 2), v.mask)
    labels = torch.full((3, 2), IGNORE_INDEX)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    lvg_sequence(v, [[1]] * 3, image, labels, 4, generator=g1)
    t2i_sequence(v, [[1]] * 3, image, labels, 4, generator=g2)
    torch.rand(3, generator=g2)
    assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))
    g3, g4 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    lvg_sequence(v, [[1]] * 3, image, labels, 4, generator=g3, draw_unused=False)
    torch.rand(3, generator=g4)
    assert torch.equal(g3.get_state(), g4.get_state())


def test_mmu_truncation_and_lm_padding():
    v = TINY
    mmu = mmu_sequence(v, torch.tensor([[30, 31]]), [[1, 2, 3, 4, 5]], 4)
    assert mmu.ids.tolist() == [[v.mmu, v.soi, 30, 31, v.eoi, v.bos, 1, 2, v.eos]]
    assert mmu.labels.tolist() == [[-100] * 5 + [v.bos, 1, 2, v.eos]]
    lm = lm_sequence(v, [[1], [1, 2, 3, 4]], 4)
    assert lm.ids.tolist() == [[v.bos, 1, v.eos, v.pad], [v.bos, 1, 2, 3]]
    assert lm.labels.tolist() == [[v.bos, 1, v.eos, -100], [v.bos, 1, 2, 3]]
    assert lm_sequence(v, [[1, 2, 3]], 10, text_max_tokens=1).ids[0, :3].tolist() == [v.bos, 1, v.eos]


def test_clip_prompt_layout_and_text():
    v = TINY
    ids = mmu_clip_prompt_ids(v, [5, 6, 7], [8, 9])
    assert ids.tolist() == [[v.mmu, 5, 6, 7, v.soi, v.eoi, 8, 9]]
    assert ids[0, clip_image_slot(3)] == v.eoi
    assert clip_question_text("hi there") == "USER: hi there ASSISTANT:"
    assert clip_question_text("") == "USER:ASSISTANT:"
    assert mmu_prompt_ids(v, torch.tensor([30, 31]), [4]).tolist() == [[v.mmu, v.soi, 30, 31, v.eoi, v.bos, 4]]


def test_input_validation():
    v = TINY
    with pytest.raises(ValueError, match="image token ids"):
        t2i_gen_sequence(v, [[1]], torch.tensor([[0, 1]]), 4)  # raw codes, not ids
    with pytest.raises(ValueError, match="texts but"):
        t2i_gen_sequence(v, [[1], [2]], torch.tensor([[30, 31]]), 4)
    with pytest.raises(ValueError, match="dropout_draw"):
        t2i_sequence(v, [[1]], torch.tensor([[30]]), torch.tensor([[-100]]), 4, dropout_draw=torch.rand(2))
    with pytest.raises(ValueError, match="batch 1"):
        mmu_prompt_ids(v, torch.tensor([[30], [31]]), [1])


def test_builders_refuse_numbers_of_the_wrong_kind():
    """A float text id was truncated to a token (1.7 -> 1), text_max_tokens=-1 cut the last token, and a float
    max_text_len or a negative mask length failed deep inside."""
    from showo.prompting import causal_mask
    from showo.prompting.sequences import lm_sequence, mmu_prompt_ids, t2i_gen_sequence

    from showo.errors import InputError

    image = torch.full((1, 4), TINY.mask)
    assert issubclass(InputError, ValueError)  # typed (one line on the command line), and still a ValueError
    with pytest.raises(InputError, match="text ids must be whole numbers, got 1.7"):
        mmu_prompt_ids(TINY, TINY.image_offset + torch.zeros(4, dtype=torch.long), [1.7])
    with pytest.raises(InputError, match="max_text_len must be >= 2"):
        t2i_gen_sequence(TINY, [[1]], image, 2.5)
    with pytest.raises(InputError, match="text_max_tokens must be a positive integer or None, got -1"):
        lm_sequence(TINY, [[1, 2, 3]], 8, text_max_tokens=-1)
    with pytest.raises(InputError, match="length must be an integer >= 0, got -1"):
        causal_mask(-1)
