"""`ShowoPipeline`: every Show-o task behind one object, in the diffusers calling convention.

The pipeline owns user concerns (loading, validation, batching, seeds, decoding to PIL, metadata); the
model knows nothing about sampling (beyond `pack_weights` packing apart the codebook rows image generation
reads) and the samplers know nothing about files.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from ..errors import ConfigError, InputError
from ..fields import is_number
from ..hardware import check_device, check_dtype, check_generator, warn_if_emulated
from ..limits import check_batch, check_callback, check_image_count, check_output_size
from ..model import Showo
from ..model.clip import ClipVisionTower, clip_preprocess
from ..prompting.masks import causal_mask, mmu_clip_mask, mmu_mask
from ..prompting.vocab import Vocabulary
from ..prompting.sequences import (SYSTEM_PROMPT, clip_image_slot, clip_question_text, mmu_clip_prompt_ids,
                                   mmu_prompt_ids, mmu_question_text, t2i_gen_sequence)
from ..sampling.autoregressive import TOKEN_ARGUMENTS, TokenCallback, generate_text, long_enough_for_static_step
from ..sampling.maskgit import STEP_ARGUMENTS, MaskGITStep, maskgit_generate
from ..tokenizers.image_io import ImageInput, mask_to_grid, postprocess, preprocess
from ..tokenizers.magvit import MagvitV2
from ..tokenizers.text import TextTokenizer
from .extrapolate import check_extrapolation, extend_canvas, final_grid
from .inputs import (check_codes, check_output_type, check_prompt, check_prompts, load_image, load_mask,
                     plain_arguments, question_pairs, square_input, warn)
from .interleaved import check_mixed, ends_sentence, generate_interleaved, row_capacity, split_segments
from .loading import check_parts, load_parts, save_parts
from .outputs import ImageOutput, MixedOutput, TextOutput

CAPTION_QUESTION = "Describe the image."  # also the embedded model's training question
EMULATED_FIX = "load it in float32 (dtype=torch.float32; --dtype float32 on the command line)"
PACKED_NOT_COMPILED = ("packed weights cannot be decoded compiled (torch.compile cannot lower oneDNN's packed "
                       "products): use one or the other")


class ShowoPipeline:
    """Text-to-image, inpainting, understanding and text generation with one Show-o model."""

    def __init__(self, model: Showo, vq: MagvitV2, tokenizer: TextTokenizer, clip: ClipVisionTower | None = None,
                 model_id: str = ""):
        check_parts(model, vq, tokenizer, clip, model_id)
        self.model, self.vq, self.tokenizer, self.clip = model.eval(), vq.eval(), tokenizer, clip
        self.model_id = model_id
        self.compiled_decoding = False  # see compile_decoding
        warn_if_emulated(model.dtype, model.device, "the transformer runs", EMULATED_FIX)

    # ---- construction ----------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, model: str | Path | None = None, vq: str | Path | None = None,
                        tokenizer: str | Path | None = None, clip: str | Path | None = None,
                        dtype: torch.dtype | None = None, device: str | torch.device = "cpu") -> "ShowoPipeline":
        """No `model` (or "embedded"): the embedded default (trained on the procedural world, shipped in the
        package); "tiny-random": a tiny randomly initialised model (noise images, gibberish text) for trying code.
        Otherwise a pipeline directory written by `save_pretrained` (showo/, magvit/, tokenizer/), or an official
        checkpoint directory / hub id with the image and text tokenizers given separately (defaults:
        showlab/magvitv2 and microsoft/phi-1_5). `clip` is required for the w_clip_vit checkpoints' understanding.
        `device`: "cpu" (default), "cuda", "cuda:N", "mps" or "auto" (CUDA, then MPS, then the CPU)."""
        from ..embedded import EMBEDDED_NAME, TINY_RANDOM_NAME

        check_dtype(dtype)
        device = check_device(device)
        if model is None or model in (EMBEDDED_NAME, TINY_RANDOM_NAME):
            if any(part is not None for part in (vq, tokenizer, clip)):
                raise ConfigError(f"vq, tokenizer and clip go with a model path; the {model or EMBEDDED_NAME} "
                                  "model has its own")
            if model == TINY_RANDOM_NAME:
                from ..tiny import tiny_random_pipeline

                with torch.random.fork_rng(devices=[]):  # its weights' seed must not reset the caller's generator
                    return tiny_random_pipeline(seed=0).to(device=device, dtype=dtype)
            from ..embedded import load_embedded

            return load_embedded(device=str(device), dtype=dtype)
        return cls(*load_parts(model, vq, tokenizer, clip, dtype, device))

    def save_pretrained(self, directory: str | Path) -> None:
        """Write showo/, magvit/ and tokenizer/ into `directory` (a pipeline directory `from_pretrained` reads)."""
        save_parts(self, directory)

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "ShowoPipeline":
        """Move the model (and image tokenizer, kept in float32) to `device`; cast the model to `dtype`."""
        check_dtype(dtype)
        device = None if device is None else check_device(device)
        if self.model.packed and (dtype not in (None, torch.float32) or device is not None and torch.device(device).type != "cpu"):
            raise ConfigError("a pipeline with packed weights stays float32 on the CPU: load it again to cast or "
                              "move it")
        before = (self.model.dtype, self.model.device)
        self.model.to(device=device, dtype=dtype)
        self.vq.to(device=device)
        if self.clip is not None:
            self.clip.to(device=device)
        if (self.model.dtype, self.model.device) != before:
            warn_if_emulated(self.model.dtype, self.model.device, "the transformer runs", EMULATED_FIX)
        return self

    @plain_arguments
    def pack_weights(self, batch_hint: int = 8) -> "ShowoPipeline":
        """Pre-pack the transformer's float32 weights for oneDNN (CPU inference only, irreversible): batched
        understanding 1.36-1.47x faster at full depth over three runs; at batch 1 no gain (0.76-1.01x). See `Showo.pack_weights`."""
        if self.compiled_decoding:
            raise ConfigError(PACKED_NOT_COMPILED)
        self.model.pack_weights(batch_hint)
        return self

    @plain_arguments
    def compile_decoding(self, enabled: bool = True) -> "ShowoPipeline":
        """Decode the text of ask, caption and write with the fixed-shape step compiled by torch.compile
        (`generate_text(compiled=True)`). The first answer of a process waits for the compile; later tokens are
        faster: at full size on an H200 in fp32, 100-token answers 1.34-1.44x our CUDA-graph decoding (11.7x the
        official algorithm) after 34-36 s of compiling and first answer; on the CPU 1.10x our usual decoding
        (2 layers, 32 tokens). `exact` calls, answers allowed fewer than `GRAPH_MIN_NEW_TOKENS` tokens (too short to pay
        for a graph's capture) and `mixed` (its own decoding loop) stay uncompiled."""
        if enabled and self.model.packed:
            raise ConfigError(PACKED_NOT_COMPILED)
        self.compiled_decoding = enabled
        return self

    # ---- geometry ----------------------------------------------------------------------------------------------

    @property
    def vocab(self) -> Vocabulary:
        return self.tokenizer.vocab

    @property
    def grid_size(self) -> int:
        return self.model.config.grid_size

    @property
    def resolution(self) -> int:
        """Pixels per side of a generated image (code grid side x tokenizer downsampling)."""
        return self.grid_size * self.vq.config.downsample_factor

    @property
    def device(self) -> torch.device:
        return self.model.device

    # ---- helpers -------------------------------------------------------------------------------------------------

    def _generator(self, seed: int | None, generator: torch.Generator | None) -> tuple[torch.Generator, int | None]:
        """The generator a call draws from and the seed its metadata records. Without either, a seed is drawn
        from torch's global generator (so `torch.manual_seed` still pins the call) and recorded: every result
        can be reproduced with `seed=` (a given generator's seed is not known: None)."""
        if generator is not None:
            check_generator(generator, self.device)
            if seed is not None:  # the metadata records the seed: it must be what drew the result
                raise InputError("give seed or generator, not both")
            return generator, None
        if seed is None:
            seed = int(torch.randint(2 ** 63 - 1, ()))
        elif not is_number(seed, integer=True) or not 0 <= seed < 2 ** 63:
            raise InputError(f"seed must be an integer in [0, 2**63), got {seed!r}")
        return torch.Generator(device=self.device).manual_seed(seed), seed

    def _prompt_ids(self, prompt: str) -> list[int]:
        """Tokens of a generation prompt; prompts longer than the model's text region are truncated (warned)."""
        ids = self.tokenizer.encode_text(prompt)
        room = self.model.config.max_seq_length - 2  # [<t2i>, bos, text, eos] must fit in T + 1
        if len(ids) > room:
            warn(f"prompt is {len(ids)} tokens; only the first {room} are used: {prompt[:40]!r}...")
        return ids

    @torch.no_grad()
    def encode_images(self, images: Sequence) -> torch.Tensor:
        """Codes [B, N] of images (paths, PIL images or arrays) after the official resize/centre-crop
        pre-processing."""
        if not isinstance(images, (list, tuple)) or not images:
            raise InputError("images must be a non-empty list of file paths, PIL images or numpy arrays")
        check_batch(f"{len(images)} images", len(images))
        pixels = torch.stack([preprocess(load_image(i), self.resolution) for i in images])
        return self.vq.get_code(pixels.to(self.device))

    @torch.no_grad()
    def decode_codes(self, codes: torch.Tensor, grid: tuple[int, int] | None = None,
                     output_type: str = "pil") -> list[Image.Image] | np.ndarray | torch.Tensor:
        """Images of image codes [B, h*w] (a square grid unless `grid=(h, w)`), e.g. `ImageOutput.codes`: PIL
        images, or with `output_type` "np" / "pt" the decoder's pixels as floats in [0, 1] ([B, H, W, 3] / [B, 3,
        H, W]; PIL images hold them truncated to 8 bits, as the official code saves them)."""
        check_output_type(output_type, latent=False)
        h, w = check_codes(codes, self.vq.config.codebook_size, grid)
        check_output_size(h * self.vq.config.downsample_factor, w * self.vq.config.downsample_factor)
        pixels = self.vq.decode_code(codes.to(self.device), shape=grid)
        if output_type == "pil":
            return postprocess(pixels)
        unit = ((pixels.float() + 1) / 2).clamp(0, 1).cpu()
        return unit if output_type == "pt" else unit.permute(0, 2, 3, 1).numpy()

    def _output(self, codes: torch.Tensor, grid: tuple[int, int], meta: list[dict], output_type: str) -> ImageOutput:
        images = None if output_type == "latent" else self.decode_codes(codes, grid, output_type)
        return ImageOutput(images, codes.cpu(), grid, meta)

    def _fill(self, prompts: list[str], image_ids: torch.Tensor, steps: int, guidance: float, temperature: float,
              schedule: str, generator, callback, exact: bool) -> torch.Tensor:
        """Run MaskGIT on t2i-layout sequences whose image slots hold `image_ids` (mask id where unknown);
        `maskgit_generate` checks the sampling arguments."""
        if not isinstance(schedule, str):  # the metadata records its name (maskgit_generate also takes a function)
            raise InputError(f"schedule must be a schedule name (cosine, linear, pow2, sigmoid), got {schedule!r}")
        t = self.model.config.max_seq_length
        text = [self._prompt_ids(p) for p in prompts]
        ids = t2i_gen_sequence(self.vocab, text, image_ids, t).to(self.device)
        uncond = t2i_gen_sequence(self.vocab, [[]] * len(prompts), image_ids, t).to(self.device) if guidance > 0 else None
        return maskgit_generate(self.model, ids, self.vocab, image_ids.shape[1], uncond_input_ids=uncond,
                                num_inference_steps=steps, guidance_scale=guidance, temperature=temperature,
                                schedule=schedule, generator=generator, reuse_prefix=not exact, callback=callback)

    def _meta(self, task: str, **kw) -> dict:
        """What produced a result: the task's arguments and how the model ran (dtype, device, packed weights and,
        for text, `compiled_decoding` can change sampled tokens)."""
        return {"task": task, "model": self.model_id, "dtype": str(self.model.dtype).removeprefix("torch."),
                "device": str(self.device), "packed_weights": self.model.packed, **kw}

    # ---- image generation ------------------------------------------------------------------------------------

    @plain_arguments
    def text_to_image(self, prompt: str | list[str], num_images_per_prompt: int = 1, num_inference_steps: int = 18,
                      guidance_scale: float = 1.75, temperature: float = 1.0, schedule: str = "cosine",
                      seed: int | None = None, generator: torch.Generator | None = None,
                      callback: Callable[[MaskGITStep], None] | None = None, exact: bool = False,
                      output_type: str = "pil") -> ImageOutput:
        """Images for each prompt. `guidance_scale` g uses Show-o's `(1+g)*cond - g*uncond` (0 disables it);
        `exact=True` recomputes the prompt at every step like the official code (same tokens, slower).
        `output_type` (also of inpaint and extrapolate): "pil" (default), "np" (float32 [B, H, W, 3] in [0, 1]),
        "pt" (a float32 tensor [B, 3, H, W] in [0, 1]) or "latent" (`images` None: only the codes, not decoded)."""
        prompts = check_prompts(prompt)
        check_output_type(output_type)
        check_image_count("num_images_per_prompt", num_images_per_prompt, len(prompts))
        rows = [p for p in prompts for _ in range(num_images_per_prompt)]
        n = self.model.config.num_vq_tokens
        image_ids = torch.full((len(rows), n), self.vocab.mask, dtype=torch.long)
        gen, seed = self._generator(seed, generator)
        codes = self._fill(rows, image_ids, num_inference_steps, guidance_scale, temperature, schedule, gen,
                           callback, exact)
        meta = [self._meta("text_to_image", prompt=p, index=i % num_images_per_prompt, seed=seed,
                           num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                           temperature=temperature, schedule=schedule, batch_prompts=prompts,
                           num_images_per_prompt=num_images_per_prompt, exact=exact) for i, p in enumerate(rows)]
        return self._output(codes, (self.grid_size,) * 2, meta, output_type)

    @plain_arguments
    def inpaint(self, image: ImageInput, mask_image: ImageInput, prompt: str, num_images: int = 1,
                num_inference_steps: int = 16, guidance_scale: float = 1.75, temperature: float = 1.0,
                schedule: str = "cosine", seed: int | None = None, generator: torch.Generator | None = None,
                callback: Callable[[MaskGITStep], None] | None = None, exact: bool = False,
                output_type: str = "pil") -> ImageOutput:
        """Regenerate the white part of `mask_image` following `prompt`; codes outside it are kept exactly."""
        check_prompt(prompt)
        check_output_type(output_type)
        check_image_count("num_images", num_images)
        picture = square_input(load_image(image), "inpainting")
        mask = load_mask(mask_image, picture.size)
        grid = mask_to_grid(mask, self.resolution, (self.grid_size, self.grid_size))
        if not grid.any():
            raise InputError("the mask selects nothing to regenerate (no white area survives at the token grid)")
        if grid.all():
            warn("the mask covers the whole image: this is plain text-to-image")
        codes = self.encode_images([picture]).cpu().repeat(num_images, 1)
        image_ids = torch.where(grid, self.vocab.mask, self.vocab.codes_to_ids(codes))
        gen, seed = self._generator(seed, generator)
        out = self._fill([prompt] * num_images, image_ids, num_inference_steps, guidance_scale, temperature,
                         schedule, gen, callback, exact)
        meta = [self._meta("inpaint", prompt=prompt, index=i, seed=seed, num_inference_steps=num_inference_steps,
                           guidance_scale=guidance_scale, temperature=temperature, schedule=schedule,
                           num_images=num_images, exact=exact, regenerated_tokens=int(grid.sum()))
                for i in range(num_images)]
        return self._output(out, (self.grid_size,) * 2, meta, output_type)

    @plain_arguments
    def extrapolate(self, image: ImageInput, prompts: str | list[str], directions: str | list[str], offset: int = 0,
                    num_images: int = 1, num_inference_steps: int = 16, guidance_scale: float = 1.75,
                    temperature: float = 1.0, schedule: str = "cosine", seed: int | None = None,
                    generator: torch.Generator | None = None,
                    callback: Callable[[MaskGITStep], None] | None = None, exact: bool = False,
                    output_type: str = "pil") -> ImageOutput:
        """Grow `image` beyond its borders, one direction (left/right/up/down) per step, each step adding
        grid//2 + offset token columns/rows drawn from its prompt (one prompt and one direction per step, or
        one of either for all steps). The image's own codes are kept exactly; the whole canvas is decoded as
        one image (see extrapolate.py)."""
        g = self.grid_size
        texts, dirs = check_extrapolation(check_prompts(prompts), directions, offset, g)
        rows, columns = final_grid(g, offset, dirs)
        f = self.vq.config.downsample_factor
        check_output_size(rows * f, columns * f)  # before the work, not at the decode that ends it
        check_image_count("num_images", num_images)
        check_output_type(output_type)
        gen, seed = self._generator(seed, generator)
        canvas = self.encode_images([square_input(load_image(image), "extrapolation")]).cpu()
        canvas = canvas.reshape(1, g, g).repeat(num_images, 1, 1)
        for text, direction in zip(texts, dirs):
            fill = lambda ids, t=text: self._fill([t] * num_images, ids, num_inference_steps, guidance_scale,  # noqa: E731
                                                  temperature, schedule, gen, callback, exact).cpu()
            canvas = extend_canvas(canvas, direction, offset, g, self.vocab, fill)
        h, w = canvas.shape[1:]
        codes = canvas.reshape(num_images, -1)
        meta = [self._meta("extrapolate", prompts=texts, directions=dirs, offset=offset, index=i, seed=seed,
                           num_images=num_images, num_inference_steps=num_inference_steps,
                           guidance_scale=guidance_scale, temperature=temperature, schedule=schedule, exact=exact)
                for i in range(num_images)]
        return self._output(codes, (h, w), meta, output_type)

    @plain_arguments
    def mixed(self, prompt: str, max_images: int = 4, max_new_tokens: int = 200, num_inference_steps: int = 16,
              guidance_scale: float = 0.0, text_temperature: float = 0.0, image_temperature: float = 1.0,
              top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
              generator: torch.Generator | None = None, on_token: TokenCallback | None = None,
              callback: Callable[[MaskGITStep], None] | None = None,
              force_image_every_sentence: bool = False) -> MixedOutput:
        """Continue `prompt` with interleaved text and images: the model writes text and opens an image with
        `<soi>`, which MaskGIT then fills (layout and stopping rules: pipelines/interleaved.py). With
        `force_image_every_sentence`, an image follows every text that ends with '.', '!' or '?'."""
        check_mixed(prompt, max_images, max_new_tokens, num_inference_steps, guidance_scale, text_temperature,
                    image_temperature, top_k, top_p)
        check_callback("on_token", on_token, TOKEN_ARGUMENTS)
        check_callback("callback", callback, STEP_ARGUMENTS)
        force = (lambda seg: ends_sentence(self.tokenizer.decode(seg))) if force_image_every_sentence else None
        gen, seed = self._generator(seed, generator)
        n = self.model.config.num_vq_tokens
        prompt_ids = self.tokenizer.encode_text(prompt)  # images are the model's to open
        longest = row_capacity(prompt_ids, max_new_tokens, max_images, n)
        limit = self.model.config.llm.max_position_embeddings
        if longest > limit:
            raise InputError(f"prompt of {len(prompt_ids)} tokens + max_new_tokens {max_new_tokens} + max_images "
                             f"{max_images} of {n + 1} positions can exceed the model's {limit} positions: shorten "
                             "the prompt or lower max_new_tokens or max_images")
        result = generate_interleaved(
            self.model, self.vocab, prompt_ids, n, max_images=max_images,
            max_new_tokens=max_new_tokens, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
            text_temperature=text_temperature, image_temperature=image_temperature, top_k=top_k, top_p=top_p,
            generator=gen, on_token=on_token, callback=callback,
            force_sentence_end=force)
        parts = split_segments(result, self.vocab, n)
        codes = [p for p in parts if isinstance(p, torch.Tensor)]
        pictures = iter(self.decode_codes(torch.stack(codes)) if codes else [])
        segments = [next(pictures) if isinstance(p, torch.Tensor) else self.tokenizer.decode(p) for p in parts]
        meta = self._meta("mixed", prompt=prompt, seed=seed, max_images=max_images, max_new_tokens=max_new_tokens,
                          num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                          text_temperature=text_temperature, image_temperature=image_temperature, top_k=top_k,
                          top_p=top_p, force_image_every_sentence=force_image_every_sentence,
                          num_images=len(codes), image_codes=[c.tolist() for c in codes],
                          prompt_length=result.prompt_length, stop_reason=result.stop_reason)
        return MixedOutput(segments, result.ids, meta)

    # ---- understanding and text ----------------------------------------------------------------------------

    def _decode(self, prompts_ids, masks, max_new_tokens, temperature, top_k, top_p, generator, on_token,
                exact, embeds=None) -> list[list[int]]:
        """`generate_text` on prompts whose room the caller has checked (`_check_room`, before their masks)."""
        return generate_text(self.model, prompts_ids, masks, embeds, max_new_tokens=max_new_tokens,
                             temperature=temperature, top_k=top_k, top_p=top_p, eos_id=self.vocab.eos,
                             generator=generator, use_cache=not exact, on_token=on_token,
                             compiled=self._compiled(exact, max_new_tokens))

    def _check_room(self, longest: int, max_new_tokens: int) -> None:
        """Refuse a prompt that leaves no room for the answer; called before the prompts' [L, L] masks are built
        (a 100,000-token prompt's mask alone is 10 GB)."""
        limit = self.model.config.llm.max_position_embeddings
        if isinstance(max_new_tokens, int) and longest + max_new_tokens > limit:  # (its type: generate_text checks it)
            raise InputError(f"prompt of {longest} tokens + max_new_tokens {max_new_tokens} exceeds the model's "
                             f"{limit} positions: shorten the text or lower max_new_tokens")

    def _compiled(self, exact: bool, max_new_tokens: int) -> bool:
        """Whether a text call decodes with the compiled step (see `compile_decoding`; once torch.compile's limit
        of variants is used up, the step runs uncompiled with a warning, which this does not see)."""
        return self.compiled_decoding and long_enough_for_static_step(not exact, max_new_tokens)

    @plain_arguments
    def ask(self, image: ImageInput | Sequence[ImageInput], question: str | list[str], max_new_tokens: int = 100,
            temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
            generator: torch.Generator | None = None, on_token: TokenCallback | None = None,
            exact: bool = False, pairwise: bool = False) -> TextOutput:
        """Answer every question about every image (one image or a list), or with `pairwise` question i about
        image i only. temperature 0 = greedy, as the official demo; answers are batched.
        `on_token(step, ids, finished)` streams tokens as they come."""
        images, questions, pairs = question_pairs(image, question, pairwise)
        gen, seed = self._generator(seed, generator)
        images = [square_input(load_image(i), "understanding") for i in images]  # (warned: both crop the centre)
        if self.model.config.w_clip_vit:
            ids = self._ask_clip(images, pairs, max_new_tokens, temperature, top_k, top_p, gen, on_token, exact)
        else:
            codes = self.encode_images(images).cpu()
            text = {q: self.tokenizer.encode_text(mmu_question_text(q), "question") for q in questions}
            prompts = [mmu_prompt_ids(self.vocab, self.vocab.codes_to_ids(codes[i]), text[q])[0] for i, q in pairs]
            self._check_room(max(len(p) for p in prompts), max_new_tokens)
            masks = [mmu_mask(p[None], self.vocab)[0, 0] for p in prompts]
            ids = self._decode(prompts, masks, max_new_tokens, temperature, top_k, top_p, gen, on_token, exact)
        texts = [self.tokenizer.decode(t).strip() for t in ids]
        compiled = self._compiled(exact, max_new_tokens)
        # the batch is recorded: with sampling, a row's tokens depend on the rows drawn beside it
        meta = [self._meta("ask", image_index=i, question=q, seed=seed, max_new_tokens=max_new_tokens,
                           temperature=temperature, top_k=top_k, top_p=top_p, num_images=len(images),
                           batch_questions=questions, exact=exact, compiled_decoding=compiled,
                           **({"pairwise": True} if pairwise else {})) for i, q in pairs]
        return TextOutput(texts, ids, meta)

    def _ask_clip(self, images, pairs, max_new_tokens, temperature, top_k, top_p, gen, on_token, exact):
        if self.clip is None:
            raise ConfigError("this is a CLIP-ViT checkpoint: pass clip=<CLIP directory> to from_pretrained")
        pixels = torch.stack([clip_preprocess(i, self.clip.image_size) for i in images])
        feats = self.clip(pixels.to(self.device))
        system = self.tokenizer.encode(SYSTEM_PROMPT)
        slot = clip_image_slot(len(system))
        embeds, masks = [], []
        with torch.no_grad():  # each image projected once, each question tokenized once (not once per pair)
            projected = [self.model.project_features(feats[i:i + 1]) for i in range(len(images))]
            encode = lambda q: self.tokenizer.encode_text(clip_question_text(q), "question")  # noqa: E731
            questions = {q: mmu_clip_prompt_ids(self.vocab, system, encode(q))
                         for q in dict.fromkeys(q for _, q in pairs)}
            for i, q in pairs:
                e = self.model.embed_with_image(questions[q].to(self.device), projected[i], slot)[0]
                self._check_room(e.shape[0], max_new_tokens)
                embeds.append(e)
                masks.append(mmu_clip_mask(e.shape[0], len(system), num_image_tokens=feats.shape[1])[0, 0])
        return self._decode(None, masks, max_new_tokens, temperature, top_k, top_p, gen, on_token, exact, embeds)

    def caption(self, image, question: str = CAPTION_QUESTION, **kwargs) -> TextOutput:
        """A description of each image (the understanding prompt with a captioning question)."""
        out = self.ask(image, question, **kwargs)
        for m in out.metadata:
            m["task"] = "caption"
        return out

    @plain_arguments
    def write(self, prompt: str | list[str], max_new_tokens: int = 100, temperature: float = 0.0,
              top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
              generator: torch.Generator | None = None, on_token: TokenCallback | None = None,
              exact: bool = False) -> TextOutput:
        """Continue text prompts (pure language modelling, causal attention); returns the continuations."""
        prompts = check_prompts(prompt)
        check_batch(f"{len(prompts)} prompts", len(prompts))
        ids = [torch.tensor([self.vocab.bos, *self.tokenizer.encode_text(p)]) for p in prompts]
        self._check_room(max(len(i) for i in ids), max_new_tokens)
        masks = [causal_mask(len(i)) for i in ids]
        gen, seed = self._generator(seed, generator)
        out = self._decode(ids, masks, max_new_tokens, temperature, top_k, top_p, gen, on_token, exact)
        texts = [self.tokenizer.decode(t) for t in out]
        compiled = self._compiled(exact, max_new_tokens)
        meta = [self._meta("write", prompt=p, seed=seed, max_new_tokens=max_new_tokens, temperature=temperature,
                           top_k=top_k, top_p=top_p, batch_prompts=prompts, exact=exact,
                           compiled_decoding=compiled) for p in prompts]
        return TextOutput(texts, out, meta)
