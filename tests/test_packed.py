"""oneDNN-packed float32 weights (`Showo.pack_weights`): the same numbers as the dense layers up to summation
order, the same tokens on every task path, and every misuse refused with a clear error."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from showo.backbone import PackedLinear, pack_linears, packing_available
from showo.backbone.packed import PREFILL_CHUNK
from showo.errors import ConfigError
from showo.sampling.autoregressive import generate_text
from showo.tiny import tiny_random_pipeline

pytestmark = pytest.mark.skipif(not packing_available(), reason="this torch build has no oneDNN weight packing")


@pytest.fixture(scope="module")
def pipes():
    dense = tiny_random_pipeline(seed=0)
    return dense, copy.deepcopy(dense).pack_weights()


def test_packed_linear_matches_dense_and_computes_only_the_asked_rows():
    torch.manual_seed(0)
    dense = nn.Linear(48, 40)
    groups = [slice(0, 10), slice(10, 33), slice(33, 40)]
    packed = PackedLinear(dense, batch_hint=4, row_groups=groups)
    for shape in ((1, 48), (8, 48), (3, 5, 48), (3, PREFILL_CHUNK // 2 + 1, 48)):  # the last: chunked
        x = torch.randn(shape)
        torch.testing.assert_close(packed(x), dense(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(packed(x, slice(10, 33)), dense(x)[..., 10:33], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="row groups"):
        packed(torch.randn(2, 48), slice(0, 33))
    with pytest.raises(ValueError, match="cover rows"):
        PackedLinear(dense, row_groups=[slice(0, 10), slice(12, 40)])
    with pytest.raises(ConfigError, match="float32"):
        packed(torch.randn(2, 48, dtype=torch.bfloat16))
    with pytest.raises(ConfigError, match="float32"):
        PackedLinear(nn.Linear(4, 4).to(torch.bfloat16))
    with pytest.raises(ConfigError, match="cannot be saved"):
        packed.state_dict()


def test_pack_linears_replaces_every_linear():
    net = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Sequential(nn.Linear(16, 4)))
    x = torch.randn(3, 8)
    want = net(x)
    assert pack_linears(net) == 2
    assert not any(isinstance(m, nn.Linear) for m in net.modules())
    torch.testing.assert_close(net(x), want, rtol=1e-5, atol=1e-5)


def test_packed_model_logits_and_tokens_match_dense(pipes):
    dense, packed = pipes
    assert isinstance(packed.model.showo.lm_head, PackedLinear) and len(packed.model.showo.lm_head.groups) == 3
    ids = torch.randint(0, dense.vocab.size, (2, 30))
    codes = slice(dense.vocab.image_offset, dense.vocab.mask)
    with torch.no_grad():
        torch.testing.assert_close(packed.model(ids), dense.model(ids), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(packed.model(ids, vocab_slice=codes), dense.model(ids, vocab_slice=codes),
                                   rtol=1e-4, atol=1e-4)
    prompts = [torch.randint(0, 200, (n,)) for n in (5, 9, 7)]
    assert generate_text(packed.model, prompts, max_new_tokens=6, temperature=0) == \
        generate_text(dense.model, prompts, max_new_tokens=6, temperature=0)


def test_packed_pipeline_tasks_give_the_same_outputs(pipes):
    from PIL import Image

    dense, packed = pipes
    image = Image.new("RGB", (64, 64), (200, 30, 30))
    questions = ["what colour is it?", "is there a circle?"]
    assert packed.ask(image, questions, max_new_tokens=5).token_ids == \
        dense.ask(image, questions, max_new_tokens=5).token_ids
    a = dense.text_to_image("a red circle", num_inference_steps=3, seed=0)
    b = packed.text_to_image("a red circle", num_inference_steps=3, seed=0)
    assert torch.equal(a.codes, b.codes)


def test_pack_weights_refuses_what_it_cannot_do(pipes, tmp_path):
    dense, packed = pipes
    with pytest.raises(ConfigError, match="cannot be saved"):
        packed.save_pretrained(tmp_path / "p")
    assert not (tmp_path / "p").exists()  # not even the folder
    for hint in (10 ** 9, 0, 2.5):  # 10**9 failed inside oneDNN
        with pytest.raises(ConfigError, match=r"batch_hint must be an integer in \[1, 65536\]"):
            tiny_random_pipeline(seed=0).pack_weights(hint)
    with pytest.raises(ConfigError, match="stays float32 on the CPU"):  # was accepted, failing at the next call
        packed.to(dtype=torch.bfloat16)
    model = copy.deepcopy(dense.model)
    with pytest.raises(ConfigError, match="eval"):
        model.train().pack_weights()
    with pytest.raises(ConfigError, match="float32"):
        model.eval().to(torch.bfloat16).pack_weights()
    with pytest.raises(ConfigError, match="packed weights cannot be decoded compiled"):  # inductor failed on them
        packed.compile_decoding()
    assert not packed.compiled_decoding and packed.compile_decoding(False) is packed
    compiled = tiny_random_pipeline(seed=0).compile_decoding()
    with pytest.raises(ConfigError, match="packed weights cannot be decoded compiled"):
        compiled.pack_weights()
    assert not compiled.model.packed


def test_cli_refuses_packed_weights_with_compiled_decoding(capsys):
    from showo.cli.main import main

    assert main(["write", "x", "--model", "tiny-random", "--device", "cpu", "--pack-weights",
                 "--compile-decoding"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == "showo: error: packed weights cannot be decoded compiled " \
        "(torch.compile cannot lower oneDNN's packed products): use one or the other"
