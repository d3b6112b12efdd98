"""Sampled ids against the official implementation: MaskGIT image decoding and autoregressive text."""
import re
from types import SimpleNamespace

import pytest
import torch

from showo.prompting.masks import mmu_mask, t2i_mask
from showo.sampling.autoregressive import generate_text, shared_prefix
from showo.sampling import decode_step
from showo.sampling.decode_step import StaticDecodeStep
from showo.sampling.graphs import StaticCall
from showo.sampling.maskgit import maskgit_generate, uses_image_graph
from golden_models import showo_model

pytestmark = pytest.mark.golden
T2I_CASES = ["t2i_generate_cfg", "t2i_generate_nocfg", "t2i_inpaint"]


@pytest.fixture(scope="module")
def model(golden):
    return showo_model(golden)


def _seed(text: str) -> int:
    return int(re.search(r"manual_seed\((\d+)\)", text).group(1))


def _schedule(text: str) -> str:
    return re.search(r"get_mask_chedule\('(\w+)'\)", text).group(1)


@pytest.mark.parametrize("reuse_prefix, cuda_graph", [(True, False), (False, False), (True, True)],
                         ids=["prefix-cache", "full-recompute", "prefix-cache-static-buffer"])
@pytest.mark.parametrize("case", T2I_CASES)
def test_maskgit_matches_official_ids_and_trace(golden, golden_tokenizer, model, case, reuse_prefix, cuda_graph):
    d, args = golden.case(case), golden.info(case)["args"]
    steps: list = []
    codes = maskgit_generate(
        model, d["input.input_ids"], golden_tokenizer.vocab, golden.layout["num_vq_tokens"],
        uncond_input_ids=d.get("input.uncond_input_ids"), num_inference_steps=args["timesteps"],
        guidance_scale=args["guidance_scale"], temperature=args["temperature"],
        schedule=_schedule(args["noise_schedule"]), generator=torch.Generator().manual_seed(_seed(args["generator"])),
        reuse_prefix=reuse_prefix, callback=steps.append, cuda_graph=cuda_graph)
    b = d["input.input_ids"].shape[0]
    assert len(steps) == args["timesteps"]
    for s, st in enumerate(steps):
        assert torch.equal(st.input_ids, d["trace.model_input_ids"][s, :b]), f"step {s}: model input differs"
        assert torch.equal(st.mask_len, d["trace.mask_len"][s]), f"step {s}"
        torch.testing.assert_close(st.selected_probs, d["trace.selected_probs"][s], atol=1e-5, rtol=1e-4)
        assert st.temperature == pytest.approx(float(d["trace.temperature"][s]), abs=1e-12)
        assert torch.equal(st.masking, d["trace.masking"][s]), f"step {s}: re-masked slots differ"
    assert torch.equal(codes, d["output.sampled_ids"])


