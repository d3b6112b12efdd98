"""The `serve` section of `showo bench`: the answers a second `showo serve` gives clients asking at once, with its
batching of requests that wait together against `--no-batching`, on one model, alternating, answers compared.

It runs the embedded model (what `showo serve` answers with out of the box; the tiny random one in CI, or where the
package lacks it) on questions about scenes of the procedural world, through real HTTP on 127.0.0.1.
"""
from __future__ import annotations

import base64
import json
import threading
import urllib.request
from collections import Counter

from ..data.dataset import WorldStream
from ..data.world import render
from ..embedded import embedded_available, load_embedded
from ..files import png_bytes
from ..serving import ShowoServer
from .timing import Comparison, side_by_side


def serve_batching(mode: str, device: str = "cpu") -> Comparison:
    """`clients` threads each send `rounds` greedy questions one after another (a new one as soon as the last is
    answered); the time until all are answered, batching on (ours) vs off (reference). They agree when every
    request got the same tokens both ways. Mode "tiny" (CI) checks that on the tiny random model."""
    clients, rounds, max_new_tokens, repeats = {"tiny": (4, 2, 4, 1), "quick": (8, 2, 24, 3),
                                                "full": (8, 4, 24, 3)}[mode]
    if mode != "tiny" and embedded_available():
        pipe = load_embedded(device)
    else:
        from ..tiny import tiny_random_pipeline

        pipe = tiny_random_pipeline(seed=0).to(device)
    qa = WorldStream.for_split("eval", kind="mmu")
    bodies = [{"image": base64.b64encode(png_bytes(render(qa.scene(i), qa.config))).decode("ascii"),
               "question": qa.sample(i)["question"], "max_new_tokens": max_new_tokens}
              for i in range(clients * rounds)]
    batch_sizes: Counter = Counter()
    with ShowoServer(("127.0.0.1", 0), pipe, log=lambda line: None, max_rows=clients) as batched, \
            ShowoServer(("127.0.0.1", 0), pipe, log=lambda line: None, batching=False) as alone:
        for server in (batched, alone):
            threading.Thread(target=server.serve_forever, daemon=True).start()

        def load(server: ShowoServer) -> list[list[int]]:
            answers: dict[int, list[int]] = {}

            def client(c: int) -> None:
                for r in range(rounds):
                    out = _post(server.url, bodies[c * rounds + r])
                    answers[c * rounds + r] = out["token_ids"][0]
                    if server is batched:
                        batch_sizes[out["batched_with"] + 1] += 1

            threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if len(answers) != len(bodies):
                raise RuntimeError("a request of the serving benchmark failed")
            return [answers[i] for i in range(len(bodies))]

        try:
            c = side_by_side(f"serve, {clients} clients: batching", lambda: load(batched), lambda: load(alone),
                             repeats, warmup=[lambda: load(batched), lambda: load(alone)])
        finally:
            for server in (batched, alone):
                server.shutdown()
    c.detail.update(model=pipe.model_id, clients=clients, requests_per_client=rounds, max_new_tokens=max_new_tokens,
                    batch_wait_s=batched.batch_wait,
                    requests_by_batch_size={str(k): v for k, v in sorted(batch_sizes.items())})
    return c


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(f"{url}/v1/ask", json.dumps(body).encode())
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read())
