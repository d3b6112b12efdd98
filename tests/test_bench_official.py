"""The benchmark's re-creations of the official algorithms give the official tokens (golden)."""
import re

import pytest
import torch

from showo.bench.official import official_mmu_generate, official_t2i_generate
from showo.prompting.masks import mmu_mask, t2i_mask, to_additive
from golden_models import showo_model

pytestmark = pytest.mark.golden


@pytest.mark.parametrize("case", ["t2i_generate_cfg", "t2i_generate_nocfg", "t2i_inpaint"])
def test_official_t2i_recreation(golden, golden_tokenizer, case):
    d, args = golden.case(case), golden.info(case)["args"]
    model = showo_model(golden)
    uncond = d.get("input.uncond_input_ids")
    guided = uncond is not None and args["guidance_scale"] > 0
    rows = torch.cat([d["input.input_ids"], uncond]) if guided else d["input.input_ids"]
    seed = int(re.search(r"manual_seed\((\d+)\)", args["generator"]).group(1))
    codes = official_t2i_generate(model, d["input.input_ids"], uncond, t2i_mask(rows, golden_tokenizer.vocab),
                                  golden_tokenizer.vocab, golden.layout["num_vq_tokens"], args["timesteps"],
                                  args["guidance_scale"], args["temperature"], torch.Generator().manual_seed(seed))
    assert torch.equal(codes, d["output.sampled_ids"])


def test_official_mmu_recreation(golden, golden_tokenizer):
    d, model = golden.case("mmu_generate"), showo_model(golden)
    for run in golden.info("mmu_generate")["runs"]:
        if run["top_k"] != 1:
            continue
        ids = d[f"{run['prefix']}.input.input_ids"]
        out = official_mmu_generate(model, ids, to_additive(mmu_mask(ids, golden_tokenizer.vocab)),
                                    run["max_new_tokens"], run["eot_token"])
        assert out == d[f"{run['prefix']}.output.token_ids"].tolist()
