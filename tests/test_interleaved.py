"""Interleaved text-and-image rows: layout, masks, training targets, and generation (random and scripted)."""
import pytest
import torch
import torch.nn.functional as F

from showo.errors import ConfigError, InputError, OutputError
from showo.model import Showo
from showo.pipelines.interleaved import generate_interleaved
from showo.prompting import IGNORE_INDEX, causal_mask, lvg_mask
from showo.prompting.interleaved import interleaved_batch, interleaved_mask, interleaved_sequence
from showo.training.masking import mask_interleaved_images
from showo.sampling.schedules import get_mask_schedule
from showo.tiny import tiny_random_pipeline


@pytest.fixture(scope="module")
def pipe():
    return tiny_random_pipeline(seed=0)


class ScriptedShowo(Showo):
    """The tiny model with a large bias on `script[p]` in the logits of absolute position p (the logits that
    choose the token at p + 1): a model that writes a chosen pattern of text and `<soi>`."""

    def __init__(self, base: Showo, script: dict[int, int]):
        super().__init__(base.config)
        self.load_state_dict(base.state_dict())
        self.script = script
        self.eval()

    def forward(self, input_ids=None, input_embeddings=None, attention_mask=None, position_ids=None, cache=None,
                start=0, logits_slice=None, vocab_slice=None):
        logits = super().forward(input_ids, input_embeddings, attention_mask, position_ids, cache, start, logits_slice,
                                 vocab_slice)
        first = vocab_slice.start if vocab_slice is not None else 0
        q = (input_ids if input_ids is not None else input_embeddings).shape[1]
        positions = torch.arange(start, start + q)
        positions = positions[logits_slice] if logits_slice is not None else positions
        for i, p in enumerate(positions.tolist()):
            if p in self.script and 0 <= self.script[p] - first < logits.shape[-1]:
                logits[:, i, self.script[p] - first] += 1e4
        return logits


def _script(plan: list, prompt_length: int, n: int, soi: int) -> dict[int, int]:
    """Positions whose logits must produce `plan` (text ids and <soi>), given N-token image blocks. An item
    `(token, "image")` scripts `token` at a position where the loop is expected to open an image anyway."""
    script, pos = {}, prompt_length - 1
    for item in plan:
        token, opens_image = (item[0], True) if isinstance(item, tuple) else (item, item == soi)
        script[pos] = token
        pos += n + 2 if opens_image else 1
    return script


def _scripted_pipeline(plan_fn):
    pipe = tiny_random_pipeline(seed=0)
    v, n = pipe.vocab, pipe.model.config.num_vq_tokens
    prompt = "Tell me."
    plan = plan_fn(pipe)
    pipe.model = ScriptedShowo(pipe.model, _script(plan, 2 + len(pipe.tokenizer.encode(prompt)), n, v.soi))
    return pipe, prompt


# ------------------------------------------------------------------------------------------ layout and masks


def test_sequence_layout_and_targets(pipe):
    v = pipe.vocab
    img_a, img_b = torch.tensor([1, 2, 3]), torch.tensor([4, 5, 6])
    row = interleaved_sequence(v, [[10, 11], img_a, [12], img_b])
    o = v.image_offset
    assert row.ids.tolist() == [v.lvg, v.bos, 10, 11, v.soi, o + 1, o + 2, o + 3, v.eoi, 12, v.soi, o + 4, o + 5,
                                o + 6, v.eoi, v.eos]
    assert row.is_image.nonzero().flatten().tolist() == [5, 6, 7, 11, 12, 13]
    targets = (row.text_labels != IGNORE_INDEX).nonzero().flatten().tolist()
    assert targets == [1, 2, 3, 4, 9, 10, 15]  # bos, text, <soi>, text, <soi>, eos; no <lvg>, codes or <eoi>
    with pytest.raises(ValueError, match="image codes"):
        interleaved_sequence(v, [torch.tensor([v.codebook_size])])


