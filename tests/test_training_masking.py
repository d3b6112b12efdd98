"""Training-time masking of image tokens: the official `mask_or_random_replace_tokens` batch from case
`train_losses` (bit-exact, global RNG) plus invariants of the masking."""
from __future__ import annotations

import re

import pytest
import torch

from showo.sampling.schedules import get_mask_schedule
from showo.training.masking import IGNORE_INDEX, mask_image_tokens

CASE = "train_losses"


def _global_seed(golden) -> int:
    return int(re.search(r"torch\.manual_seed\((\d+)\)", golden.info(CASE)["seeds"]["global RNG"]).group(1))


@pytest.mark.golden
def test_mask_image_tokens_golden(golden):
    d, info, layout = golden.case(CASE), golden.info(CASE), golden.layout
    training = info["config_passed_as_config"]["training"]
    tokens = d["input.t2i_image_tokens"]
    assert tokens.shape[1] == layout["num_vq_tokens"]
    schedule = get_mask_schedule(training["mask_schedule"])

    torch.manual_seed(_global_seed(golden))
    input_ids, labels, mask_prob = mask_image_tokens(tokens, layout["mask_token_id"], schedule,
                                                     min_masking_rate=training["min_masking_rate"])
    # The official script draws its condition-dropout uniforms next: our draws must have left the RNG there.
    assert torch.equal(torch.rand(tokens.shape[0]), d["aux.cond_dropout_draw"])

    assert torch.equal(input_ids, d["output.t2i_image_input_ids"])
    assert torch.equal(labels, d["output.t2i_image_labels"])
    assert torch.equal(mask_prob, d["output.mask_prob"])
    assert torch.equal(mask_prob, schedule(d["aux.mask_timesteps_draw"]))


@pytest.mark.golden
def test_mask_image_tokens_generator_matches_global_rng(golden):
    d, layout = golden.case(CASE), golden.layout
    tokens, schedule = d["input.t2i_image_tokens"], get_mask_schedule("cosine")
    got = mask_image_tokens(tokens, layout["mask_token_id"], schedule,
                            generator=torch.Generator().manual_seed(_global_seed(golden)))
    assert torch.equal(got[0], d["output.t2i_image_input_ids"])
    assert torch.equal(got[1], d["output.t2i_image_labels"])


def test_always_masks_at_least_one_and_labels_ignore_unmasked():
    mask_id, n = 99, 24
    tokens = torch.randint(0, mask_id, (64, n), generator=torch.Generator().manual_seed(0))
    for name in ("cosine", "linear", "pow2", "sigmoid"):
        g = torch.Generator().manual_seed(1)
        input_ids, labels, mask_prob = mask_image_tokens(tokens, mask_id, get_mask_schedule(name), generator=g)
        masked = input_ids == mask_id
        assert (masked.sum(-1) >= 1).all()
        # exactly round(N * p) (at least 1) positions per row
        assert torch.equal(masked.sum(-1), (n * mask_prob).round().clamp(min=1).long())
        assert torch.equal(labels == IGNORE_INDEX, ~masked)
        assert torch.equal(labels[masked], tokens[masked])
        assert torch.equal(input_ids[~masked], tokens[~masked])
        assert labels.dtype == tokens.dtype == input_ids.dtype


def test_tiny_ratio_still_masks_one_token_and_min_rate_clips():
    tokens = torch.arange(16).repeat(4, 1)
    nearly_zero = lambda t: torch.zeros_like(t)  # noqa: E731
    input_ids, labels, _ = mask_image_tokens(tokens, 100, nearly_zero, generator=torch.Generator().manual_seed(2))
    assert ((input_ids == 100).sum(-1) == 1).all()
    assert ((labels != IGNORE_INDEX).sum(-1) == 1).all()
    _, _, mask_prob = mask_image_tokens(tokens, 100, nearly_zero, min_masking_rate=0.5,
                                        generator=torch.Generator().manual_seed(2))
    assert torch.equal(mask_prob, torch.full((4,), 0.5))


def test_t2i_rows_apply_condition_dropout():
    """mix.cond_dropout_prob reaches the rows (dropped, it was 0 without any test failing): at 1 every row holds
    the null prompt, at 0 its own text."""
    import dataclasses

    from showo.tiny import tiny_random_pipeline
    from showo.training.batch import t2i_part
    from showo.training.config import MixConfig

    vocab = tiny_random_pipeline().tokenizer.vocab
    codes, text = torch.zeros(2, 4, dtype=torch.long), [[10, 11], [12]]
    rows = {p: t2i_part(vocab, text, codes, 8, dataclasses.replace(MixConfig(), cond_dropout_prob=p),
                        torch.Generator().manual_seed(0))[0].ids for p in (0.0, 1.0)}
    null = t2i_part(vocab, [[], []], codes, 8, dataclasses.replace(MixConfig(), cond_dropout_prob=0.0),
                    torch.Generator().manual_seed(0))[0].ids
    assert torch.equal(rows[1.0][:, :9], null[:, :9]) and not torch.equal(rows[0.0][:, :9], null[:, :9])
    assert 10 in rows[0.0][0].tolist() and 12 in rows[0.0][1].tolist()


def test_t2i_targets_start_at_soi():
    """The official t2i loss: nothing in the text region (T + 1 positions), then <soi>, the masked codes, <eoi>."""
    from showo.tiny import tiny_random_pipeline
    from showo.training.batch import t2i_part
    from showo.training.config import MixConfig

    vocab = tiny_random_pipeline().tokenizer.vocab
    part = t2i_part(vocab, [[10, 11, 12]], torch.arange(4)[None], 8, MixConfig(), torch.Generator().manual_seed(0))[0]
    here = part.here[0]
    assert (here[:9] == IGNORE_INDEX).all() and here[9] == vocab.soi and here[-1] == vocab.eoi
    codes = here[10:-1]
    assert ((codes == IGNORE_INDEX) | (codes == vocab.codes_to_ids(torch.arange(4)))).all()
    assert (codes != IGNORE_INDEX).any() and part.next is None
