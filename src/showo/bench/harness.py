"""The benchmark's model and workloads: our fast paths and the official algorithms on the same random weights.

Every comparison runs both variants in this process, alternating, after a warm-up, and checks that their
outputs agree before it reports a ratio (`timing.side_by_side`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch

from ..backbone import PhiConfig, packing_available
from ..model import Showo, ShowoConfig
from ..model.losses import showo_losses
from ..prompting.masks import mmu_mask, t2i_mask, to_additive
from ..prompting.sequences import mmu_prompt_ids, t2i_gen_sequence
from ..prompting.vocab import Vocabulary
from ..sampling.autoregressive import generate_text, uses_cuda_graph
from ..sampling.maskgit import maskgit_generate, uses_image_graph
from ..training.batch import Part, lm_part, mmu_part, t2i_part
from ..training.config import MixConfig
from ..training.trainer import group_loss_sums
from .official import official_mmu_generate, official_t2i_generate
from .timing import Comparison, alternate, side_by_side, timed

GUIDANCE = 1.75  # guidance scale of every text-to-image comparison (the official default)
QUESTION_TOKENS = 20  # length of the random question of the understanding comparisons
SHORT_ANSWERS = (1, 2, 4, 6, 8)  # answer lengths around where capturing a CUDA graph starts to pay
SHORT_STEP_COUNTS = (1, 2, 3, 4, 6, 8)  # the same for the image steps


@dataclass
class BenchConfig:
    """Shapes and repeats. Phi-1.5 widths by default; `layers` 24 is the real depth."""

    hidden: int = 2048
    heads: int = 32
    mlp: int = 8192
    layers: int = 2
    text_size: int = 50295
    codebook: int = 8192
    text_len: int = 128  # max_seq_length T
    image_tokens: tuple[int, ...] = (256,)
    answer_tokens: int = 32
    answer_lengths: tuple[int, ...] = (8, 16, 32)
    t2i_steps: int = 4
    t2i_batches: tuple[int, ...] = (1, 4)
    repeats: int = 2
    seed: int = 0

    @classmethod
    def preset(cls, mode: str) -> "BenchConfig":
        if mode == "quick":  # a few minutes on 2 cores: Phi widths, 2 layers, short generations
            return cls(answer_tokens=16, answer_lengths=(4, 8, 16), t2i_steps=2, repeats=1)
        if mode == "full":  # every run takes minutes at full depth: one alternation is enough to rank them
            return cls(layers=24, image_tokens=(256, 1024), answer_tokens=100, answer_lengths=(25, 50, 100),
                       t2i_steps=16, repeats=1)
        if mode == "tiny":  # CI: checks agreement on toy shapes, timings meaningless
            return cls(hidden=64, heads=4, mlp=128, layers=2, text_size=300, codebook=64, text_len=12,
                       image_tokens=(16, 25), answer_tokens=6, answer_lengths=(3, 6), t2i_steps=3, repeats=1)
        raise ValueError(f"unknown bench mode {mode!r}")


def can_pack(device: torch.device) -> bool:
    """Weights can be packed for oneDNN on `device` (CPU only, and only where this torch build can)."""
    return device.type == "cpu" and packing_available()


class Bench:
    """The benchmark model and workloads on `device` (the same weights on every device: made on the CPU)."""

    def __init__(self, cfg: BenchConfig, device: str | torch.device = "cpu"):
        self.cfg = cfg
        self.device = torch.device(device)
        torch.manual_seed(cfg.seed)
        self.vocab = Vocabulary.standard(cfg.text_size, eos=cfg.text_size - 1, codebook_size=cfg.codebook)
        llm = PhiConfig(vocab_size=self.vocab.size, hidden_size=cfg.hidden, intermediate_size=cfg.mlp,
                        num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads)
        self.model_cfg = ShowoConfig(vocab_size=self.vocab.size, llm_vocab_size=cfg.text_size,
                                     codebook_size=cfg.codebook, num_vq_tokens=max(cfg.image_tokens),
                                     max_seq_length=cfg.text_len, llm_model_path="bench", llm=llm)
        self.model = Showo(self.model_cfg).eval()
        for p in self.model.parameters():  # peaky logits so greedy/sampled tokens are well separated
            if p.dim() == 2:
                torch.nn.init.normal_(p, std=0.5 / p.shape[1] ** 0.5 * 4)
        self.model.to(self.device)
        self.weights_bytes = sum(p.numel() * p.element_size() for p in self.model.parameters())
        self.g = torch.Generator().manual_seed(cfg.seed)
        self._casts: dict[torch.dtype | str, Showo] = {}  # reduced-precision and packed copies
        self._batch_prompts: dict[bool, list[torch.Tensor]] = {}  # by one_image

    def _text(self, n: int) -> list[int]:
        return torch.randint(0, self.cfg.text_size - 1, (n,), generator=self.g).tolist()

    def _mmu_prompt(self, question_len: int, n_image: int, codes: torch.Tensor | None = None) -> torch.Tensor:
        """A question of `question_len` tokens about `codes` (default: a new random image of `n_image` codes)."""
        if codes is None:
            codes = torch.randint(0, self.cfg.codebook, (n_image,), generator=self.g)
        return mmu_prompt_ids(self.vocab, self.vocab.codes_to_ids(codes), self._text(question_len)).to(self.device)

    # ---- understanding ------------------------------------------------------------------------------------

    def mmu_fns(self, n: int, ids: torch.Tensor | None = None,
                cuda_graph: bool | None = None) -> tuple[Callable, Callable]:
        """(ours, official) greedy answers of `n` tokens to one question about an image (`ids`: the prompt,
        default a new random one; `cuda_graph`: ours as `generate_text`'s)."""
        ids = self._mmu_prompt(QUESTION_TOKENS, self.cfg.image_tokens[0]) if ids is None else ids
        mask = mmu_mask(ids, self.vocab)
        ref = lambda: official_mmu_generate(self.model, ids, to_additive(mask), n)  # noqa: E731
        return self._answer(ids, n, cuda_graph), ref

    def _answer(self, ids: torch.Tensor, n: int, cuda_graph: bool | None = None, compiled: bool = False) -> Callable:
        """Our greedy answer of `n` tokens to the prompt `ids` [1, L] (`generate_text`'s `cuda_graph`, `compiled`)."""
        mask = mmu_mask(ids, self.vocab)[0, 0]
        return lambda: generate_text(self.model, [ids[0]], [mask], max_new_tokens=n, temperature=0,
                                     cuda_graph=cuda_graph, compiled=compiled)[0]

    def mmu(self, new_tokens: int | None = None, warmup: bool = True) -> Comparison:
        n = new_tokens or self.cfg.answer_tokens
        ids = self._mmu_prompt(QUESTION_TOKENS, self.cfg.image_tokens[0])
        return side_by_side(f"mmu_{n}_tokens", *self.mmu_fns(n, ids), self.cfg.repeats,
                            detail={"new_tokens": n, "prompt_tokens": ids.shape[1],
                                    "cuda_graph": uses_cuda_graph(self.device, True, n)},
                            warmup=self.mmu_fns(2, ids) if warmup else ())  # two tokens run every code path

    def mmu_cuda_graph(self) -> Comparison:
        """On a GPU: our cached greedy decoding with each token replayed as a CUDA graph vs launched kernel by
        kernel (`generate_text(cuda_graph=...)`); the same tokens. The graph is captured inside every timed run,
        so short answers lose: the detail's `short_answers` has the best of three runs of each variant for
        answers of `SHORT_ANSWERS` tokens (one token is the prompt's pass alone, no graph)."""
        n = self.cfg.answer_tokens
        ids = self._mmu_prompt(QUESTION_TOKENS, self.cfg.image_tokens[0])
        answer = lambda graph, k: self._answer(ids, k, cuda_graph=graph)  # noqa: E731
        out = side_by_side("mmu_cuda_graph_vs_eager", answer(True, n), answer(False, n), self.cfg.repeats,
                           detail={"new_tokens": n, "prompt_tokens": ids.shape[1]},
                           warmup=(answer(True, 2), answer(False, 2)))
        out.detail["short_answers"] = _graph_vs_eager_by_length(answer, SHORT_ANSWERS)
        return out

    def mmu_compiled(self) -> Comparison:
        """On a GPU: the CUDA-graph decoding of the step compiled by torch.compile vs of the plain step; the same
        tokens. The warm-up is a whole answer (a shorter one would leave the timed run a recompile for its
        cache length); its time, compilation included, is the detail's `compile_and_first_run_s`."""
        n = self.cfg.answer_tokens
        ids = self._mmu_prompt(QUESTION_TOKENS, self.cfg.image_tokens[0])
        compiled, plain = (self._answer(ids, n, cuda_graph=True, compiled=c) for c in (True, False))
        first_s = timed(compiled)[0]
        return side_by_side("mmu_compiled_graph_vs_graph", compiled, plain, self.cfg.repeats,
                            detail={"new_tokens": n, "prompt_tokens": ids.shape[1],
                                    "compile_and_first_run_s": first_s}, warmup=(plain,))

    def mmu_compiled_speedup(self) -> Comparison:
        """On a GPU: `mmu`'s comparison with our decoding compiled (`generate_text(compiled=True)`, CUDA graphs);
        run after `mmu_compiled`, whose compile of this prompt length it reuses (the warm-up is a whole answer)."""
        n = self.cfg.answer_tokens
        ids = self._mmu_prompt(QUESTION_TOKENS, self.cfg.image_tokens[0])
        compiled = self._answer(ids, n, cuda_graph=True, compiled=True)
        return side_by_side(f"mmu_{n}_tokens_compiled", compiled, self.mmu_fns(n, ids)[1], self.cfg.repeats,
                            detail={"new_tokens": n, "prompt_tokens": ids.shape[1]}, warmup=(compiled,))

    def mmu_batch(self, batch: int = 8, dtype: torch.dtype = torch.float32, warmup: bool = True) -> Comparison:
        """Answers per second at batch `batch` vs batch 1 (both ours, KV cache), prompts of different lengths.
        In float32 the answers must be identical; in bfloat16 the padded batch rounds differently, so only the
        answer lengths are checked and the fraction of identical tokens is reported. (With packed float32
        weights too: `mmu_batch_fp32`.)"""
        batched, single, short = self._mmu_batch_fns(batch, self.cast(dtype))
        exact = dtype == torch.float32
        same = (lambda a, b: a == b) if exact else (lambda a, b: [len(x) for x in a] == [len(x) for x in b])
        out = side_by_side(f"mmu_batch{batch}_vs_1_{_name(dtype)}", batched, single, self.cfg.repeats, same=same,
                           detail={"batch": batch, "new_tokens": self.cfg.answer_tokens, "dtype": _name(dtype)},
                           warmup=short if warmup else ())
        if not exact:
            pairs = [(x, y) for a, b in zip(*out.outputs) for x, y in zip(a, b)]
            out.detail["token_match_fraction"] = sum(x == y for x, y in pairs) / len(pairs)
        return out

    def mmu_batch_fp32(self, batch: int = 8, warmup: bool = True) -> tuple[Comparison, Comparison, Comparison]:
        """float32 answers per second at batch `batch` vs batch 1, with dense and with oneDNN-packed weights
        (`Showo.pack_weights`), the four runs alternating; all four must give the same tokens. Returns (batch
        `batch` packed vs the faster batch-1 run, batch `batch` dense vs batch 1 dense, batch 1 packed vs dense)."""
        batched_d, single_d, short_d = self._mmu_batch_fns(batch, self.model)
        batched_p, single_p, short_p = self._mmu_batch_fns(batch, self.packed())
        r = alternate({"batched_packed": batched_p, "single_packed": single_p, "batched_dense": batched_d,
                       "single_dense": single_d}, self.cfg.repeats, (*short_d, *short_p) if warmup else ())
        outputs = [out for _, outs in r.values() for out in outs]
        agree = all(out == outputs[0] for out in outputs)
        detail = {"batch": batch, "new_tokens": self.cfg.answer_tokens, "dtype": "float32"}
        best1 = min(("single_dense", "single_packed"), key=lambda k: r[k][0])

        def pair(ours: str, reference: str, name: str, **extra) -> Comparison:
            return Comparison(name, r[ours][0], r[reference][0], agree, {**detail, **extra})

        return (pair("batched_packed", best1, f"mmu_batch{batch}_packed_vs_1_float32", batch1_run=best1),
                pair("batched_dense", "single_dense", f"mmu_batch{batch}_vs_1_float32_dense"),
                pair("single_packed", "single_dense", "mmu_batch1_packed_vs_dense_float32", batch=1))

    def mmu_batch_one_image(self, batch: int = 8, warmup: bool = True) -> Comparison:
        """float32 answers per second at batch `batch` vs batch 1 for `batch` questions about ONE image, whose
        prefix the batch computes once (`generate_text`'s shared prefix): packed weights when they can be
        packed, as in `mmu_batch_fp32`'s headline, against batch 1 dense (the faster at batch 1, measured)."""
        model = self.packed() if can_pack(self.device) else self.model
        batched, _, (short_batched, _) = self._mmu_batch_fns(batch, model, one_image=True)
        _, single, (_, short_single) = self._mmu_batch_fns(batch, self.model, one_image=True)
        return side_by_side(f"mmu_batch{batch}_one_image_vs_1_float32", batched, single, self.cfg.repeats,
                            same=lambda a, b: a == b, warmup=(short_batched, short_single) if warmup else (),
                            detail={"batch": batch, "new_tokens": self.cfg.answer_tokens, "dtype": "float32",
                                    "packed": can_pack(self.device), "one_image": True})

    def _mmu_batch_fns(self, batch: int, model: Showo,
                       one_image: bool = False) -> tuple[Callable, Callable, tuple[Callable, Callable]]:
        """(all `batch` questions in one batch, the same one at a time, two-token warm-ups of both) on `model`;
        the questions (of different lengths, about `batch` random images or about one) are the same for every
        model."""
        if len(self._batch_prompts.get(one_image, [])) < batch:
            n_image = self.cfg.image_tokens[0]
            codes = torch.randint(0, self.cfg.codebook, (n_image,), generator=self.g) if one_image else None
            self._batch_prompts[one_image] = [self._mmu_prompt(12 + 3 * i, n_image, codes) for i in range(batch)]
        prompts = self._batch_prompts[one_image][:batch]
        ids, masks = [p[0] for p in prompts], [mmu_mask(p, self.vocab)[0, 0] for p in prompts]
        answers = lambda i, m, k: generate_text(model, i, m, max_new_tokens=k, temperature=0)  # noqa: E731
        n = self.cfg.answer_tokens
        return (lambda: answers(ids, masks, n), lambda: [answers([i], [m], n)[0] for i, m in zip(ids, masks)],
                (lambda: answers(ids, masks, 2), lambda: answers(ids[:1], masks[:1], 2)))

    def packed(self) -> Showo:
        """A float32 copy of the benchmark model with oneDNN-packed weights (made on first use)."""
        if "packed" not in self._casts:
            self._casts["packed"] = self._copy(torch.float32).pack_weights()
        return self._casts["packed"]

    def cast(self, dtype: torch.dtype) -> Showo:
        """The benchmark model in `dtype` (one copy per dtype, made on first use)."""
        if dtype == torch.float32:
            return self.model
        if dtype not in self._casts:
            self._casts[dtype] = self._copy(dtype)
        return self._casts[dtype]

    def _copy(self, dtype: torch.dtype) -> Showo:
        copy = Showo(self.model_cfg).to(self.device, dtype).eval()
        copy.load_state_dict(self.model.state_dict())
        return copy

    def drop_casts(self) -> None:
        """Free the reduced-precision copies (and compiled graphs holding them) before memory-hungry steps."""
        self._casts.clear()
        torch._dynamo.reset()

    # ---- generation ---------------------------------------------------------------------------------------

    def _t2i_inputs(self, batch: int, n_image: int):
        image = torch.full((batch, n_image), self.vocab.mask)
        cond = t2i_gen_sequence(self.vocab, [self._text(12) for _ in range(batch)], image, self.cfg.text_len)
        uncond = t2i_gen_sequence(self.vocab, [[]] * batch, image, self.cfg.text_len)
        return cond.to(self.device), uncond.to(self.device)

    def _generator(self) -> torch.Generator:
        """The sampling generator of every generation: the same seed for every variant, on the model's device."""
        return torch.Generator(self.device).manual_seed(1)

    def _t2i_ours(self, model: Showo, cond: torch.Tensor, uncond: torch.Tensor, n_image: int,
                  steps: int | None = None, cuda_graph: bool | None = None) -> Callable:
        return lambda: maskgit_generate(model, cond, self.vocab, n_image, uncond, steps or self.cfg.t2i_steps,
                                        GUIDANCE, generator=self._generator(), cuda_graph=cuda_graph)

    def t2i_fns(self, batch: int, n_image: int, steps: int | None = None,
                cuda_graph: bool | None = None) -> tuple[Callable, Callable]:
        """(ours, official) guided generation of `batch` images of `n_image` tokens in `steps` (default: the
        configured number; `cuda_graph`: ours as `maskgit_generate`'s)."""
        cond, uncond = self._t2i_inputs(batch, n_image)
        mask = t2i_mask(torch.cat([cond, uncond]), self.vocab)
        ref = lambda: official_t2i_generate(self.model, cond, uncond, mask, self.vocab, n_image,  # noqa: E731
                                            steps or self.cfg.t2i_steps, GUIDANCE,
                                            generator=self._generator())
        return self._t2i_ours(self.model, cond, uncond, n_image, steps, cuda_graph), ref

    def t2i_cuda_graph(self) -> Comparison:
        """On a GPU: our guided generation of one image with each step's forward replayed as a CUDA graph vs
        launched kernel by kernel (`maskgit_generate(cuda_graph=...)`); the same tokens. The graph is captured
        inside every timed run: the detail's `short_step_counts` has the best of three runs of each variant for
        generations of `SHORT_STEP_COUNTS` steps."""
        n = self.cfg.image_tokens[0]
        cond, uncond = self._t2i_inputs(1, n)
        image = lambda graph, k=None: self._t2i_ours(self.model, cond, uncond, n, k, graph)  # noqa: E731
        out = side_by_side("t2i_cuda_graph_vs_eager", image(True), image(False), self.cfg.repeats, same=torch.equal,
                           detail={"batch": 1, "image_tokens": n, "steps": self.cfg.t2i_steps},
                           warmup=(image(True, 1), image(False, 1)))
        out.detail["short_step_counts"] = _graph_vs_eager_by_length(image, SHORT_STEP_COUNTS)
        return out

    def t2i(self, batch: int, n_image: int, dtype: torch.dtype | None = None, compiled: bool = False,
            warmup: bool = True) -> Comparison:
        """Ours vs the official algorithm (fp32, identical tokens); with `dtype`: ours in dtype vs ours in fp32;
        with `compiled`: ours under torch.compile vs ours eager, both in `dtype`."""
        graph = lambda model: uses_image_graph(model, 2 * batch, n_image + 2, True, self.cfg.t2i_steps)  # noqa: E731
        detail = {"batch": batch, "image_tokens": n_image, "steps": self.cfg.t2i_steps,
                  "cuda_graph": graph(self.cast(dtype or torch.float32))}  # ours'; the reference's below if ours
        if dtype is not None and not compiled:  # ours in dtype against ours in fp32, which may launch kernels
            detail["reference_cuda_graph"] = graph(self.model)
        if dtype is None:  # warm-up: one step runs every code path
            flops = {name: self.t2i_flops(batch, n_image, name == "official") for name in ("ours", "official")}
            detail.update(flops=flops, work_ratio=flops["official"] / flops["ours"])
            return side_by_side(f"t2i_b{batch}_n{n_image}", *self.t2i_fns(batch, n_image), self.cfg.repeats,
                                same=torch.equal, detail=detail,
                                warmup=self.t2i_fns(batch, n_image, steps=1) if warmup else ())
        cond, uncond = self._t2i_inputs(batch, n_image)
        if compiled:
            eager = self.cast(dtype)
            fast, ours = (self._t2i_ours(m, cond, uncond, n_image) for m in (torch.compile(eager), eager))
            t0 = time.perf_counter()
            fast()
            detail["compile_and_first_run_s"] = time.perf_counter() - t0
            short = ()  # that first run was the warm-up
            name = f"t2i_compiled_vs_eager_{_name(dtype)}_b{batch}"
        else:
            models = (self.cast(dtype), self.model)
            fast, ours = (self._t2i_ours(m, cond, uncond, n_image) for m in models)
            short = tuple(self._t2i_ours(m, cond, uncond, n_image, steps=1) for m in models) if warmup else ()
            name = f"t2i_{_name(dtype)}_vs_fp32_b{batch}"
        # bf16 rounding changes which codes get sampled, so tokens cannot be identical; check the output is a
        # complete image of valid codes and report how many tokens match (quality is judged by `showo eval`).
        valid = lambda a, b: a.shape == b.shape and bool(((a >= 0) & (a < self.cfg.codebook)).all())  # noqa: E731
        out = side_by_side(name, fast, ours, self.cfg.repeats, same=valid, detail=detail, warmup=short)
        out.detail["token_match_fraction"] = float((out.outputs[0] == out.outputs[1]).float().mean())
        return out

    # ---- training -------------------------------------------------------------------------------------------

    def train_fns(self, checkpointing: bool, keep_grads: bool = False) -> tuple[Callable, Callable]:
        """(ours, official) one forward + backward of a mixed t2i/lm/mmu batch. Ours: the trainer's
        `group_loss_sums` (boolean masks, LM head only where targets are; gradient checkpointing if asked).
        Official: float masks, logits everywhere, `showo_losses` (the golden-tested official loss)."""
        n = self.cfg.image_tokens[0]
        mix = MixConfig(t2i=2, lm=1, mmu=1)
        gen = torch.Generator().manual_seed(3)
        codes = torch.randint(0, self.cfg.codebook, (2, n), generator=gen)
        t2i, _ = t2i_part(self.vocab, [self._text(10), self._text(30)], codes, self.cfg.text_len, mix, gen)
        lm = lm_part(self.vocab, [self._text(60)], t2i.ids.shape[1])
        mmu = mmu_part(self.vocab, codes[:1], [self._text(20)], self.cfg.text_len)
        parts: list[Part] = [p.to(self.device) for p in (t2i, lm, mmu)]
        t2i, lm, mmu = parts
        ids = torch.cat([p.ids for p in parts])
        float_mask = to_additive(torch.cat([p.mask for p in parts]))
        unshift = lambda nxt: torch.cat([torch.full_like(nxt[:, :1], -100), nxt[:, :-1]], dim=1)  # noqa: E731
        labels = torch.cat([t2i.here, unshift(lm.next), unshift(mmu.next)])

        def step(loss_fn, ckpt):
            self.model.train()
            self.model.set_gradient_checkpointing(ckpt)
            loss = loss_fn()
            loss.backward()
            self.model.zero_grad(set_to_none=not keep_grads)
            self.model.eval()
            self.model.set_gradient_checkpointing(False)
            return round(float(loss.detach()), 3)

        def ours():
            sums = group_loss_sums(self.model, parts)
            return sum(s / p.num_targets() for s, p in zip(sums, parts))

        def official():
            logits = self.model(ids, attention_mask=float_mask)
            return showo_losses(logits, labels, 2, 1, 1, self.cfg.text_len + 1).total(1.0, 1.0, 1.0)

        self.train_rows = ids.shape[0]
        return lambda: step(ours, checkpointing), lambda: step(official, False)

    def train_step(self, checkpointing: bool, warmup: bool = True) -> Comparison:
        ours, ref = self.train_fns(checkpointing)
        return side_by_side("train_step" + ("_checkpointing" if checkpointing else ""), ours, ref, self.cfg.repeats,
                            same=lambda a, b: abs(a - b) < 1e-2, detail={"rows": self.train_rows},
                            warmup=(ours, ref) if warmup else ())

    # ---- hardware -------------------------------------------------------------------------------------------

    @staticmethod
    def matmul_peak(dtype: torch.dtype = torch.float32, size: int = 2048, repeats: int = 5,
                    device: torch.device | str = "cpu") -> float:
        """Measured FLOP/s of a square matmul on `device` (the roof that utilisation is measured against)."""
        a, b = (torch.randn(size, size, dtype=dtype, device=device) for _ in range(2))
        timed(lambda: a @ b)
        best = min(timed(lambda: a @ b)[0] for _ in range(repeats))
        return 2 * size ** 3 / best

    def t2i_flops(self, batch: int, n_image: int, official: bool) -> float:
        """Matmul FLOPs of one guided generation (what `t2i_fns` runs): the work each algorithm does, so
        official / ours is the speed-up that skipped work alone gives at an equal FLOP rate.
        Official: every step runs all L positions of both branches, LM head everywhere over the whole
        vocabulary. Ours: the prompt once, then per step the N + 2 image-block positions attending to all L,
        LM head on the N image slots over the codebook only."""
        c = self.cfg
        length = t2i_gen_sequence(self.vocab, [[]], torch.full((1, n_image), self.vocab.mask), c.text_len).shape[1]
        rows, steps = 2 * batch, c.t2i_steps

        def forward(queries: int, keys: int, head_rows: int, head_vocab: int) -> float:
            per_layer = 2 * (4 * c.hidden * c.hidden + 2 * c.hidden * c.mlp) * queries + 4 * queries * keys * c.hidden
            return rows * (c.layers * per_layer + 2 * c.hidden * head_vocab * head_rows)

        if official:
            return steps * forward(length, length, length, self.vocab.size)
        prefix = length - n_image - 2
        return forward(prefix, prefix, 0, 0) + steps * forward(n_image + 2, length, n_image, c.codebook)

    def decode_flops_per_token(self, context: int) -> float:
        """Model FLOPs of one cached decode step (matmuls with the weights + attention over the context)."""
        c = self.cfg
        per_layer = 2 * (4 * c.hidden * c.hidden + 2 * c.hidden * c.mlp) + 4 * context * c.hidden
        return c.layers * per_layer + 2 * c.hidden * self.vocab.size


def _graph_vs_eager_by_length(make: Callable[[bool, int], Callable], lengths: tuple[int, ...]) -> dict:
    """{length: {"graph_s", "eager_s"}}: the best of three runs of `make(graph, length)` with and without a CUDA
    graph, for each length (answer tokens or image steps; short ones show what capturing the graph costs)."""
    return {str(k): {f"{name}_s": min(timed(make(graph, k))[0] for _ in range(3))
                     for name, graph in (("graph", True), ("eager", False))} for k in lengths}


def _name(dtype: torch.dtype) -> str:
    return str(dtype).split(".")[-1]
