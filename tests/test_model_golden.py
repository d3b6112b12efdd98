"""The Show-o forward pass and losses against the official implementation (logits within 1e-4)."""
import pytest
import torch

from showo.model.losses import showo_losses
from golden_models import showo_model

pytestmark = pytest.mark.golden
ATOL = 1e-4


@pytest.fixture(scope="module")
def model(golden):
    return showo_model(golden)


@pytest.mark.parametrize("case", ["t2i_logits", "mmu_logits", "lm_logits"])
def test_logits(golden, model, case):
    d = golden.case(case)
    with torch.no_grad():
        got = model(d["input.input_ids"], attention_mask=d["input.attention_mask"])
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, d["output.logits"], atol=ATOL, rtol=0)
        if "aux.attention_mask_bool" in d:  # our boolean masks give the same numbers
            got = model(d["input.input_ids"], attention_mask=d["aux.attention_mask_bool"])
            torch.testing.assert_close(got, d["output.logits"], atol=ATOL, rtol=0)


def test_lm_logits_without_mask_is_causal(golden, model):
    d = golden.case("lm_logits")
    with torch.no_grad():
        torch.testing.assert_close(model(d["input.input_ids"]), d["output.logits_mask_none"], atol=ATOL, rtol=0)


def test_kv_cache_prefill_then_decode_matches_full_forward(golden, model):
    # Feeding the mmu sequence in three chunks through the cache gives the one-shot logits.
    d = golden.case("mmu_logits")
    ids, mask = d["input.input_ids"], d["aux.attention_mask_bool"]
    cache = model.new_cache(ids.shape[0], ids.shape[1])
    parts, start = [], 0
    with torch.no_grad():
        for end in (20, 25, ids.shape[1]):
            parts.append(model(ids[:, start:end], attention_mask=mask[:, :, start:end, :end], cache=cache, start=start))
            start = end
    torch.testing.assert_close(torch.cat(parts, 1), d["output.logits"], atol=ATOL, rtol=0)


def test_training_step_losses_and_gradients(golden, model):
    d, info = golden.case("train_losses"), golden.info("train_losses")
    bs = info["batch_sizes"]
    coeff = info["coefficients"]
    text_len = info["config_passed_as_config"]["dataset"]["preprocessing"]["max_seq_length"] + 1
    model.train()
    model.zero_grad()
    try:
        logits = model(d["input.input_ids"], attention_mask=d["input.attention_mask"])
        losses = showo_losses(logits, d["input.labels"], bs["t2i"], bs["lm"], bs["mmu"], text_len)
        total = losses.total(coeff["t2i_coeff"], coeff["lm_coeff"], coeff["mmu_coeff"])
        total.backward()
    finally:
        model.eval()
    torch.testing.assert_close(logits.detach(), d["output.logits"], atol=ATOL, rtol=0)
    for name, got in [("loss_t2i", losses.t2i), ("loss_lm", losses.lm), ("loss_mmu", losses.mmu), ("loss_total", total)]:
        torch.testing.assert_close(got.detach(), d[f"output.{name}"], rtol=1e-4, atol=1e-6)
    params = dict(model.named_parameters())
    for name in info["grad_norm_params"]:
        torch.testing.assert_close(params[name].grad.norm(), d[f"output.grad_norm.{name}"], rtol=1e-4, atol=1e-7)
    for name in info["full_grad_params"]:
        torch.testing.assert_close(params[name].grad, d[f"output.grad.{name}"], rtol=1e-4, atol=1e-6)
    norms = torch.stack([p.grad.norm() for p in model.parameters() if p.grad is not None])
    torch.testing.assert_close(norms.norm(), d["output.grad_norm_total"], rtol=1e-4, atol=1e-7)
    model.zero_grad()