def test_mask_is_lvg_mask_on_unpadded_rows_and_text_sees_earlier_images(pipe):
    v = pipe.vocab
    row = interleaved_sequence(v, [[10, 11], torch.arange(4), [12, 13], torch.arange(4, 8), [14]]).ids
    mask = interleaved_mask(row, v)
    assert torch.equal(mask, lvg_mask(row[None], v)[0, 0])
    first_block = slice(4, 10)
    assert bool(mask[10:, first_block].all())  # everything after the first image sees all of it
    assert not bool(mask[:4, first_block].any())  # the text before it never does
    assert bool(mask[first_block, first_block].all())  # bidirectional inside the block
    text_only = interleaved_sequence(v, [[10, 11, 12]]).ids
    assert torch.equal(interleaved_mask(text_only, v), causal_mask(text_only.shape[0]))
    for bad in ([v.soi, 5, v.soi, v.eoi, v.eoi], [v.eoi], [1, v.soi, 2]):
        with pytest.raises(ValueError):
            interleaved_mask(torch.tensor(bad), v)


def test_mask_rows_from_a_position_are_those_rows_of_the_whole_mask(pipe):
    v = pipe.vocab  # decoding builds only the rows it runs (the whole [L, L] mask cost ms per text token)
    row = interleaved_sequence(v, [[10, 11], torch.arange(4), [12, 13], torch.arange(4, 8), [14]]).ids
    whole = interleaved_mask(row, v)
    for first in range(row.shape[0] + 1):  # before, inside and after each block, and no row at all
        assert torch.equal(interleaved_mask(row, v, first_row=first), whole[first:])
        assert torch.equal(causal_mask(row.shape[0], first_row=first), causal_mask(row.shape[0])[first:])
    assert torch.equal(causal_mask(3), torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool))
    for bad in (-1, row.shape[0] + 1, 1.5):
        with pytest.raises(ValueError, match="first_row"):
            interleaved_mask(row, v, first_row=bad)


def test_left_padded_batch(pipe):
    v = pipe.vocab
    rows = [interleaved_sequence(v, [[10], torch.arange(4), [11, 12]]).ids, interleaved_sequence(v, [[10]]).ids]
    batch = interleaved_batch(rows, v)
    length = rows[0].shape[0]
    assert batch.ids.shape == (2, length) and batch.mask.shape == (2, 1, length, length)
    pad = length - rows[1].shape[0]
    assert bool((batch.ids[1, :pad] == v.pad).all())
    assert torch.equal(batch.mask[1, 0, pad:, pad:], interleaved_mask(rows[1], v))
    assert not bool(batch.mask[1, 0, pad:, :pad].any())
    assert batch.positions[1, pad:].tolist() == list(range(rows[1].shape[0]))


def test_training_targets_give_finite_losses(pipe):
    v, model = pipe.vocab, pipe.model
    n = model.config.num_vq_tokens
    schedule = get_mask_schedule("cosine")
    rows = [interleaved_sequence(v, [[10, 11], torch.randint(0, v.codebook_size, (n,)), [12]]),
            interleaved_sequence(v, [torch.randint(0, v.codebook_size, (n,)), [13], torch.randint(0, 64, (n,))])]
    gen = torch.Generator().manual_seed(0)
    masked = [mask_interleaved_images(r, v.mask, schedule, n, generator=gen) for r in rows]
    for row, (ids, labels) in zip(rows, masked):
        changed = ids != row.ids
        assert bool(row.is_image[changed].all()) and bool((ids[changed] == v.mask).all())
        assert torch.equal(labels[changed], row.ids[changed]) and bool((labels[~changed] == IGNORE_INDEX).all())
    again = mask_interleaved_images(rows[0], v.mask, schedule, n, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again[0], masked[0][0])
    batch = interleaved_batch([ids for ids, _ in masked], v)
    text = torch.stack([F.pad(r.text_labels, (batch.ids.shape[1] - r.ids.shape[0], 0), value=IGNORE_INDEX)
                        for r in rows])
    image = torch.stack([F.pad(lab, (batch.ids.shape[1] - lab.shape[0], 0), value=IGNORE_INDEX) for _, lab in masked])
    logits = model(batch.ids, attention_mask=batch.mask, position_ids=batch.positions)
    text_loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), text[:, 1:].flatten(), ignore_index=IGNORE_INDEX)
    image_loss = F.cross_entropy(logits.flatten(0, 1), image.flatten(), ignore_index=IGNORE_INDEX)
    assert torch.isfinite(text_loss) and torch.isfinite(image_loss)
    with pytest.raises(ValueError, match="whole number"):
        mask_interleaved_images(rows[0], v.mask, schedule, n - 1)


