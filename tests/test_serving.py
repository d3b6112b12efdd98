"""`showo serve` on the tiny random model: every task answers what the Python API returns, bad requests get one
line and a 4xx status, a failure of the server's own gets 500 with its traceback only in the log."""
from __future__ import annotations

import base64
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from showo.cli.main import main
from showo.files import png_bytes
from showo.serving import ShowoServer, TASKS, batching
from showo.serving.server import MAX_BODY_BYTES
from showo.tiny import tiny_random_pipeline

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pipe():
    return tiny_random_pipeline(seed=0)


@pytest.fixture(scope="module")
def server(pipe):
    lines: list[str] = []
    server = ShowoServer(("127.0.0.1", 0), pipe, log=lines.append)
    server.lines = lines
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def call(server, path: str, body: object = None, raw: bytes | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.url + path, data=data)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def b64(image: Image.Image, data_uri: bool = False) -> str:
    text = base64.b64encode(png_bytes(image)).decode()
    return f"data:image/png;base64,{text}" if data_uri else text


def pictures() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(2)]


def test_health_and_tasks_describe_the_python_api(server, pipe):
    assert call(server, "/health") == (200, {"status": "ok", "model": pipe.model_id, "device": "cpu",
                                             "dtype": "float32"})
    status, tasks = call(server, "/v1/tasks")
    assert status == 200 and set(tasks) == set(TASKS)
    t2i = tasks["text-to-image"]["fields"]
    assert t2i["prompt"] == {"required": True} and t2i["num_inference_steps"] == {"required": False, "default": 18}
    assert not {"generator", "callback", "output_type"} & set(t2i)
    assert tasks["caption"]["fields"]["question"]["default"] == "Describe the image."
    assert tasks["inpaint"]["images"] == ["image", "mask_image"] and "on_token" not in tasks["ask"]["fields"]


def test_image_tasks_answer_what_the_api_returns(server, pipe):
    status, out = call(server, "/v1/text-to-image", {"prompt": ["a", "b"], "num_inference_steps": 2, "seed": 3})
    want = pipe.text_to_image(["a", "b"], num_inference_steps=2, seed=3)
    assert status == 200 and out["warnings"] == [] and out["grid"] == list(want.grid)
    assert [base64.b64decode(i) for i in out["images"]] == [png_bytes(i) for i in want.images]
    assert out["codes"] == want.codes.tolist() and out["metadata"] == json.loads(json.dumps(want.metadata))

    picture, wide = pictures()[0], Image.new("RGB", (48, 32), "white")
    mask = Image.new("L", (48, 32), 0)
    mask.paste(255, (0, 0, 24, 16))
    status, out = call(server, "/v1/inpaint", {"image": b64(wide), "mask_image": b64(mask, data_uri=True),
                                               "prompt": "x", "num_images": 2, "num_inference_steps": 2, "seed": 1})
    want = pipe.inpaint(wide, mask, "x", num_images=2, num_inference_steps=2, seed=1)
    assert status == 200 and out["codes"] == want.codes.tolist()
    assert any("centre 32x32 square" in w for w in out["warnings"]), out["warnings"]  # the API's warning, returned

    status, out = call(server, "/v1/extrapolate", {"image": b64(picture), "prompts": "y", "directions": "left",
                                                   "num_inference_steps": 2, "seed": 2})
    want = pipe.extrapolate(picture, "y", "left", num_inference_steps=2, seed=2)
    assert status == 200 and out["codes"] == want.codes.tolist() and out["grid"] == list(want.grid)
    assert base64.b64decode(out["images"][0]) == png_bytes(want.images[0])


def test_text_tasks_answer_what_the_api_returns(server, pipe):
    images = pictures()
    status, out = call(server, "/v1/ask", {"image": [b64(images[0]), b64(images[1], data_uri=True)],
                                           "question": ["what?", "where?"], "max_new_tokens": 3})
    want = pipe.ask(images, ["what?", "where?"], max_new_tokens=3)
    assert status == 200 and out["texts"] == want.texts and out["token_ids"] == want.token_ids

    status, out = call(server, "/v1/caption", {"image": b64(images[1]), "max_new_tokens": 3, "seed": 5})
    want = pipe.caption(images[1], max_new_tokens=3, seed=5)
    assert status == 200 and out["token_ids"] == want.token_ids and out["metadata"][0]["task"] == "caption"

    status, out = call(server, "/v1/write", {"prompt": "ab", "max_new_tokens": 4, "temperature": 1.0, "seed": 9})
    want = pipe.write("ab", max_new_tokens=4, temperature=1.0, seed=9)
    assert status == 200 and out["token_ids"] == want.token_ids and out["metadata"][0]["seed"] == 9

    kwargs = dict(max_images=1, max_new_tokens=3, num_inference_steps=2, force_image_every_sentence=True, seed=4)
    status, out = call(server, "/v1/mixed", {"prompt": "ab.", **kwargs})
    want = pipe.mixed("ab.", **kwargs)
    assert status == 200 and out["token_ids"] == want.token_ids
    assert [("image" if "image" in s else "text") for s in out["segments"]] == \
        [("text" if isinstance(s, str) else "image") for s in want.segments]


