"""The CLIP-ViT understanding path (w_clip_vit checkpoints) against the official implementation."""
import dataclasses
import json

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from showo.model import Showo
from showo.model.clip import ClipVisionTower, clip_preprocess
from showo.prompting.masks import mmu_clip_mask
from showo.sampling.autoregressive import generate_text
from golden_models import showo_config

pytestmark = pytest.mark.golden


@pytest.fixture(scope="module")
def clip_dir(golden, tmp_path_factory):
    d = tmp_path_factory.mktemp("clip")
    (d / "config.json").write_text((golden.root / "clip_vision_config" / "config.json").read_text())
    tensors = golden.case("mmu_clip")
    save_file({k[len("clip."):]: v.contiguous() for k, v in tensors.items() if k.startswith("clip.")},
              str(d / "model.safetensors"))
    return d


@pytest.fixture(scope="module")
def clip_model(golden):
    tensors = golden.case("mmu_clip")
    proj = tensors["model.mm_projector.0.weight"]
    cfg = dataclasses.replace(showo_config(golden), w_clip_vit=True, clip_hidden_size=proj.shape[1])
    model = Showo(cfg)
    state = golden.weights("showo_weights.safetensors")
    state.update({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.mm_projector")})
    model.load_state_dict(state, strict=True)
    return model.eval()


def test_clip_features_projection_logits_and_greedy(golden, clip_dir, clip_model):
    d, info = golden.case("mmu_clip"), golden.info("mmu_clip")
    tower = ClipVisionTower.from_pretrained(clip_dir)
    feats = tower(d["input.pixel_values"])
    torch.testing.assert_close(feats, d["aux.clip_features"], atol=1e-4, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(clip_model.mm_projector(feats), d["aux.image_embeddings"], atol=1e-4, rtol=0)
    s = d["input.input_ids_system"].shape[1]
    assert s == info["system_prompt_len"]
    for run in info["runs"]:
        q = run["prefix"].split("_")[0]
        ids = d[f"{q}.input.input_ids_llava"]
        with torch.no_grad():
            emb = clip_model.embed_with_features(ids, feats, insert_at=2 + s)
        torch.testing.assert_close(emb, d[f"{q}.aux.input_embeddings"], atol=1e-5, rtol=0)
        mask = mmu_clip_mask(emb.shape[1], s, num_image_tokens=feats.shape[1])
        if f"{q}.output.logits" in d and run["prefix"] == q:
            with torch.no_grad():
                logits = clip_model(input_embeddings=emb, attention_mask=mask)
            torch.testing.assert_close(logits, d[f"{q}.output.logits"], atol=1e-4, rtol=0)
        torch.manual_seed(run["torch.manual_seed"])
        out = generate_text(clip_model, prompt_embeds=[emb[0]], prompt_masks=[mask[0, 0]],
                            max_new_tokens=run["max_new_tokens"], temperature=run["temperature"], top_k=run["top_k"],
                            eos_id=run["eot_token"])
        assert out[0] == d[f"{run['prefix']}.output.token_ids"].tolist(), run["prefix"]


def test_clip_preprocess_matches_transformers_processor(golden):
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    size = json.loads((golden.root / "clip_vision_config" / "config.json").read_text())["image_size"]
    ref = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    gen = torch.Generator().manual_seed(0)
    for h, w in [(37, 61), (61, 37), (size, size), (336, 500)]:  # up- and down-scaling, odd crop offsets
        image = Image.fromarray((torch.rand(h, w, 3, generator=gen) * 255).to(torch.uint8).numpy())
        expected = torch.as_tensor(ref(image, return_tensors="np")["pixel_values"][0])
        torch.testing.assert_close(clip_preprocess(image, size), expected, atol=1e-5, rtol=0)
