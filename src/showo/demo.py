"""`make demo`: every Show-o task on the embedded model, then a short fine-tuning, written to out/demo/ with an
index.html gallery.

The embedded model is a small Show-o trained here on a procedural world of coloured shapes (see README):
prompts and questions come from that world's evaluation split, which training never saw. Without the
embedded weights (a broken install), it falls back to a tiny random model and says so.
"""
from __future__ import annotations

import html
import sys
import time
from pathlib import Path

from PIL import Image

from .data.dataset import WorldStream
from .data.world import render
from .embedded import embedded_available, load_embedded


def _img(image: Image.Image, out: Path, name: str, scale: int = 3) -> str:
    image.resize((image.width * scale, image.height * scale), Image.NEAREST).save(out / name)
    return f'<img src="{name}" alt="{html.escape(name)}">'


def _finetune(pipe, picture: Image.Image, out: Path) -> str:
    """Teach the model `picture` for the word 'zork' and an answer it never gave; before and after, same seed."""
    import json
    import tempfile

    from .training.config import MixConfig, OptimConfig, TrainConfig
    from .training.finetune import finetune

    question, answer = "What is this picture called?", "zork"
    before = pipe.text_to_image("zork", seed=0).images[0], pipe.ask(picture, question, max_new_tokens=24).texts[0]
    config = TrainConfig(max_steps=30, precision="auto", log_every=30, save_every=30,
                         mix=MixConfig(t2i=2, lm=0, mmu=2), optim=OptimConfig(lr=1e-3, warmup_steps=2))
    with tempfile.TemporaryDirectory() as tmp:
        picture.save(Path(tmp) / "zork.png")
        data = Path(tmp) / "data.jsonl"
        data.write_text(json.dumps({"image": "zork.png", "caption": "zork"}) + "\n" +
                        json.dumps({"image": "zork.png", "question": question, "answer": answer}) + "\n")
        finetune(pipe, data, Path(tmp) / "run", config, progress=False)
    after = pipe.text_to_image("zork", seed=0).images[0], pipe.ask(picture, question, max_new_tokens=24).texts[0]
    q = html.escape(question)
    return (f"<figure>{_img(picture, out, 'ft_data.png')}<figcaption>training data: caption 'zork'; Q: {q} "
            f"A: {html.escape(answer)}</figcaption></figure>"
            f"<figure>{_img(before[0], out, 'ft_before.png')}<figcaption>before: 'zork' drawn; A: "
            f"{html.escape(before[1])}</figcaption></figure>"
            f"<figure>{_img(after[0], out, 'ft_after.png')}<figcaption>after: 'zork' drawn; A: "
            f"{html.escape(after[1])}</figcaption></figure>")


def main(out_dir: str = "out/demo") -> int:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if embedded_available():
        pipe = load_embedded()
        print(f"showo demo on the embedded model ({pipe.model_id}); outputs in {out}/")
    else:
        from .tiny import tiny_random_pipeline

        pipe = tiny_random_pipeline(seed=0)
        print("showo demo: the embedded model is missing, using a tiny RANDOM model (outputs are noise)")
    world = WorldStream.for_split("eval", kind="t2i")
    qa = WorldStream.for_split("eval", kind="mmu")
    rows: list[str] = []

    def section(title: str, body: str) -> None:
        rows.append(f"<h2>{html.escape(title)}</h2>\n{body}")
        print(f"[{time.perf_counter() - t0:5.1f}s] {title}")

    prompts = [world.sample(i)["prompt"] for i in range(4)]
    gen = pipe.text_to_image(prompts, num_inference_steps=12, guidance_scale=1.75, seed=0)
    section("text-to-image", "".join(f"<figure>{_img(im, out, f't2i_{i}.png')}<figcaption>{html.escape(p)}"
                                     f"</figcaption></figure>" for i, (im, p) in enumerate(zip(gen.images, prompts))))

    samples = [qa.sample(i) for i in range(4)]
    images = [Image.fromarray(((s["image"].permute(1, 2, 0) + 1) * 127.5).clamp(0, 255).byte().numpy())
              for s in samples]
    per_image = pipe.ask(images, [s["question"] for s in samples], max_new_tokens=24, pairwise=True).texts
    section("visual question answering", "".join(
        f"<figure>{_img(im, out, f'vqa_{i}.png')}<figcaption>Q: {html.escape(s['question'])}<br>A: "
        f"{html.escape(a)}<br><small>truth: {html.escape(s['answer'])}</small></figcaption></figure>"
        for i, (im, s, a) in enumerate(zip(images, samples, per_image))))

    caps = pipe.caption(images[:2], question="Describe the image.", max_new_tokens=40)
    section("captioning", "".join(f"<figure>{_img(im, out, f'cap_{i}.png')}<figcaption>{html.escape(c)}</figcaption>"
                                  f"</figure>" for i, (im, c) in enumerate(zip(images, caps.texts))))

    scene = world.scene(10)
    source = render(scene, world.config)
    mask = Image.new("L", source.size, 0)
    mask.paste(255, (0, 0, source.width // 2, source.height))
    painted = pipe.inpaint(source, mask, "one object: large red circle left", num_inference_steps=12, seed=0)
    section("inpainting (left half: 'large red circle left')",
            f"<figure>{_img(source, out, 'inpaint_in.png')}<figcaption>input</figcaption></figure>"
            f"<figure>{_img(painted.images[0], out, 'inpaint_out.png')}<figcaption>output</figcaption></figure>")

    wide = pipe.extrapolate(source, "a small blue square right", "right", num_inference_steps=12, seed=0)
    section("extrapolation (to the right)", f"<figure>{_img(wide.images[0], out, 'extrapolate.png')}</figure>")

    text = pipe.write("A small red circle", max_new_tokens=30)
    section("text generation", f"<p>A small red circle<b>{html.escape(text.texts[0])}</b></p>")

    story = pipe.mixed("An image of a large blue square on the left.", max_images=3, max_new_tokens=60,
                       num_inference_steps=12, guidance_scale=1.75, force_image_every_sentence=True, seed=0)
    parts = []
    for k, seg in enumerate(story.segments):
        parts.append(_img(seg, out, f"mixed_{k}.png") if isinstance(seg, Image.Image) else f"<p>{html.escape(seg)}</p>")
    section("mixed-modality story", "".join(parts))

    section("fine-tuning (showo finetune): a made-up word and a new question, 30 steps",
            _finetune(pipe, render(world.scene(3), world.config), out))

    page = ("<!doctype html><meta charset='utf-8'><title>showo demo</title><style>figure{display:inline-block;"
            "margin:6px;max-width:220px;font:12px sans-serif}img{image-rendering:pixelated}</style>"
            f"<h1>showo demo: {html.escape(pipe.model_id)}</h1>" + "\n".join(rows))
    (out / "index.html").write_text(page)
    print(f"done in {time.perf_counter() - t0:.1f}s: open {out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