@pytest.mark.parametrize("path, body, status, message", [
    ("/v1/text-to-image", {"promt": "a"}, 400, "unknown field 'promt' for text-to-image; did you mean prompt?"),
    ("/v1/text-to-image", {"prompt": "a", "bogus": 1}, 400, "unknown field 'bogus' for text-to-image (fields: "),
    ("/v1/text-to-image", {"num_inference_steps": 2}, 400, "text-to-image needs the field prompt"),
    ("/v1/inpaint", {"prompt": "a"}, 400, "inpaint needs the fields image, mask_image"),
    ("/v1/text-to-image", ["a"], 400, "the request must be a JSON object of text-to-image's fields, got list"),
    ("/v1/text-to-image", {"prompt": "a", "num_inference_steps": "2"}, 400,
     "num_inference_steps must be a positive integer, got '2'"),
    ("/v1/text-to-image", {"prompt": "a", "exact": "false"}, 400, "exact must be True or False, got 'false'"),
    ("/v1/text-to-image", {"prompt": 3}, 400, "prompt must be a text or a list of texts, got int"),
    ("/v1/write", {"prompt": "a", "max_new_tokens": 0}, 400, "max_new_tokens must be a positive integer, got 0"),
    ("/v1/ask", {"image": "%%%", "question": "q"}, 400, "image is not valid base64"),
    ("/v1/ask", {"image": 7, "question": "q"}, 400, "image must be a base64 string (an image file's bytes), got int"),
    ("/v1/ask", {"image": ["aGVsbG8="], "question": "q"}, 400,
     "image (5 bytes) is not an image file Pillow can read"),
    ("/v1/inpaint", {"image": "", "mask_image": "", "prompt": "a"}, 400, "image is empty (0 bytes)"),
    ("/v1/paint", {"prompt": "a"}, 404, "no endpoint /v1/paint; POST /v1/<task> with a task of text-to-image, "),
    ("/health", {}, 405, "/health takes GET"),
])
def test_bad_requests_get_one_line_and_a_4xx(server, path, body, status, message):
    got, out = call(server, path, body)
    assert got == status and out["error"].startswith(message) and "\n" not in out["error"], out


def test_unreadable_requests(server):
    assert call(server, "/v1/write", raw=b'{"prompt": ')[1]["error"].startswith("the request is not valid JSON")
    assert call(server, "/v1/write", raw=b"\xff\xfe")[1]["error"].startswith("the request is not valid JSON")
    assert call(server, "/v1/write", raw=b"[" * 100_000)[0] == 400  # nesting deeper than Python's recursion
    assert call(server, "/v1/write") == (405, {"error": "/v1/write takes POST (a JSON object of its fields)"})
    assert call(server, "/nowhere")[0] == 404
    host, port = server.server_address[:2]
    for headers, status in (({}, 411), ({"Content-Length": str(MAX_BODY_BYTES + 1)}, 413),
                            ({"Content-Length": "-1"}, 400)):
        connection = http.client.HTTPConnection(host, port, timeout=60)
        connection.putrequest("POST", "/v1/write")
        for k, v in headers.items():
            connection.putheader(k, v)
        connection.endheaders()  # and no body: the size alone is refused
        response = connection.getresponse()
        assert response.status == status and "error" in json.loads(response.read())
        connection.close()


