"""The embedded model's recipe end to end at toy scale: world batches of every objective train."""
import dataclasses
import random

import pytest
import torch

from showo.errors import ConfigError
from showo.training.config import MixConfig, OptimConfig, TrainConfig
from showo.training.embedded import EmbeddedRecipe, build_model
from showo.training.text_tokenizer import train_bpe
from showo.training.trainer import Trainer
from showo.training.world_source import WorldBatchSource
from showo.tokenizers.magvit import MagvitConfig, MagvitV2


@pytest.fixture(scope="module")
def parts():
    recipe = EmbeddedRecipe(text_corpus_samples=40, hidden_size=32, num_layers=1, num_heads=2)
    from showo.training.embedded import world_texts

    tok = train_bpe(world_texts(recipe), 300, codebook_size=2 ** 6)
    vq = MagvitV2(MagvitConfig(encoder_ch=32, encoder_ch_mult=(1, 1, 1, 1), encoder_num_res_blocks=(1, 1, 1, 1),
                               decoder_ch=32, decoder_ch_mult=(1, 1, 1, 1), decoder_num_res_blocks=(1, 1, 1, 1),
                               z_channels=6, resolution=64))
    return recipe, tok, vq


def test_world_batches_have_every_objective_and_train(parts, tmp_path):
    recipe, tok, vq = parts
    mix = MixConfig(t2i=2, lm=1, mmu=2, story=1)
    source = WorldBatchSource(tok, vq, mix, recipe.max_seq_length)
    batch = source.parts(0, 0, 1)
    assert [p.name for p in batch] == ["t2i", "lm", "mmu", "story"]
    t2i, lm, mmu, story = batch
    assert t2i.ids.shape[1] == lm.ids.shape[1] == mmu.ids.shape[1] == recipe.max_seq_length + source.n + 3
    assert story.ids.shape[1] % 32 == 0 and story.here is not None and story.next is not None
    # understanding rows supervise only the answer: the decoded targets are the answer and eos
    # understanding rows supervise exactly the answer and eos: first answer token included
    stream = source.streams["mmu"]
    for row in range(mmu.ids.shape[0]):
        sample = stream.sample(row)
        targets = mmu.next[row][mmu.next[row] != -100].tolist()
        assert targets[-1] == tok.vocab.eos
        if sample["qtype"] != "caption":
            assert targets[:-1] == tok.encode(" " + sample["answer"]), (targets, sample["answer"])
    assert [p.ids.tolist() for p in source.parts(3, 0, 1)] == [p.ids.tolist() for p in source.parts(3, 0, 1)]
    model = build_model(tok, recipe, source.n)
    cfg = TrainConfig(output_dir=str(tmp_path), max_steps=3, mix=mix, optim=OptimConfig(lr=1e-3, warmup_steps=1))
    history = Trainer(model, source, cfg).train(progress=False)
    assert all(torch.isfinite(torch.tensor(m["loss"])) for m in history)
    assert {"loss_t2i", "loss_lm", "loss_mmu", "loss_story"} <= history[0].keys()


def test_caption_fraction_sets_the_share_of_caption_rows(parts):
    recipe, tok, vq = parts
    supervised = {}
    for fraction, captions in ((0.0, False), (1.0, True)):
        mix = MixConfig(t2i=0, lm=0, mmu=8, story=0, caption_fraction=fraction)
        source = WorldBatchSource(tok, vq, mix, max_text_len=128)  # room for a whole caption
        assert all((source.streams["mmu"].sample(i)["qtype"] == "caption") == captions for i in range(8))
        supervised[fraction] = (source.parts(0, 0, 1)[0].next != -100).sum().item()
    assert supervised[1.0] > 2 * supervised[0.0], supervised  # captions carry many more target tokens
    with pytest.raises(ConfigError, match="caption_fraction"):
        TrainConfig(mix=MixConfig(caption_fraction=1.5))


