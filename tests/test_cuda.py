"""The same checks on a CUDA device: golden logits and MAGVIT codes, the cached paths against full recompute,
and the embedded pipeline end to end. Skipped where torch sees no GPU (CI, these CPUs); run them with
`pytest -m cuda` on a machine that has one. Sampled ids cannot match the golden set there (CUDA generators
draw other numbers than CPU ones), so sampling is checked for agreement between our own paths instead."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from showo.checkpoints import load_checked
from showo.cli.main import main
from showo.embedded import load_embedded
from showo.prompting.masks import mmu_mask
from showo.sampling.autoregressive import GRAPH_MIN_NEW_TOKENS, generate_text
from showo.sampling.maskgit import GRAPH_MIN_STEPS, maskgit_generate
from showo.tokenizers.magvit import MagvitConfig, MagvitV2
from golden_models import showo_model

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
CUDA = torch.device("cuda")
ATOL = 1e-4


def _on(d: dict) -> dict:
    return {k: v.to(CUDA) for k, v in d.items()}


@pytest.fixture(scope="module")
def model(golden):
    return showo_model(golden).to(CUDA)


@pytest.fixture(scope="module")
def embedded():
    return load_embedded(device="cuda")


@pytest.mark.golden
@pytest.mark.parametrize("case", ["t2i_logits", "mmu_logits", "lm_logits"])
def test_golden_logits(golden, model, case):
    d = _on(golden.case(case))
    masks = [d[k] for k in ("input.attention_mask", "aux.attention_mask_bool") if k in d]  # float, then boolean
    with torch.no_grad():
        for mask in masks:
            torch.testing.assert_close(model(d["input.input_ids"], attention_mask=mask), d["output.logits"],
                                       atol=ATOL, rtol=0)


@pytest.fixture
def no_tf32_convolutions():
    """PyTorch runs cuDNN convolutions in TF32 by default: that moved the golden MAGVIT pixels by up to 1.6e-3
    (encoder 7.8e-4) on an H200, against 3.2e-6 in float32 (codes equal either way). Off for the comparison."""
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = before


@pytest.mark.golden
def test_golden_magvit_codes_and_pixels(golden, no_tf32_convolutions):
    m = golden.meta["magvit"]
    vq = MagvitV2(MagvitConfig.from_official_kwargs(m["encoder_kwargs"], m["decoder_kwargs"], m["quantizer_kwargs"]))
    load_checked(vq, golden.weights("magvit_weights.safetensors"), what="golden MAGVIT weights")
    vq = vq.eval().to(CUDA)
    case = _on(golden.case("magvit"))
    with torch.no_grad():
        codes = vq.get_code(case["input.images"])
        decoded = vq.decode_code(case["output.codes"])
    assert torch.equal(codes, case["output.codes"])
    torch.testing.assert_close(decoded, case["output.decoded"], atol=ATOL, rtol=0)


@pytest.mark.golden
@pytest.mark.parametrize("case", ["t2i_generate_cfg", "t2i_inpaint"])
def test_maskgit_cached_prompt_equals_recompute(golden, golden_tokenizer, model, case):
    d, args = _on(golden.case(case)), golden.info(case)["args"]
    runs = [maskgit_generate(model, d["input.input_ids"], golden_tokenizer.vocab, golden.layout["num_vq_tokens"],
                             uncond_input_ids=d.get("input.uncond_input_ids"), num_inference_steps=args["timesteps"],
                             guidance_scale=args["guidance_scale"], temperature=args["temperature"],
                             generator=torch.Generator(CUDA).manual_seed(3), reuse_prefix=reuse)
            for reuse in (True, False)]
    assert runs[0].device.type == CUDA.type
    assert torch.equal(runs[0], runs[1])


@pytest.mark.golden
@pytest.mark.parametrize("case", ["t2i_generate_cfg", "t2i_generate_nocfg", "t2i_inpaint"])
def test_maskgit_cuda_graph_equals_eager(golden, golden_tokenizer, model, case, monkeypatch):
    """maskgit_generate replays one captured CUDA graph per step by default on a GPU: the same tokens as the steps
    launched kernel by kernel, from the same seeded generator; no graph below GRAPH_MIN_STEPS steps."""
    d, args = _on(golden.case(case)), golden.info(case)["args"]
    replays, replay = [], torch.cuda.CUDAGraph.replay
    monkeypatch.setattr(torch.cuda.CUDAGraph, "replay", lambda graph: (replays.append(1), replay(graph))[1])

    def run(steps: int, graph: bool | None = None) -> torch.Tensor:
        return maskgit_generate(model, d["input.input_ids"], golden_tokenizer.vocab, golden.layout["num_vq_tokens"],
                                uncond_input_ids=d.get("input.uncond_input_ids"), num_inference_steps=steps,
                                guidance_scale=args["guidance_scale"], temperature=args["temperature"],
                                generator=torch.Generator(CUDA).manual_seed(3), cuda_graph=graph)

    steps = max(args["timesteps"], GRAPH_MIN_STEPS)
    eager = run(steps, graph=False)
    assert not replays
    assert torch.equal(run(steps), eager)
    assert len(replays) == steps
    run(GRAPH_MIN_STEPS - 1)  # too few steps to pay for a capture: no graph by default
    assert len(replays) == steps


@pytest.mark.golden
def test_text_kv_cache_and_batch_equal_recompute(golden, golden_tokenizer, model):
    d = golden.case("mmu_logits")
    ids = d["input.input_ids"][0]
    prompts = [ids, ids[:-3], ids[:-7]]  # different lengths: the batch is padded
    masks = [mmu_mask(p[None], golden_tokenizer.vocab)[0, 0] for p in prompts]
    full = [generate_text(model, [p], [m], max_new_tokens=12, temperature=0, use_cache=False)[0]
            for p, m in zip(prompts, masks)]
    assert generate_text(model, prompts, masks, max_new_tokens=12, temperature=0) == full


@pytest.mark.golden
def test_decoded_token_uses_single_query_attention(golden, model, monkeypatch):
    """A one-token cached forward on the GPU runs `single_query_attention` in every layer and gives the full
    forward's logits."""
    import showo.backbone.phi as phi

    d = _on(golden.case("mmu_logits"))
    ids, mask = d["input.input_ids"], d["aux.attention_mask_bool"]
    n, calls = ids.shape[1] - 1, []
    spy = phi.single_query_attention
    monkeypatch.setattr(phi, "single_query_attention", lambda *a: (calls.append(1), spy(*a))[1])
    cache = model.new_cache(ids.shape[0], ids.shape[1])
    with torch.no_grad():
        model(ids[:, :n], attention_mask=mask[:, :, :n, :n], cache=cache, start=0)
        assert not calls
        last = model(ids[:, n:], attention_mask=mask[:, :, n:, :], cache=cache, start=n)
    assert len(calls) == len(model.showo.model.layers)
    torch.testing.assert_close(last, d["output.logits"][:, n:], atol=ATOL, rtol=0)