def test_a_server_failure_is_500_with_the_traceback_only_in_the_log(server, pipe, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug\nover two lines")

    monkeypatch.setattr(pipe, "write", broken)
    status, out = call(server, "/v1/write", {"prompt": "a"})
    assert (status, out) == (500, {"error": "write failed: RuntimeError: a bug over two lines"})
    assert "Traceback" in "\n".join(server.lines)
    monkeypatch.undo()
    assert call(server, "/v1/write", {"prompt": "a", "max_new_tokens": 1})[0] == 200  # and it goes on serving


def _together(server, bodies: list[dict]) -> list[tuple[int, dict]]:
    """POST every body to /v1/write at once, from a thread each."""
    results: dict[int, tuple[int, dict]] = {}
    threads = [threading.Thread(target=lambda i=i, b=b: results.__setitem__(i, call(server, "/v1/write", b)))
               for i, b in enumerate(bodies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [results[i] for i in range(len(bodies))]


def test_concurrent_requests_run_one_at_a_time_and_get_their_own_answers(server, pipe, monkeypatch):
    bodies = [{"prompt": p, "max_new_tokens": 3, "temperature": 1.0, "seed": s} for p, s in
              (("ab", 1), ("cd", 2), ("ef", 3), ("ab", 4))]
    for (status, out), b in zip(_together(server, bodies), bodies):
        want = pipe.write(b["prompt"], max_new_tokens=3, temperature=1.0, seed=b["seed"])
        assert status == 200 and out["token_ids"] == want.token_ids

    running, overlapped, real = [], [], pipe.write

    def slow(*args, **kwargs):
        running.append(1)
        overlapped.append(len(running) > 1)
        time.sleep(0.2)
        running.pop()
        return real(*args, **kwargs)

    monkeypatch.setattr(pipe, "write", slow)
    assert [status for status, _ in _together(server, bodies)] == [200] * 4
    assert overlapped == [False] * 4


def test_cli_refuses_a_port_in_use_before_loading(capsys, server, monkeypatch):
    from showo.cli import commands

    monkeypatch.setattr(commands.Context, "load", lambda self: pytest.fail("loaded the model"))
    port = server.server_address[1]
    assert main(["serve", "--model", "tiny-random", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"showo: error: cannot listen on 127.0.0.1:{port}: "), err
    assert main(["serve", "--port", "70000"]) == 2
    assert "must be a port number in [0, 65535], got 70000" in capsys.readouterr().err


@pytest.mark.parametrize("stop, busy", [(signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGTERM, True)])
def test_cli_serves_until_stopped(stop, busy):
    """`showo serve` in its own process: answers, then stops with exit code 0 on Ctrl-C or SIGTERM, also while a
    request runs: that call stops at its next step and its client gets 503 (exiting under torch's threads aborted
    the process)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    process = subprocess.Popen([sys.executable, "-m", "showo", "serve", "--model", "tiny-random", "--port", "0",
                                "--device", "cpu"], stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = []
        while not (lines and "serving:" in lines[-1]):
            lines.append(process.stderr.readline())
            assert lines[-1], lines  # the process ended before serving
        url = lines[-1].split(" at ")[1].split()[0]
        with urllib.request.urlopen(url + "/health", timeout=60) as response:
            assert json.loads(response.read())["status"] == "ok"
        answers: list = []
        if busy:  # a request that runs for minutes
            body = json.dumps({"prompt": "a", "num_images_per_prompt": 16, "num_inference_steps": 1000}).encode()
            def long_request():
                try:
                    urllib.request.urlopen(url + "/v1/text-to-image", body, timeout=60)
                except urllib.error.HTTPError as e:
                    answers.append((e.code, json.loads(e.read())))

            client = threading.Thread(target=long_request, daemon=True)
            client.start()
            time.sleep(2)
        process.send_signal(stop)
        rest = process.communicate(timeout=60)[1]
        if busy:
            client.join(60)
    finally:
        process.kill()
    assert process.returncode == 0 and "showo: stopped: " in rest and "Traceback" not in rest, rest
    assert "abandoned" not in rest and "terminate called" not in rest, rest
    assert answers == ([(503, {"error": "the server is stopping"})] if busy else [])


def raw(server, data: bytes) -> bytes:
    """Send `data` on a fresh connection and return all the server sends back."""
    import socket

    with socket.create_connection(server.server_address[:2], timeout=60) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        return b"".join(iter(lambda: s.recv(65536), b""))


def test_limits_of_a_shared_server(server):
    """What a request may ask of a shared machine: rows, the pixels of an upload; refusals in the same JSON."""
    status, out = call(server, "/v1/text-to-image", {"prompt": ["a", "b"], "num_images_per_prompt": 9})
    assert (status, out["error"]) == (400, "the request asks for 18 rows (images or answers) in one call; this "
                                           "server takes at most 16 (showo serve --max-rows)")
    bomb = b64(Image.new("L", (5000, 4000)))  # 25 kB of PNG, 20M pixels once decoded
    status, out = call(server, "/v1/ask", {"image": [bomb], "question": "q"})
    assert (status, out["error"]) == (400, "image[0] is 5000x4000 pixels; this server takes images of at most "
                                           "16,777,216 pixels")
    assert call(server, "/health?probe=1")[0] == 200  # a query string is not part of the path
    status, out = call(server, "/v1/write", raw=b" " * (MAX_BODY_BYTES + 1))  # urllib sends it all, then reads
    assert (status, out["error"]) == (413, f"the request is {MAX_BODY_BYTES + 1} bytes; at most {MAX_BODY_BYTES}")
    reply = raw(server, b"POST /v1/write HTTP/1.1\r\nContent-Length: \xc2\xb2\r\n\r\n")
    assert b" 400 " in reply.split(b"\r\n")[0] and b"Content-Length must be a number" in reply
    assert call(server, "/v1/write", raw=b"[" + b"1" * 5000 + b"]")[0] == 400  # over Python's int digits limit
    for method, status in ((b"PUT", 501), (b"DELETE", 501), (b"BREW", 501)):
        head, _, body = raw(server, method + b" /v1/write HTTP/1.1\r\n\r\n").partition(b"\r\n\r\n")
        assert f" {status} ".encode() in head.split(b"\r\n")[0] and "error" in json.loads(body), (method, head)
    assert raw(server, b"HEAD /health HTTP/1.1\r\n\r\n").endswith(b"\r\n\r\n")  # headers only
    raw(server, b"GET /\x1b[2Jcleared HTTP/1.1\r\n\r\n")
    assert any("\\x1b[2Jcleared" in line for line in server.lines)  # escaped in the log, not sent to the terminal


def test_a_busy_server_says_so_and_skips_clients_that_left(server, pipe, monkeypatch):
    calls = []
    monkeypatch.setattr(pipe, "write", lambda *a, **k: calls.append(k) or pytest.fail("ran a left request"))
    monkeypatch.setattr(server, "max_waiting", 1)
    server.lock.acquire()  # the model is busy
    try:
        waiter = threading.Thread(target=raw, args=(server, b"POST /v1/write HTTP/1.1\r\nContent-Length: 15\r\n\r\n"
                                                             b'{"prompt": "a"}'))
        waiter.start()  # it sends its request, then hangs up (raw closes its side) while waiting its turn
        for _ in range(100):
            if server.waiting == 1:
                break
            time.sleep(0.05)
        assert server.waiting == 1
        status, out = call(server, "/v1/write", {"prompt": "b"})
        assert (status, out["error"]) == (503, "busy: 1 requests are waiting for the model; try again later")
    finally:
        server.lock.release()
    waiter.join()
    for _ in range(100):
        if any("the client left before its turn" in line for line in server.lines):
            break
        time.sleep(0.05)
    assert calls == [] and any("write: the client left before its turn" in line for line in server.lines)


def test_no_model_yet_is_503():
    with ShowoServer(("127.0.0.1", 0), None, log=lambda line: None) as early:
        thread = threading.Thread(target=early.serve_forever, daemon=True)
        thread.start()
        assert call(early, "/health") == (503, {"error": "the model is still loading"})
        assert call(early, "/v1/write", {"prompt": "a"})[0] == 503
        early.shutdown()


def _while_busy(server, requests: list[tuple[str, dict]]) -> list[tuple[int, dict]]:
    """POST every (path, body), in this order, while the model is held, so that all wait together; then free it."""
    results: dict[int, tuple[int, dict]] = {}
    with server.lock:  # the model is busy
        threads = []
        for i, (path, body) in enumerate(requests):
            threads.append(threading.Thread(target=lambda i=i, p=path, b=body: results.__setitem__(i, call(server, p, b))))
            threads[-1].start()
            for _ in range(200):
                if server.waiting == i + 1:
                    break
                time.sleep(0.02)
            assert server.waiting == i + 1
    for t in threads:
        t.join()
    return [results[i] for i in range(len(requests))]


def _as_alone(pipe, requests: list[tuple[str, dict]], got: list[tuple[int, dict]], images: dict) -> None:
    """Each response is what the Python API gives its request alone: outputs, metadata (the seed too when the
    request gave one), warnings, or the error."""
    for (path, body), (status, out) in zip(requests, got):
        image = lambda v: images.get(v) or base64.b64decode(v)  # noqa: E731 (as the server reads it)
        kwargs = {k: ([image(i) for i in v] if isinstance(v, list) else image(v)) if k == "image" else v
                  for k, v in body.items()}
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                want = getattr(pipe, path.removeprefix("/v1/"))(**kwargs)
        except Exception as e:  # noqa: BLE001
            assert (status, out["error"]) == (400, str(e)), (body, out)
            continue
        assert status == 200 and out["texts"] == want.texts and out["token_ids"] == want.token_ids, (body, out)
        drawn = lambda m: {k: v for k, v in m.items() if k != "seed" or "seed" in body}  # noqa: E731
        assert [drawn(m) for m in out["metadata"]] == [drawn(m) for m in want.metadata], body
        assert out["warnings"] == [str(w.message) for w in caught], body


def test_greedy_text_requests_that_wait_together_run_as_one_batch(server, pipe, monkeypatch):
    """Each gets what the Python API gives it alone (metadata too: nothing of the other requests), the warnings
    of its own images, and its own errors; sampled and differently-set requests run alone."""
    red, wide = Image.new("RGB", (32, 32), (250, 0, 0)), Image.new("RGB", (40, 32), (0, 0, 250))
    images = {b64(red): red, b64(wide): wide}
    requests = [
        ("/v1/ask", {"image": b64(red), "question": "what colour?", "max_new_tokens": 4}),
        ("/v1/write", {"prompt": ["ab", "cd"], "max_new_tokens": 4, "seed": 3}),
        ("/v1/ask", {"image": [b64(red), b64(wide)], "question": ["where?", "how many?"], "max_new_tokens": 4,
                     "pairwise": True}),
        ("/v1/caption", {"image": [b64(wide), b64(red)], "max_new_tokens": 4, "seed": 7}),
        ("/v1/ask", {"image": "aGVsbG8=", "question": "what?", "max_new_tokens": 4}),  # not an image
        ("/v1/write", {"prompt": "ef", "max_new_tokens": 4, "temperature": 1.0, "seed": 1}),  # sampled
        ("/v1/ask", {"image": b64(red), "question": "what colour?", "max_new_tokens": 5}),  # set otherwise
        ("/v1/write", {"prompt": "gh", "max_new_tokens": 4}),
    ]
    calls = []
    for method in ("ask", "write"):
        real = getattr(pipe, method)
        monkeypatch.setattr(pipe, method, lambda *a, _real=real, _m=method, **k: calls.append((_m, k.get("pairwise")))
                            or _real(*a, **k))
    monkeypatch.setattr(server, "max_waiting", len(requests))
    got = _while_busy(server, requests)
    assert calls == [("ask", True), ("write", None), ("write", None), ("ask", None)]
    assert [out.get("batched_with") for _, out in got] == [2, 1, 2, 2, None, 0, 0, 1]
    assert got[3][1]["warnings"] and not got[0][1]["warnings"]  # the 40x32 image's, in its own request only

    calls.clear()  # a batch the pipeline refuses (one question too long for the model): each alone, its own error
    again = [requests[0], ("/v1/ask", {"image": b64(red), "question": "word " * 400, "max_new_tokens": 4}),
             ("/v1/write", {"prompt": ["ab", 5], "max_new_tokens": 4}), requests[7]]  # (5: not a text)
    got_again = _while_busy(server, again)
    assert calls == [("ask", True), ("ask", None), ("ask", None), ("write", None)], calls  # (5: refused first)
    assert [out.get("batched_with") for _, out in got_again] == [0, None, None, 0]
    monkeypatch.undo()
    _as_alone(pipe, requests + again, got + got_again, images)


def test_a_batch_holds_at_most_max_rows_and_batching_can_be_off(server, pipe, monkeypatch):
    sizes, real = [], pipe.write
    monkeypatch.setattr(pipe, "write", lambda prompt, **k: sizes.append(len(prompt)) or real(prompt, **k))
    monkeypatch.setattr(server, "max_rows", 3)
    requests = [("/v1/write", {"prompt": p, "max_new_tokens": 2}) for p in (["a", "b"], "c", "d", ["e", "f"])]
    assert [out["batched_with"] for _, out in _while_busy(server, requests)] == [1, 1, 1, 1]
    assert sizes == [3, 3]  # [a, b] + c, then d + [e, f] (each request's rows kept together)
    sizes.clear()
    monkeypatch.setattr(server, "batching", False)  # showo serve --no-batching
    assert [out["batched_with"] for _, out in _while_busy(server, requests)] == [0, 0, 0, 0]
    assert sizes == [2, 1, 1, 2]


def test_cli_passes_its_limits_and_batching_to_the_server(monkeypatch, capsys):
    import showo.serving

    seen = {}

    def fake(address, pipe, log, **kwargs):
        seen.update(kwargs)
        raise OSError(98, "in use")  # (stop before the model loads)

    monkeypatch.setattr(showo.serving, "ShowoServer", fake)
    assert main(["serve", "--port", "0", "--max-rows", "4", "--max-waiting", "2", "--no-batching",
                 "--batch-wait", "5"]) == 2
    assert seen == {"max_rows": 4, "max_waiting": 2, "batching": False, "batch_wait": 0.005}
    assert main(["serve", "--port", "0"]) == 2 and seen["batching"] is True and seen["batch_wait"] == 0.02
    capsys.readouterr()
    assert main(["serve", "--batch-wait", "-1"]) == 2
    assert "--batch-wait: must be a number in [0, 10000], got -1" in capsys.readouterr().err


def test_a_batchable_request_waits_batch_wait_for_company(server, pipe, monkeypatch):
    """The first of two greedy requests sent 0.1 s apart waits for the second (up to `batch_wait`; a batch that is
    full starts at once); without the wait each runs alone."""
    def two_apart() -> list[int]:
        results = {}
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(
            i, call(server, "/v1/write", {"prompt": "ab", "max_new_tokens": 2})[1]["batched_with"])) for i in range(2)]
        threads[0].start()
        time.sleep(0.1)
        threads[1].start()
        for t in threads:
            t.join()
        return [results[0], results[1]]

    monkeypatch.setattr(server, "max_rows", 2)
    monkeypatch.setattr(server, "batch_wait", 60.0)  # (the second request fills the batch: no minute is waited)
    assert two_apart() == [1, 1]
    monkeypatch.setattr(server, "batch_wait", 0.0)
    assert two_apart() == [0, 0]


def _started(server: ShowoServer) -> ShowoServer:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _post_later(server, body: dict, results: list) -> threading.Thread:
    thread = threading.Thread(target=lambda: results.append(call(server, "/v1/write", body)))
    thread.start()
    return thread


def _until(condition, what: str) -> None:
    for _ in range(500):
        if condition():
            return
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


def test_requests_waiting_when_the_server_closes_get_503(pipe):
    """Whether they wait in the queue behind a busy model or for company in a batch window, and after the close too;
    a close with nothing running ends the model's thread."""
    with _started(ShowoServer(("127.0.0.1", 0), pipe, log=lambda line: None)) as closing:
        results: list = []
        with closing.lock:  # the model is busy
            waiter = _post_later(closing, {"prompt": "a"}, results)
            _until(lambda: closing.waiting == 1, "the request to queue")
            closer = threading.Thread(target=lambda: results.append(("closed", closing.close_model())))
            closer.start()
            _until(lambda: closing._closed, "the close")
        for t in (waiter, closer):
            t.join(60)
        assert sorted(results, key=str) == [("closed", True), (503, {"error": "the server is stopping"})]
        assert call(closing, "/v1/write", {"prompt": "a"}) == (503, {"error": "the server is stopping"})
        closing.shutdown()
    with _started(ShowoServer(("127.0.0.1", 0), pipe, log=lambda line: None, batch_wait=600)) as windowed:
        results = []
        waiter = _post_later(windowed, {"prompt": "a", "max_new_tokens": 2}, results)  # waits for company
        _until(lambda: windowed.waiting == 1 and not windowed._queue, "the request to wait in the window")
        assert windowed.close_model() is True  # (nothing ran)
        waiter.join(60)
        assert results == [(503, {"error": "the server is stopping"})]
        windowed.shutdown()


def test_a_failure_of_the_model_thread_leaves_no_request_waiting(pipe, monkeypatch):
    import showo.serving.server as module

    lines: list[str] = []
    monkeypatch.setattr(module, "batch_key", lambda job: 1 / 0)
    with _started(ShowoServer(("127.0.0.1", 0), pipe, log=lines.append)) as broken:
        assert call(broken, "/v1/write", {"prompt": "a"}) == (503, {"error": "the server is stopping"})
        assert call(broken, "/v1/write", {"prompt": "a"}) == (503, {"error": "the server is stopping"})
        assert any("the model's thread failed" in line and "ZeroDivisionError" in line for line in lines)
        broken.shutdown()


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_wait": None}, "batch_wait must be a number of seconds >= 0, got None"),
    ({"batch_wait": "20"}, "batch_wait must be a number of seconds >= 0, got '20'"),
    ({"batch_wait": float("inf")}, "batch_wait must be a number of seconds >= 0, got inf"),
    ({"max_rows": 0}, "max_rows must be a positive integer, got 0"),
    ({"max_waiting": 2.5}, "max_waiting must be a positive integer, got 2.5"),
])
def test_server_settings_are_checked(pipe, kwargs, message):
    from showo.errors import InputError

    with pytest.raises(InputError, match=re.escape(message)):
        ShowoServer(("127.0.0.1", 0), pipe, **kwargs)


def test_requests_waiting_for_company_count_as_waiting(server, monkeypatch):
    """A request in its batch window counts towards max_waiting, and the window ends once no request can join."""
    monkeypatch.setattr(server, "max_waiting", 2)
    monkeypatch.setattr(server, "batch_wait", 600.0)
    results: list = []
    first = _post_later(server, {"prompt": "a", "max_new_tokens": 2}, results)  # waits for company
    _until(lambda: server.waiting == 1 and not server._queue, "the request to wait in the window")
    status, out = call(server, "/v1/write", {"prompt": "c", "max_new_tokens": 2})  # max_waiting reached: it starts
    first.join(60)
    assert (status, out["batched_with"]) == (200, 1) and results[0][1]["batched_with"] == 1


def test_a_batched_request_meets_the_error_it_meets_alone(server, pipe, monkeypatch):
    """Its own inputs are checked in the order its call alone checks them, before the batch runs."""
    good = b64(Image.new("RGB", (32, 32), (250, 0, 0)))
    requests = [("/v1/ask", {"image": good, "question": "what?", "max_new_tokens": 2}),
                ("/v1/ask", {"image": [], "question": "what?", "max_new_tokens": 2}),
                ("/v1/ask", {"image": "aGVsbG8gd29ybGQh", "question": "", "max_new_tokens": 2}),
                ("/v1/ask", {"image": "aGVsbG8gd29ybGQh", "question": 5, "max_new_tokens": 2}),
                ("/v1/ask", {"image": [good, good], "question": ["a?"], "max_new_tokens": 2, "pairwise": True}),
                ("/v1/caption", {"image": good, "max_new_tokens": 2})]
    monkeypatch.setattr(server, "max_waiting", len(requests))
    got = _while_busy(server, requests)
    assert [status for status, _ in got] == [200, 400, 400, 400, 400, 200]
    assert [out["error"] for _, out in got[1:5]] == [
        "no image given", "empty question", "question must be a text or a list of texts, got int",
        "pairwise takes one question per image, got 2 images and 1 question"]
    assert got[0][1]["batched_with"] == got[5][1]["batched_with"] == 1
    _as_alone(pipe, requests, got, {good: Image.new("RGB", (32, 32), (250, 0, 0))})


def test_closing_waits_for_the_running_call_and_answers_everyone(pipe, monkeypatch):
    """server_close() with a call running that cannot be stopped (it calls no progress hook) waits for it (leaving
    the interpreter under it aborts the process); the requests behind it get 503, and settle() waits until every
    one was answered."""
    real = pipe.write
    monkeypatch.setattr(pipe, "write", lambda *a, on_token=None, **k: time.sleep(1.0) or real(*a, **k))
    server = _started(ShowoServer(("127.0.0.1", 0), pipe, log=lambda line: None, batching=False))
    results: list = []
    running = _post_later(server, {"prompt": "a", "max_new_tokens": 1}, results)
    _until(lambda: server._running, "the call to run")
    behind = _post_later(server, {"prompt": "b", "max_new_tokens": 1}, results)
    _until(lambda: server.waiting == 1, "the second request to wait")
    server.shutdown()
    server.server_close()
    assert not server._worker.is_alive() and server.settle(30)
    for t in (running, behind):
        t.join(60)
    assert sorted(status for status, _ in results) == [200, 503] and server._answering == 0


def test_a_client_that_resets_while_sending_is_one_log_line(server):
    import socket
    import struct

    lines_before = len(server.lines)
    with socket.create_connection(server.server_address[:2], timeout=60) as s:
        s.sendall(b"POST /v1/write HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"prompt\"")
        time.sleep(0.2)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = reset
    _until(lambda: any("the client left while sending" in line for line in server.lines[lines_before:]),
           "the log line")
    time.sleep(0.2)
    assert not any("Traceback" in line for line in server.lines[lines_before:]), server.lines[lines_before:]
    assert call(server, "/health")[0] == 200 and server.request_queue_size >= 64


class _Leaves:
    """A client's `gone()`: there until the `left_at`-th look (never gone when None), gone from then on."""

    def __init__(self, left_at: int | None):
        self.looks, self.left_at = 0, left_at

    def __call__(self) -> bool:
        self.looks += 1
        return self.left_at is not None and self.looks >= self.left_at


@pytest.mark.parametrize("name, kwargs", [
    ("write", {"prompt": "a", "max_new_tokens": 40}),                      # stopped at a text token
    ("text-to-image", {"prompt": "a", "num_inference_steps": 12}),         # at an image step
    ("mixed", {"prompt": "a", "max_new_tokens": 40, "max_images": 2}),     # at either
])
def test_a_call_whose_clients_all_left_is_stopped(pipe, monkeypatch, name, kwargs):
    """The model's thread stops a running call once no one waits for it (every client left, or the server closes)
    instead of finishing it: at the first step or token after it noticed."""
    monkeypatch.setattr(batching, "WATCH_EVERY", 0.0)  # (a look at every step and token)
    left = _Leaves(3)
    job = batching.Job(name, dict(kwargs), 1, gone=left)
    batching.run_alone(pipe, job)
    assert isinstance(job.error, batching.Stopped) and str(job.error) == "every client of the call left"
    assert job.response is None and left.looks == 3  # (a call that went on would have looked again)
    stays = _Leaves(None)
    job = batching.Job(name, dict(kwargs), 1, gone=stays)
    batching.run_alone(pipe, job)
    assert job.error is None and job.response is not None and stays.looks > 3  # (it looked, and finished)
    job = batching.Job(name, dict(kwargs), 1, gone=_Leaves(1))
    batching.run_alone(pipe, job, closing=lambda: True)
    assert str(job.error) == "the server is stopping" and job.gone.looks == 0


def test_a_batch_is_stopped_only_when_all_its_clients_left(pipe, monkeypatch):
    monkeypatch.setattr(batching, "WATCH_EVERY", 0.0)
    calls = []
    real = pipe.write
    monkeypatch.setattr(pipe, "write", lambda *a, **k: calls.append(a) or real(*a, **k))
    jobs = [batching.Job("write", {"prompt": p, "max_new_tokens": 30}, 1, gone=_Leaves(n)) for p, n in
            (("a", 2), ("b", None))]
    batching.run_batch(pipe, jobs)
    assert len(calls) == 1 and [j.error for j in jobs] == [None, None] and all(j.response for j in jobs)
    assert jobs[0].response["texts"] == [real("a", max_new_tokens=30).texts[0]]
    calls.clear()
    jobs = [batching.Job("write", {"prompt": p, "max_new_tokens": 30}, 1, gone=_Leaves(n)) for p, n in
            (("a", 2), ("b", 3))]
    batching.run_batch(pipe, jobs)
    assert len(calls) == 1  # stopped, not run again alone as a failed batch is
    assert all(isinstance(j.error, batching.Stopped) and j.response is None for j in jobs)


def test_a_client_that_leaves_while_its_request_runs_frees_the_model(server, pipe):
    """Over a real connection: the call stops soon after the client closes it, the log says so, and the next
    request runs."""
    import socket

    lines_before = len(server.lines)
    body = json.dumps({"prompt": "a", "num_images_per_prompt": 16, "num_inference_steps": 1000}).encode()
    with socket.create_connection(server.server_address[:2], timeout=60) as s:  # (a call of minutes)
        s.sendall(b"POST /v1/text-to-image HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        _until(lambda: server._running, "the call to run")
    _until(lambda: any("text-to-image: the client left while its request ran; the call was stopped" in line
                       for line in server.lines[lines_before:]), "the log line")
    assert call(server, "/v1/write", {"prompt": "a", "max_new_tokens": 2})[0] == 200


def test_cli_stop_leaves_a_call_that_does_not_stop_in_time(monkeypatch, capsys):
    """A running call stuck in a step that calls no hook: the stop waits STOP_WAIT seconds for it, then leaves the
    process at once (os._exit: exiting the interpreter under torch's threads aborts it)."""
    import showo.cli.serve as serve_cli
    import showo.serving

    waited = []

    class Stuck:
        url = "http://127.0.0.1:1"

        def __init__(self, *a, **k):
            self.pipe = None

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def serve_forever(self):
            raise KeyboardInterrupt

        def close_model(self, timeout):
            waited.append(timeout)
            return False

    class Exited(Exception):
        pass

    monkeypatch.setattr(showo.serving, "ShowoServer", Stuck)
    monkeypatch.setattr(serve_cli.signal, "signal", lambda *a: None)  # (the test process keeps its Ctrl-C)
    monkeypatch.setattr(serve_cli.os, "_exit", lambda code: (_ for _ in ()).throw(Exited(code)))
    with pytest.raises(Exited, match="0"):
        main(["serve", "--model", "tiny-random", "--port", "0"])
    assert waited == [serve_cli.STOP_WAIT]
    assert f"the running request did not stop within {serve_cli.STOP_WAIT:g} s: abandoned" in capsys.readouterr().err