def test_story_dropout_trains_the_null_story_of_guided_generation(parts):
    """A dropped story row is one of its keyframes alone, `[<lvg>, bos, <soi>, codes, <eoi>, eos]`, with no
    text target: the null context `pipelines.interleaved` contrasts with. Rows not dropped are unchanged."""
    recipe, tok, vq = parts
    v = tok.vocab

    def stories(p):
        source = WorldBatchSource(tok, vq, MixConfig(t2i=0, lm=0, mmu=0, story=8, story_dropout_prob=p), 96)
        return source, source.parts(0, 0, 1)[0]

    source, kept = stories(0.0)
    _, null = stories(1.0)
    _, half = stories(0.5)
    n = source.n
    for row in range(8):
        frames = source._codes(source.streams["story"].sample(row)["images"])
        ids = null.ids[row]
        assert ids[:3].tolist() == [v.lvg, v.bos, v.soi] and ids[3 + n:5 + n].tolist() == [v.eoi, v.eos]
        assert (ids[5 + n:] == v.pad).all()
        codes = torch.where(null.here[row, 3:3 + n] >= 0, null.here[row, 3:3 + n], ids[3:3 + n])
        assert any(torch.equal(v.codes_to_ids(f), codes) for f in frames)  # one of the story's keyframes
        assert (null.next[row] == -100).all() and (null.here[row] >= 0).any()
        assert (kept.next[row] != -100).any()
    dropped = [(half.next[r] == -100).all().item() for r in range(8)]
    assert 0 < sum(dropped) < 8, dropped
    for r in range(8):
        if not dropped[r]:  # the same row, masked the same way, as without dropout
            width = int((kept.ids[r] != v.pad).sum())
            assert torch.equal(half.ids[r, :width], kept.ids[r, :width])
    with pytest.raises(ConfigError, match="story_dropout_prob"):
        TrainConfig(mix=MixConfig(story_dropout_prob=-0.1))


@pytest.mark.parametrize("questions", [1, 3])
def test_dropping_unread_positions_keeps_losses_and_gradients(parts, questions):
    """World rows carry padding (left of t2i prompts, after mmu answers, after lm text): the trainer drops
    the positions no loss depends on, and gets the losses and gradients of the full padded forward (also
    with several questions per understanding image, whose branches carry their own position ids)."""
    import torch.nn.functional as F

    from showo.training.batch import drop_unread, group_by_length, group_inputs, unread_positions
    from showo.training.trainer import HEAD_ROWS_MULTIPLE, group_loss_sums

    recipe, tok, vq = parts
    recipe = dataclasses.replace(recipe, max_seq_length=96)  # room for padding with this toy tokenizer
    mix = MixConfig(t2i=3, lm=2, mmu=3, story=1, mmu_questions=questions)
    source = WorldBatchSource(tok, vq, mix, recipe.max_seq_length)
    model = build_model(tok, recipe, source.n)
    for group in group_by_length(source.parts(0, 0, 1)):
        ids, mask, here, nxt, all_positions = group_inputs(group)
        targets = [here, nxt]
        kept, _, kept_targets, positions = drop_unread(ids, mask, targets, all_positions)
        unread = unread_positions(mask, (targets[0] != -100) | (targets[1] != -100))
        assert unread.sum(dim=1).min() > 0 and kept.shape[1] % 8 == 0 or kept.shape[1] == ids.shape[1]
        assert all(int((t != -100).sum()) == int((k != -100).sum()) for t, k in zip(targets, kept_targets))
        for row, full_row, row_unread in zip(positions, all_positions, unread):
            count = int((~row_unread).sum())
            assert torch.equal(row[:count], full_row[~row_unread])  # kept ones in order, with their position ids

        model.zero_grad()
        head_rows = []
        hook = model.showo.lm_head.register_forward_hook(lambda m, args, out: head_rows.append(args[0].shape[0]))
        fast = torch.stack(group_loss_sums(model, group))
        hook.remove()
        assert head_rows[0] % HEAD_ROWS_MULTIPLE == 0 or head_rows[0] == kept.numel()  # few distinct shapes
        fast.sum().backward()
        fast_grads = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        logits = model(ids, attention_mask=mask, position_ids=all_positions).flatten(0, 1)
        full, row = [], 0
        for p in group:
            n = p.ids.shape[0] * p.ids.shape[1]
            full.append(sum(F.cross_entropy(logits[row:row + n], t.flatten(), ignore_index=-100, reduction="sum")
                            for t in (p.here, p.next) if t is not None))
            row += n
        torch.stack(full).sum().backward()
        assert torch.allclose(fast, torch.stack(full), rtol=1e-5), (fast, full)
        for (name, p), a in zip(model.named_parameters(), fast_grads):  # summed losses: gradients up to ~5, and
            # the LM head's row count changes how its weight gradient is summed (differences up to 3e-5 seen)
            assert torch.allclose(a, p.grad, rtol=1e-4, atol=1e-4), (name, float((a - p.grad).abs().max()))