@pytest.mark.golden
def test_cuda_graph_decoding_equals_eager_cache(golden, golden_tokenizer, model, monkeypatch):
    """generate_text replays a captured CUDA graph per token by default on a GPU: the same greedy answers as the
    kernel-by-kernel cache (padded batch, shared prefix), and the same draws from a seeded generator."""
    ids = golden.case("mmu_logits")["input.input_ids"][0]
    prompts = [ids, ids[:-3], ids[:-7], torch.cat([ids, ids[-4:]])]
    masks = [mmu_mask(p[None], golden_tokenizer.vocab)[0, 0] for p in prompts]
    replays, replay = [], torch.cuda.CUDAGraph.replay
    monkeypatch.setattr(torch.cuda.CUDAGraph, "replay", lambda graph: (replays.append(1), replay(graph))[1])
    eager = generate_text(model, prompts, masks, max_new_tokens=12, temperature=0, cuda_graph=False)
    assert not replays
    assert generate_text(model, prompts, masks, max_new_tokens=12, temperature=0) == eager
    assert len(replays) == 11  # every token after the first (the prompt's pass is not a graph)
    short = GRAPH_MIN_NEW_TOKENS - 1  # too short to pay for a capture: no graph by default
    assert generate_text(model, prompts, masks, max_new_tokens=short, temperature=0) == [a[:short] for a in eager]
    assert len(replays) == 11
    from torch._dynamo.utils import counters

    torch._dynamo.reset()  # forget earlier compiles, so that this call must compile
    graphs = counters["stats"]["unique_graphs"]
    assert generate_text(model, prompts, masks, max_new_tokens=12, temperature=0, compiled=True) == eager
    assert len(replays) == 22 and counters["stats"]["unique_graphs"] > graphs  # compiled kernels, replayed
    sampled = [generate_text(model, prompts, masks, max_new_tokens=12, temperature=1.0, top_k=20, cuda_graph=graph,
                             generator=torch.Generator(CUDA).manual_seed(5)) for graph in (True, False)]
    assert sampled[0] == sampled[1]


