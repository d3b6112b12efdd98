"""`make demo`: run the main tasks end to end and write the results to out/demo/.

Until the embedded trained model ships, this runs on a tiny RANDOMLY INITIALISED model: the pictures are
noise and the answers gibberish. What it shows is that every stage (prompting, omni-attention, MaskGIT
decoding with the cached prompt, MAGVIT decoding, batched KV-cache understanding) runs end to end.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from PIL import Image

from .tiny import tiny_random_pipeline


def main(out_dir: str = "out/demo") -> int:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    print("showo demo: NOTE the model is a tiny random one (no trained weights yet) - outputs are noise.")
    t0 = time.perf_counter()
    pipe = tiny_random_pipeline(seed=0)
    images = pipe.text_to_image(["a red circle on the left", "two blue squares"], num_images_per_prompt=2,
                                num_inference_steps=8, guidance_scale=1.75, seed=0)
    for i, (img, meta) in enumerate(zip(images.images, images.metadata)):
        img.resize((128, 128), Image.NEAREST).save(out / f"t2i_{i}.png")
        (out / f"t2i_{i}.json").write_text(json.dumps(meta, indent=2))
    print(f"  text-to-image: {len(images.images)} images ({pipe.resolution}px, {pipe.grid_size}x{pipe.grid_size} tokens)")
    mask = Image.new("L", images.images[0].size, 0)
    mask.paste(255, (0, 0, mask.width // 2, mask.height))
    painted = pipe.inpaint(images.images[0], mask, "a green triangle", num_inference_steps=8, seed=0)
    painted.images[0].resize((128, 128), Image.NEAREST).save(out / "inpaint.png")
    print(f"  inpainting: regenerated {painted.metadata[0]['regenerated_tokens']} of {pipe.grid_size ** 2} tokens")
    answers = pipe.ask(images.images[:2], ["what colour is the object?", "how many objects?"], max_new_tokens=12)
    for meta, text in zip(answers.metadata, answers.texts):
        print(f"  ask image {meta['image_index']}: {meta['question']!r} -> {text!r}")
    story = pipe.write("Once upon a time", max_new_tokens=16, temperature=0.8, top_k=40, seed=0)
    print(f"  write: {story.texts[0]!r}")
    print(f"done in {time.perf_counter() - t0:.1f}s; outputs in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