def test_several_questions_per_image_compute_exactly_their_one_question_rows(parts):
    """`mix.mmu_questions`: one row holds several question-answer branches after one image prefix; each
    branch gives the logits its own one-question row gives, so the losses are those rows' losses (including
    a caption answer cut at `max_text_len` as `mmu_sequence` cuts it)."""
    from showo.data.language import captions
    from showo.prompting import mmu_question_text
    from showo.training.batch import cat_parts, mmu_answer_part, mmu_branch_part
    from showo.training.trainer import group_loss_sums

    recipe, tok, vq = parts
    source = WorldBatchSource(tok, vq, MixConfig(t2i=0, lm=0, mmu=1, story=0), recipe.max_seq_length)
    model = build_model(tok, recipe, source.n).eval()
    codes = torch.randint(0, 2 ** 6, (1, source.n), generator=torch.Generator().manual_seed(0))
    stream = source.streams["mmu"]
    qa = [(tok.encode(mmu_question_text(q)), tok.encode(" " + a)) for q, a, _ in stream.questions(5, 3)]
    caption = captions(stream.scene(5), random.Random(0))[0]
    qa.append((tok.encode(mmu_question_text("Describe the image.")), tok.encode(" " + caption)))
    t = max(len(q) for q, _ in qa) + 4  # the caption is cut, the short answers are not
    assert len(qa[-1][0]) + len(qa[-1][1]) + 2 > t
    branched = mmu_branch_part(tok.vocab, codes, [qa], t)
    single = cat_parts([mmu_answer_part(tok.vocab, codes, q, a, t) for q, a in qa])
    assert (branched.next != -100).sum() == (single.next != -100).sum()
    assert branched.next[branched.next != -100].tolist() == single.next[single.next != -100].tolist()
    with torch.no_grad():
        out = model(branched.ids, attention_mask=branched.mask, position_ids=branched.positions)
        ref = model(single.ids, attention_mask=single.mask)
        torch.testing.assert_close(out[branched.next != -100], ref[single.next != -100], rtol=1e-4, atol=1e-4)
        fast, full = group_loss_sums(model, [branched])[0], group_loss_sums(model, [single])[0]
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-4)


def test_several_questions_per_image_in_world_batches(parts, tmp_path):
    """The branches of an understanding row are the questions of that row's scene, the first its one-question
    row's; the mix validates the count and trains."""
    from showo.data.language import _main_captions
    from showo.data.world import ordered

    recipe, tok, vq = parts
    mix = MixConfig(t2i=1, lm=1, mmu=4, story=0, mmu_questions=4, caption_fraction=0.3)
    source = WorldBatchSource(tok, vq, mix, max_text_len=160)  # no text cut with this toy tokenizer
    mmu = source.parts(0, 0, 1)[-1]
    assert mmu.name == "mmu" and mmu.positions is not None
    stream, kinds = source.streams["mmu"], []
    for row in range(4):
        asked = stream.questions(row, 4)
        assert asked[0][:2] == (stream.sample(row)["question"], stream.sample(row)["answer"])
        targets = mmu.next[row][mmu.next[row] != -100].tolist()
        ends = [k for k, t in enumerate(targets) if t == tok.vocab.eos]
        assert len(ends) == 4 and ends[-1] == len(targets) - 1  # four answers, each closed by eos
        answers = [tok.decode(targets[a + 1:e]) for a, e in zip([-1, *ends], ends)]
        for (_, answer, qtype), got in zip(asked, answers):
            kinds.append(qtype)
            if qtype == "caption":  # a complete description (every object's colour, shape and position)
                assert got.strip() in _main_captions(ordered(stream.scene(row).objects)), got
            else:
                assert got.strip() == answer
    assert "caption" in kinds and len(set(kinds)) > 2
    with pytest.raises(ConfigError, match="mmu_questions"):
        TrainConfig(mix=MixConfig(mmu_questions=0))
    model = build_model(tok, recipe, source.n)
    cfg = TrainConfig(output_dir=str(tmp_path), max_steps=2, mix=mix, optim=OptimConfig(lr=1e-3, warmup_steps=1))
    history = Trainer(model, source, cfg).train(progress=False)
    assert all(torch.isfinite(torch.tensor(m["loss_mmu"])) for m in history)


def test_qtype_weights_reach_the_understanding_stream_and_are_checked(parts):
    recipe, tok, vq = parts
    mix = TrainConfig.from_dict({"mix": {"mmu_qtype_weights": {"relation": 2, "position": 3}}}).mix
    assert mix.mmu_qtype_weights == {"relation": 2.0, "position": 3.0}
    assert WorldBatchSource(tok, vq, mix, 96).streams["mmu"].qtype_weights == mix.mmu_qtype_weights
    for bad in ({"relation": -1}, {"colours": 1}, ["relation"]):
        with pytest.raises(ConfigError, match=r"mix\.mmu_qtype_weights"):
            TrainConfig.from_dict({"mix": {"mmu_qtype_weights": bad}})


def test_world_images_must_match_the_image_tokenizer(parts):
    """32 px scenes through a 64 px tokenizer gave 16-token images to a model built for 64, silently."""
    from showo.data.world import WorldConfig

    recipe, tok, vq = parts
    with pytest.raises(ConfigError, match="the world's images are 32 px but the image tokenizer's resolution is 64"):
        WorldBatchSource(tok, vq, MixConfig(), 40, world=WorldConfig(image_size=32))