def test_maskgit_keeps_known_tokens(golden, golden_tokenizer, model):
    d, vocab = golden.case("t2i_inpaint"), golden_tokenizer.vocab
    n = golden.layout["num_vq_tokens"]
    slots = d["input.input_ids"][:, -n - 1:-1]
    known = slots != vocab.mask
    codes = maskgit_generate(model, d["input.input_ids"], vocab, n, uncond_input_ids=d["input.uncond_input_ids"],
                             num_inference_steps=4, guidance_scale=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(codes[known], slots[known] - vocab.image_offset)
    assert ((codes >= 0) & (codes < vocab.codebook_size)).all()


@pytest.mark.parametrize("case", ["t2i_generate_cfg", "t2i_generate_nocfg"])
def test_prefix_cache_logits_match_full_forward_at_every_step(golden, golden_tokenizer, model, case):
    # Along the official trajectory, the cached-prefix forward gives the full-recompute logits at every step.
    d, vocab = golden.case(case), golden_tokenizer.vocab
    n = golden.layout["num_vq_tokens"]
    trace = d["trace.model_input_ids"]
    length = trace.shape[-1]
    prefix = length - n - 2
    mask = t2i_mask(trace[0], vocab, rm_pad_in_image=True)
    cache = model.new_cache(trace.shape[1], length)
    with torch.no_grad():
        model(trace[0, :, :prefix], attention_mask=mask[:, :, :prefix, :prefix], cache=cache, start=0)
        for s in range(trace.shape[0]):
            full = model(trace[s], attention_mask=mask)[:, prefix:]
            fast = model(trace[s, :, prefix:], attention_mask=mask[:, :, prefix:], cache=cache, start=prefix)
            torch.testing.assert_close(fast, full, atol=1e-4, rtol=0)


def _mmu_runs(golden):
    return [r["prefix"] for r in golden.info("mmu_generate")["runs"]]


@pytest.mark.parametrize("use_cache, cuda_graph", [(True, False), (False, False), (True, True)],
                         ids=["kv-cache", "full-recompute", "static-step"])
def test_mmu_generate_matches_official(golden, golden_tokenizer, model, use_cache, cuda_graph):
    d, vocab = golden.case("mmu_generate"), golden_tokenizer.vocab
    for run in golden.info("mmu_generate")["runs"]:
        ids = d[f"{run['prefix']}.input.input_ids"]
        mask = mmu_mask(ids, vocab)[0, 0]
        torch.manual_seed(run["torch.manual_seed"])
        out = generate_text(model, [ids[0]], [mask], max_new_tokens=run["max_new_tokens"],
                            temperature=run["temperature"], top_k=run["top_k"], eos_id=run["eot_token"],
                            use_cache=use_cache, cuda_graph=cuda_graph)
        assert out[0] == d[f"{run['prefix']}.output.token_ids"].tolist(), run["prefix"]


def test_mmu_greedy_temperature_zero_equals_top1(golden, golden_tokenizer, model):
    d, vocab = golden.case("mmu_generate"), golden_tokenizer.vocab
    ids = d["greedy0.input.input_ids"]
    out = generate_text(model, [ids[0]], [mmu_mask(ids, vocab)[0, 0]], max_new_tokens=10, temperature=0)
    assert out[0] == d["greedy0.output.token_ids"].tolist()


def test_mmu_batch_with_different_prompt_lengths_equals_single_runs(golden, golden_tokenizer, model):
    d, vocab = golden.case("mmu_generate"), golden_tokenizer.vocab
    prompts = [d["greedy0.input.input_ids"], d["greedy1.input.input_ids"], d["greedy0.input.input_ids"]]
    assert len({p.shape[1] for p in prompts}) > 1
    masks = [mmu_mask(p, vocab)[0, 0] for p in prompts]
    batch = generate_text(model, [p[0] for p in prompts], masks, max_new_tokens=10, temperature=0)
    assert batch[0] == d["greedy0.output.token_ids"].tolist()
    assert batch[1] == d["greedy1.output.token_ids"].tolist()
    assert batch[2] == batch[0]


def test_mmu_batch_sharing_a_prefix_computes_it_once_and_answers_as_single_runs(golden, golden_tokenizer, model):
    d, vocab = golden.case("mmu_generate"), golden_tokenizer.vocab
    p = d["greedy0.input.input_ids"][0]
    prompts = [p, p[:-2], torch.cat([p, p[-5:]])]  # one image, three texts after it
    masks = [mmu_mask(q[None], vocab)[0, 0] for q in prompts]
    assert shared_prefix(prompts, masks) == (len(p) - 3, [0, 0, 0])  # the shortest keeps a position of its own
    batch = generate_text(model, prompts, masks, max_new_tokens=10, temperature=0)
    assert batch[0] == d["greedy0.output.token_ids"].tolist()
    for q, m, answer in zip(prompts, masks, batch):
        assert answer == generate_text(model, [q], [m], max_new_tokens=10, temperature=0, use_cache=False)[0]


@pytest.mark.parametrize("shared", [False, True], ids=["padded", "shared-prefix"])
def test_static_decode_step_equals_dynamic_cache(golden, golden_tokenizer, model, shared):
    """The fixed-shape step (what a CUDA graph replays) over the whole cache: the same logits as the growing
    cache to float rounding, so the same greedy answers, with left padding or a shared prefix."""
    d, vocab = golden.case("mmu_generate"), golden_tokenizer.vocab
    p, q = d["greedy0.input.input_ids"][0], d["greedy1.input.input_ids"][0]
    prompts = [p, p[:-2], torch.cat([p, p[-5:]])] + ([] if shared else [q])
    masks = [mmu_mask(x[None], vocab)[0, 0] for x in prompts]
    assert (shared_prefix(prompts, masks)[0] > 0) == shared
    logits = {}
    for static in (False, True):
        seen = logits[static] = []
        model_call = model.forward

        def spy(*args, **kwargs):
            out = model_call(*args, **kwargs)
            seen.append(out[:, -1].clone())
            return out

        model.forward = spy
        try:
            answers = generate_text(model, prompts, masks, max_new_tokens=10, temperature=0, cuda_graph=static)
        finally:
            del model.forward
        assert answers == [generate_text(model, [x], [m], max_new_tokens=10, temperature=0, use_cache=False)[0]
                           for x, m in zip(prompts, masks)]
    assert len(logits[True]) == len(logits[False]) >= 10
    for a, b in zip(logits[False], logits[True]):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


def test_compiled_static_step_gives_the_official_answers(golden, golden_tokenizer, model, monkeypatch):
    """`compiled=True`: the fixed-shape step under torch.compile answers as the growing cache does, for two
    calls whose caches differ in length and batch size; torch.compile really compiled it, and every token after
    the prompt's pass went through the compiled function."""
    from torch._dynamo.utils import counters

    d, vocab = golden.case("mmu_generate"), golden_tokenizer.vocab
    p, q = d["greedy0.input.input_ids"][0], d["greedy1.input.input_ids"][0]
    torch._dynamo.reset()  # forget what earlier tests compiled, so that this one must compile
    graphs = counters["stats"]["unique_graphs"]
    compiled, calls = decode_step._compiled_step(), []
    monkeypatch.setattr(decode_step, "_compiled_step", lambda: lambda *a: (calls.append(1), compiled(*a))[1])
    for prompts, n in (([p], 10), ([q, p[:-2]], 7)):
        masks = [mmu_mask(x[None], vocab)[0, 0] for x in prompts]
        eager = generate_text(model, prompts, masks, max_new_tokens=n, temperature=0)
        calls.clear()
        assert generate_text(model, prompts, masks, max_new_tokens=n, temperature=0, compiled=True) == eager
        assert len(calls) == n - 1
    assert counters["stats"]["unique_graphs"] > graphs
    assert eager[1] != eager[0][:n]  # the second call's rows answer differently: a real batch
    with pytest.raises(ValueError, match="cannot go with cuda_graph=False"):
        generate_text(model, [q], masks[:1], max_new_tokens=3, cuda_graph=False, compiled=True)


def test_compile_limit_falls_back_to_the_plain_step(golden, golden_tokenizer, model, monkeypatch):
    """Past torch.compile's limit of variants the compiled function raises: decoding warns and goes on
    uncompiled, with the same answer."""
    def used_up(*args):
        raise decode_step.RECOMPILE_LIMIT_HIT("recompile limit")

    ids = golden.case("mmu_generate")["greedy0.input.input_ids"][0]
    mask = mmu_mask(ids[None], golden_tokenizer.vocab)[0, 0]
    eager = generate_text(model, [ids], [mask], max_new_tokens=6, temperature=0)
    monkeypatch.setattr(decode_step, "_compiled_step", lambda: used_up)
    with pytest.warns(RuntimeWarning, match="decoding without compile"):
        assert generate_text(model, [ids], [mask], max_new_tokens=6, temperature=0, compiled=True) == eager


def test_cuda_graph_refused_without_cache_or_gpu(golden, golden_tokenizer, model):
    ids = golden.case("mmu_generate")["greedy0.input.input_ids"]
    mask = mmu_mask(ids, golden_tokenizer.vocab)[0, 0]
    with pytest.raises(ValueError, match="use_cache=True"):
        generate_text(model, [ids[0]], [mask], max_new_tokens=3, use_cache=False, cuda_graph=True)
    cache, visible = model.new_cache(1, 8), torch.ones(1, 8, dtype=torch.bool)
    with pytest.raises(ValueError, match="CUDA device"):
        StaticDecodeStep(model, cache, visible, graph=True)
    step = StaticDecodeStep(model, cache, visible, graph=False)
    with pytest.raises(ValueError, match="overflow: position 8 outside capacity 8"):
        step(ids[0, :1], torch.zeros(1, 1, dtype=torch.long), 8)


def test_image_graph_refused_without_prefix_cache_or_gpu(golden, golden_tokenizer, model):
    d = golden.case("t2i_generate_nocfg")
    with pytest.raises(ValueError, match="reuse_prefix=True"):
        maskgit_generate(model, d["input.input_ids"], golden_tokenizer.vocab, golden.layout["num_vq_tokens"],
                         num_inference_steps=2, reuse_prefix=False, cuda_graph=True)
    with pytest.raises(ValueError, match="CUDA device"):
        StaticCall(lambda x: x, torch.zeros(2), graph=True)


def test_image_graph_default_follows_the_step_size(model):
    """By default the graph runs on a GPU where launching kernels is a step's cost: in bf16/fp16 (Phi-1.5 size on an
    H100: 2.89x at batch 1, 1.20x at batch 4) and for small fp32 steps (the embedded model's: 2.6x), not for
    Phi-1.5-size fp32 ones (0.94x), nor for too few steps, without the prefix cache or off a GPU."""
    from showo.sampling import maskgit

    steps, params = maskgit.GRAPH_MIN_STEPS, sum(p.numel() for p in model.parameters())
    assert maskgit.step_work(model, 2, 10) == 20 * params
    assert not uses_image_graph(model, 2, 10, True, steps)  # on the CPU
    limit = int(maskgit.GRAPH_MAX_STEP_WORK / params)  # rows x positions at the threshold
    cases = {(torch.float32, limit - 1): True, (torch.float32, limit + 1): False, (torch.bfloat16, 100 * limit): True,
             (torch.float16, 100 * limit): True}
    for (dtype, positions), want in cases.items():
        gpu = _on_a_gpu(dtype, params)
        assert uses_image_graph(gpu, 1, positions, True, steps) is want, (dtype, positions)
    assert not uses_image_graph(gpu, 1, 10, True, steps - 1)
    assert not uses_image_graph(gpu, 1, 10, False, steps)


def _on_a_gpu(dtype: torch.dtype, params: int):
    """A stand-in model whose one weight reads as `params` numbers of `dtype` on a GPU (none is needed)."""
    weight = SimpleNamespace(device=torch.device("cuda"), dtype=dtype, numel=lambda: params)
    return SimpleNamespace(parameters=lambda: iter([weight]))


def test_maskgit_asks_the_default_for_its_step_and_replays_one_static_call(golden, golden_tokenizer, model,
                                                                           monkeypatch):
    """maskgit_generate weighs its own step (both guidance branches, the N + 2 block positions) and, with the graph,
    builds one static call and runs it once a step."""
    from showo.sampling import maskgit

    d, n = golden.case("t2i_generate_cfg"), golden.layout["num_vq_tokens"]
    asked, calls = [], []
    monkeypatch.setattr(maskgit, "uses_image_graph", lambda m, rows, positions, reuse, steps: (
        asked.append((m, rows, positions, reuse, steps)), True)[1])

    class Counted(maskgit.StaticCall):
        def __call__(self, x):
            calls.append(self)
            return super().__call__(x)

    monkeypatch.setattr(maskgit, "StaticCall", Counted)
    ids = d["input.input_ids"]
    out = maskgit_generate(model, ids, golden_tokenizer.vocab, n, uncond_input_ids=d["input.uncond_input_ids"],
                           num_inference_steps=5, guidance_scale=2.0, generator=torch.Generator().manual_seed(0))
    assert asked == [(model, 2 * ids.shape[0], n + 2, True, 5)]
    assert len(calls) == 5 and len(set(map(id, calls))) == 1
    reference = maskgit_generate(model, ids, golden_tokenizer.vocab, n, uncond_input_ids=d["input.uncond_input_ids"],
                                 num_inference_steps=5, guidance_scale=2.0, generator=torch.Generator().manual_seed(0),
                                 cuda_graph=False)
    assert torch.equal(out, reference) and len(calls) == 5 and len(asked) == 1  # an explicit value is not asked