def test_embedded_pipeline_end_to_end(embedded):
    pipe = embedded
    a = pipe.text_to_image("a red circle", num_inference_steps=8, seed=5)
    b = pipe.text_to_image("a red circle", num_inference_steps=8, seed=5, exact=True)
    assert torch.equal(a.codes, b.codes)  # seeded, and the cached prompt gives the recomputed prompt's tokens
    image = a.images[0]
    mask = Image.new("L", image.size, 0)
    mask.paste(255, (0, 0, image.size[0] // 2, image.size[1]))
    inpainted = pipe.inpaint(image, mask, "a blue square", num_inference_steps=8, seed=1)
    g = pipe.grid_size
    keep = torch.ones(g, g, dtype=torch.bool)
    keep[:, : g // 2] = False
    original = pipe.encode_images([image])[0]
    assert torch.equal(inpainted.codes[0][keep.reshape(-1)].cpu(), original[keep.reshape(-1)].cpu())
    answers = pipe.ask([image, image], ["what is in the image?", "what colour is the object?"], max_new_tokens=20)
    one = pipe.ask(image, "what colour is the object?", max_new_tokens=20)
    assert answers.texts[1] == one.texts[0] and all(answers.texts)


def test_embedded_mixed_with_step_graph_equals_eager(embedded, monkeypatch):
    """Interleaved text and images (its own attention mask) replays the image steps as a CUDA graph by default for
    the embedded model, with the same tokens as launching kernels step by step."""
    from showo.sampling import maskgit

    replays, replay = [], torch.cuda.CUDAGraph.replay
    monkeypatch.setattr(torch.cuda.CUDAGraph, "replay", lambda graph: (replays.append(1), replay(graph))[1])
    run = lambda: embedded.mixed("A red circle.", max_images=1, max_new_tokens=8, num_inference_steps=8,  # noqa: E731
                                 seed=3, force_image_every_sentence=True)
    graphed = run()
    assert len(replays) >= 8 and graphed.metadata["image_codes"]
    monkeypatch.setattr(maskgit, "uses_image_graph", lambda *args: False)
    eager = run()
    assert eager.token_ids == graphed.token_ids and eager.metadata["image_codes"] == graphed.metadata["image_codes"]


def test_embedded_answers_match_cpu(embedded):
    """Greedy answers of the embedded model are the CPU's, word for word (fp32 on both)."""
    cpu = load_embedded(device="cpu")
    image = cpu.text_to_image("a green triangle", num_inference_steps=8, seed=2).images[0]
    questions = ["what is in the image?", "how many objects are there?", "what colour is the object?"]
    want = cpu.ask([image] * 3, questions, max_new_tokens=24).texts
    assert embedded.ask([image] * 3, questions, max_new_tokens=24).texts == want


def test_embedded_bf16_runs():
    pipe = load_embedded(device="cuda", dtype=torch.bfloat16)
    out = pipe.text_to_image(["a red circle", "two blue squares"], num_inference_steps=8, seed=1)
    assert len(out.images) == 2
    assert ((out.codes >= 0) & (out.codes < pipe.vocab.codebook_size)).all()
    assert pipe.ask(out.images[0], "what is in the image?", max_new_tokens=16).texts[0]


def test_bench_tiny_agrees_on_cuda(tmp_path):
    js = tmp_path / "bench.json"
    assert main(["bench", "--tiny", "--device", "cuda", "--json", str(js)]) == 0
    data = json.loads(js.read_text())
    assert data["all_outputs_agree"] is True and data["complete"] is True and data["device"] == "cuda"
    assert data["peak_rss_ratio_inference"]["measure"] == "cuda max_memory_allocated"
    assert "peak_rss_ratio_inference_packed" not in data and "mmu_batch1_packed_vs_dense" not in data
    assert data["mmu_cuda_graph_vs_eager"]["agree"] and data["mmu_speedup"]["detail"]["cuda_graph"]
    assert set(data["mmu_cuda_graph_vs_eager"]["detail"]["short_answers"]["2"]) == {"graph_s", "eager_s"}
    assert data["mmu_compiled_graph_vs_graph"]["agree"] and data["mmu_compiled_speedup"]["agree"]
    assert data["t2i_cuda_graph_vs_eager"]["agree"] and data["t2i_speedup"]["detail"]["cuda_graph"] is False  # 3 steps
    assert set(data["t2i_cuda_graph_vs_eager"]["detail"]["short_step_counts"]["4"]) == {"graph_s", "eager_s"}


def test_profile_on_cuda_counts_device_time(capsys):
    assert main(["bench", "--tiny", "--device", "cuda", "--profile", "mmu", "t2i", "--profile-official"]) == 0
    heads = [line for line in capsys.readouterr().out.splitlines() if "ms of device time" in line]
    assert [h.split(":")[0] for h in heads] == ["mmu (ours, no CUDA graph)", "mmu (official)",
                                                "t2i (ours, no CUDA graph)", "t2i (official)"]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_steps_on_cuda_match_cpu(tmp_path, precision, no_tf32_convolutions):
    """Both trainers on the GPU: the tokenizer trainer kept its code bits and autocast on the CPU before."""
    from showo.training.config import OptimConfig, TrainConfig
    from showo.training.tokenizer import TokenizerTrainer
    from showo.training.trainer import Trainer
    from test_tokenizer_training import _trainer
    from train_helpers import SyntheticSource, tiny_model

    losses = {}
    for device in ("cpu", "cuda"):
        tok = _trainer(tmp_path / f"tok-{device}", 2)
        tok.cfg.precision = precision
        gpu_tok = TokenizerTrainer(tok.model.to(device), tok.images, tok.cfg)
        model, vocab = tiny_model(0)
        cfg = TrainConfig(output_dir=str(tmp_path / f"showo-{device}"), max_steps=2, precision=precision,
                          optim=OptimConfig(lr=3e-3, warmup_steps=1))
        showo = Trainer(model, SyntheticSource(vocab, 8, 4, cfg.mix), cfg, device=device)
        losses[device] = [gpu_tok.train_step()["loss"], showo.train_step()["loss"]]
    tolerance = 1e-3 if precision == "fp32" else 5e-2
    assert losses["cuda"] == pytest.approx(losses["cpu"], rel=tolerance), losses
