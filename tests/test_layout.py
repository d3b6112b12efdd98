"""The CPU inference weight layout changes strides only: same values, same checkpoints, same generations."""
import torch

from showo.backbone.layout import cpu_inference_layout, standard_layout
from showo.model import Showo
from showo.sampling.maskgit import maskgit_generate
from showo.tiny import tiny_random_pipeline
from showo.prompting.sequences import t2i_gen_sequence


def _linears(model):
    return [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]


def test_float32_goes_column_major_bf16_row_major_values_unchanged(tmp_path):
    pipe = tiny_random_pipeline(seed=0)  # the pipeline applies the layout
    model = pipe.model
    assert all(w.t().is_contiguous() and not w.is_contiguous() for w in _linears(model))
    reference = Showo(model.config)
    reference.load_state_dict(model.state_dict())
    assert all(w.is_contiguous() for w in _linears(reference))
    for k, v in reference.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k

    model.save_pretrained(tmp_path / "m")  # safetensors needs contiguous tensors: saving must still work
    again = Showo.from_pretrained(tmp_path / "m")
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())

    pipe.to(dtype=torch.bfloat16)
    assert all(w.is_contiguous() and w.dtype == torch.bfloat16 for w in _linears(pipe.model))
    standard_layout(cpu_inference_layout(reference))
    assert all(w.is_contiguous() for w in _linears(reference))


def test_batched_generation_is_identical_in_both_layouts():
    pipe = tiny_random_pipeline(seed=1)
    v, n = pipe.vocab, pipe.model.config.num_vq_tokens
    reference = Showo(pipe.model.config).eval()
    reference.load_state_dict(pipe.model.state_dict())
    image = torch.full((3, n), v.mask)
    cond = t2i_gen_sequence(v, [[5, 6, 7], [8], [9, 10]], image, pipe.model.config.max_seq_length)
    uncond = t2i_gen_sequence(v, [[]] * 3, image, pipe.model.config.max_seq_length)
    runs = [maskgit_generate(m, cond, v, n, uncond, 4, 1.5, generator=torch.Generator().manual_seed(0))
            for m in (pipe.model, reference)]
    assert torch.equal(*runs)