# ------------------------------------------------------------------------------------------------ generation


def test_scripted_model_alternates_text_and_images(tmp_path):
    def plan(p):
        enc = p.tokenizer.encode
        return [*enc("Hi"), p.vocab.soi, *enc("ok"), p.vocab.soi, *enc("end"), p.vocab.eos]

    pipe, prompt = _scripted_pipeline(plan)
    v, n = pipe.vocab, pipe.model.config.num_vq_tokens
    out = pipe.mixed(prompt, num_inference_steps=3, seed=0)
    assert [s if isinstance(s, str) else "IMG" for s in out.segments] == ["Hi", "IMG", "ok", "IMG", "end"]
    assert out.metadata["stop_reason"] == "eos" and out.metadata["num_images"] == 2
    ids = torch.tensor(out.token_ids)
    assert int(ids[-1]) == v.eos and out.token_ids[:2] == [v.lvg, v.bos]
    starts = (ids == v.soi).nonzero().flatten().tolist()
    for s in starts:
        assert int(ids[s + n + 1]) == v.eoi
        assert bool(v.is_image(ids[s + 1:s + 1 + n]).all())  # a full block of N codes within the codebook
    assert out.segments[1].size == (pipe.resolution, pipe.resolution)
    mask = interleaved_mask(ids, v)
    after_first = starts[0] + n + 2  # the "ok" text
    assert bool(mask[after_first, starts[0]:starts[0] + n + 2].all())

    md = out.to_markdown(tmp_path / "md")
    assert md.is_file() and (tmp_path / "md" / "mixed_0.png").is_file() and (tmp_path / "md" / "mixed_1.png").is_file()
    assert "![image 1](mixed_1.png)" in md.read_text() and "Hi" in md.read_text()
    page = out.to_html(tmp_path / "html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "end" in page
    # a name with folders wrote outside the directory; an empty one a hidden '.md'; a write error was a raw OSError
    for bad in ("../../x", "", ".hidden", "a/b", "a\0b", "a\nb", 5):
        for write in (out.to_markdown, out.to_html):
            with pytest.raises(ConfigError, match="name must be a plain file name"):
                write(tmp_path / "bad", name=bad)
    assert not (tmp_path / "bad").exists() and not (tmp_path.parent / "x.md").exists()
    (tmp_path / "md" / "mixed_1.png").unlink()
    (tmp_path / "md" / "mixed_1.png").mkdir()  # the second image cannot land: the first is not written either
    with pytest.raises(OutputError, match="cannot save the mixed output into .*mixed_1.png is a directory"):
        out.to_markdown(tmp_path / "md")
    (tmp_path / "md" / "notes.txt").write_text("mine")
    (tmp_path / "md" / "mixed_1.png").rmdir()
    out.to_markdown(tmp_path / "md")
    assert (tmp_path / "md" / "notes.txt").read_text() == "mine"
    assert sorted(f.name for f in (tmp_path / "md").iterdir()) == ["mixed.md", "mixed_0.png", "mixed_1.png",
                                                                   "notes.txt"]
    page = out.to_markdown(tmp_path / "md", name="my story (1)").read_text()  # links broke at the space
    assert "![image 1](my%20story%20%281%29_1.png)" in page and (tmp_path / "md" / "my story (1)_1.png").is_file()


def test_guidance_and_max_images_stop():
    def plan(p):
        enc, soi = p.tokenizer.encode, p.vocab.soi
        return [*enc("a"), soi, *enc("b"), soi, *enc("c"), soi, *enc("d")]

    pipe, prompt = _scripted_pipeline(plan)
    out = pipe.mixed(prompt, max_images=2, num_inference_steps=2, guidance_scale=1.5, seed=0)
    assert [s if isinstance(s, str) else "IMG" for s in out.segments] == ["a", "IMG", "b", "IMG", "c"]
    assert out.metadata["stop_reason"] == "max_images" and out.token_ids[-1] != pipe.vocab.soi
    text_only = pipe.mixed(prompt, max_images=0, num_inference_steps=2, seed=0)  # --max-images 0 in the CLI
    assert text_only.segments == ["a"] and text_only.metadata["stop_reason"] == "max_images"


def test_forced_images_after_sentences():
    def plan(p):
        enc, z = p.tokenizer.encode, p.tokenizer.encode("z")[0]
        # the script would write "z" where the sentence rule must put <soi> instead
        return [(z, "image"), *enc("Hi!"), (z, "image"), *enc("Yo"), p.vocab.eos]

    pipe, prompt = _scripted_pipeline(plan)  # the prompt "Tell me." ends a sentence: an image comes first
    out = pipe.mixed(prompt, num_inference_steps=2, force_image_every_sentence=True, seed=0)
    assert [s if isinstance(s, str) else "IMG" for s in out.segments] == ["IMG", "Hi!", "IMG", "Yo"]
    plain = pipe.mixed(prompt, max_new_tokens=4, num_inference_steps=2, seed=0)  # without the rule: "z" first
    assert plain.segments[0].startswith("z") and plain.metadata["num_images"] == 0


def test_random_model_cached_text_matches_full_forward(pipe):
    v, model = pipe.vocab, pipe.model
    n = model.config.num_vq_tokens
    prompt = pipe.tokenizer.encode("A dog.")
    seen = []
    res = generate_interleaved(model, v, prompt, n, max_new_tokens=12, num_inference_steps=2,
                               generator=torch.Generator().manual_seed(0), on_token=lambda s, i, d: seen.append(int(i[0])),
                               force_sentence_end=lambda seg: seg == prompt)
    assert res.image_starts == [res.prompt_length] and res.stop_reason in ("max_new_tokens", "eos")
    ids = torch.tensor(res.ids)
    logits = model(ids[None], attention_mask=interleaved_mask(ids, v)[None, None])[0]
    allowed = torch.full((v.size,), float("-inf"))
    allowed[:v.text_size] = 0
    allowed[v.soi] = 0
    text_positions = range(res.prompt_length + n + 2, len(res.ids))  # greedy text after the forced image
    assert len(text_positions) > 0
    for p in text_positions:
        assert int((logits[p - 1] + allowed).argmax()) == res.ids[p]  # the cached loop saw the image like this
    assert seen[0] == v.soi and len(seen) == len(res.ids) - res.prompt_length - n - 1


def test_mixed_is_reproducible_and_validates(pipe):
    a = pipe.mixed("A cat.", max_new_tokens=6, text_temperature=1.0, top_k=20, num_inference_steps=2, seed=5,
                   force_image_every_sentence=True)
    b = pipe.mixed("A cat.", max_new_tokens=6, text_temperature=1.0, top_k=20, num_inference_steps=2, seed=5,
                   force_image_every_sentence=True)
    assert a.token_ids == b.token_ids and a.metadata["num_images"] >= 1
    for kwargs, match in [({"max_images": -1}, "max_images"), ({"max_new_tokens": 0}, "max_new_tokens"),
                          ({"top_p": 1.5}, "top_p"), ({"guidance_scale": -1.0}, "guidance_scale")]:
        with pytest.raises(InputError, match=match):
            pipe.mixed("A cat.", **kwargs)
    with pytest.raises(InputError, match="one text"):
        pipe.mixed(["a", "b"])


def test_mixed_through_the_fixed_buffer_step_is_unchanged(pipe, monkeypatch):
    """The image steps of interleaved generation (their own attention mask, guided and not) through the step graph's
    fixed-buffer path, as a GPU runs them by default for a small model (here without a graph), give the same
    answer."""
    from showo.sampling import maskgit
    from showo.sampling.graphs import StaticCall

    run = lambda: [pipe.mixed("A cat.", max_new_tokens=6, num_inference_steps=4, seed=2,  # noqa: E731
                              force_image_every_sentence=True, guidance_scale=g) for g in (0.0, 1.5)]
    plain = run()
    monkeypatch.setattr(maskgit, "uses_image_graph", lambda *args: True)
    built = []
    monkeypatch.setattr(maskgit, "StaticCall", lambda *a, **k: built.append(1) or StaticCall(*a, **k))
    fixed = run()
    assert len(built) >= 2 and all(out.metadata["num_images"] >= 1 for out in fixed)  # unguided and guided
    for a, b in zip(fixed, plain):
        assert a.token_ids == b.token_ids and a.metadata["image_codes"] == b.metadata["image_codes"]
