#!/usr/bin/env python3
"""vl2-server over plain HTTP, on loopback, with a golden mini model. Prints TAP.

usage: test-server.py VL2_SERVER VL2 MODEL_DIR GOLDEN_DIR

- greedy answers (temperature 0) equal `vl2 eval` on the golden cases, token for token, with
  and without streaming; the stream is in OpenAI's chunk order with one id throughout;
- a follow-up question reuses the KV cache of the conversation it extends;
- every hostile or wrong request gets OpenAI's JSON error with the right status while the
  server keeps serving: malformed JSON, JSON nested too deep, an oversized body, a missing or
  wrong API key, an image that is not one, too many images, an http image URL (refused by
  default; fetched when allowed, and refused past the body limit or on an HTTP error), an unknown
  model, max_tokens beyond the limit, unsupported members, wrong paths and methods;
- two clients at once on two slots; a client that disconnects stops its answer; a full queue
  answers 503 with Retry-After; SIGTERM stops the server cleanly.
"""
import base64
import http.client
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import struct
import threading
import time
import zlib

SERVER, VL2, MODEL, GOLDEN = sys.argv[1:5]
MODEL_ID = "mini-tiny"
KEY = "test-key-1234"
results = []


def check(ok, what, detail=""):
    results.append(bool(ok))
    print(f"{'ok' if ok else 'not ok'} {len(results)} - {what}", flush=True)
    if not ok and detail:
        for line in str(detail).splitlines()[-30:]:
            print(f"#   {line}", flush=True)
    return ok


class Server:
    def __init__(self, *args):
        self.proc = subprocess.Popen([SERVER, "--model", MODEL, "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if "listening on http://127.0.0.1:" not in line:
            raise RuntimeError(f"vl2-server did not start: {line!r} {self.proc.stderr.read()}")
        self.port = int(line.rsplit(":", 1)[1].strip().rstrip("/"))
        self.log = []
        threading.Thread(target=self._read_log, daemon=True).start()

    def _read_log(self):
        for line in self.proc.stderr:
            self.log.append(line.rstrip("\n"))

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None

    def request(self, method, path, body=None, headers=None, raw=None, timeout=300):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None
                                            else None)
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        conn.request(method, path, body=data, headers=h)
        r = conn.getresponse()
        payload = r.read()
        conn.close()
        try:
            parsed = json.loads(payload)
        except ValueError:
            parsed = None
        return r.status, dict(r.getheaders()), parsed, payload

    def chat(self, body, key=KEY, **kw):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return self.request("POST", "/v1/chat/completions", body, headers, **kw)

    def healthy(self):
        status, _, body, _ = self.request("GET", "/health")
        return status == 200 and body and body.get("status") == "ok"


def data_url(path):
    mime = "image/jpeg" if path.endswith(".jpg") else "image/png"
    with open(path, "rb") as f:
        return f"data:{mime};base64,{base64.b64encode(f.read()).decode()}"


def png_data_url(width, height):
    """A grey RGB PNG of the given size (a few kB, whatever its pixel count), as a data URL."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    rows = b"".join(b"\x00" + b"\x80" * (3 * width) for _ in range(height))
    png = (b"\x89PNG\r\n\x1a\n"
           + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))
    return "data:image/png;base64," + base64.b64encode(png).decode()


def openai_messages(case):
    """A golden case's conversation as OpenAI messages: each <image> an image_url part."""
    out = []
    for m in case["conversation"]:
        role = "user" if m["role"] == "<|User|>" else "assistant"
        if role == "assistant" and m["content"] == "":
            continue
        images = list(m.get("images") or [])
        if not images:
            out.append({"role": role, "content": m["content"]})
            continue
        parts, pieces = [], m["content"].split("<image>\n")
        for i, piece in enumerate(pieces):
            if piece:
                parts.append({"type": "text", "text": piece})
            if i < len(pieces) - 1:
                url = data_url(os.path.join(GOLDEN, "images", images.pop(0)))
                parts.append({"type": "image_url", "image_url": {"url": url}})
        out.append({"role": role, "content": parts})
    return out


def vl2_eval(case, n, compute="f32"):
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"vl2-server-case-{os.getpid()}.json")
    with open(path, "w") as f:
        json.dump(case, f)
    r = subprocess.run([VL2, "eval", "--model", MODEL, "--case", path, "--images",
                        os.path.join(GOLDEN, "images"), "--max-new-tokens", str(n),
                        "--compute", compute],
                       capture_output=True, text=True, check=True)
    os.unlink(path)
    return json.loads(r.stdout)


def stream(server, body, key=KEY, on_event=None, timeout=300):
    """POSTs a streaming request; returns (status, events as parsed JSON or '[DONE]')."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    conn.request("POST", "/v1/chat/completions", body=json.dumps(dict(body, stream=True)),
                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    r = conn.getresponse()
    if r.status != 200:
        return r.status, [json.loads(r.read())]
    check_type = r.getheader("Content-Type", "")
    events, data = [], []
    for raw in r:
        line = raw.decode().rstrip("\r\n")
        if line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and data:
            payload = "\n".join(data)
            data = []
            events.append(payload if payload == "[DONE]" else json.loads(payload))
            if on_event:
                on_event(events[-1])
    conn.close()
    if not check_type.startswith("text/event-stream"):
        events.insert(0, {"bad content type": check_type})
    return 200, events


def content_of(events):
    return "".join(e["choices"][0]["delta"].get("content") or "" for e in events
                   if isinstance(e, dict) and e.get("choices"))


def main():
    cases = {c["name"]: c for c in json.load(open(os.path.join(GOLDEN, "cases.json")))["cases"]}
    n = 12
    a = Server("--api-key", KEY)
    try:
        status, _, body, _ = a.request("GET", "/v1/models", headers={"Authorization":
                                                                    f"Bearer {KEY}"})
        check(status == 200 and body["object"] == "list"
              and [m["id"] for m in body["data"]] == [MODEL_ID], "GET /v1/models lists the model",
              body)
        check(a.healthy(), "GET /health answers without a key")

        # greedy answers: vl2 eval, token for token
        for name in ["text_only", "ground_one", "two_images_multiturn", "vqa_jpeg"]:
            want = vl2_eval(cases[name], n)
            request = {"model": MODEL_ID, "messages": openai_messages(cases[name]),
                       "temperature": 0, "max_tokens": n}
            status, _, body, raw = a.chat(request)
            got = body["choices"][0]["message"]["content"] if status == 200 else raw
            eos = "<｜end▁of▁sentence｜>"
            expected = want["text"].split(eos)[0]
            check(status == 200 and got == expected
                  and body["usage"]["prompt_tokens"] == len(want["input_ids"])
                  and (body["usage"]["completion_tokens"] == n or eos in want["text"]),
                  f"{name}: the greedy answer equals vl2 eval's, token for token",
                  f"server: {got!r}\neval:   {expected!r}\n{body and body.get('usage')}")
            status, events = stream(a, dict(request, stream_options={"include_usage": True}))
            ids = {e["id"] for e in events if isinstance(e, dict) and "id" in e}
            chunks = [e for e in events if isinstance(e, dict)]
            ok = (status == 200 and content_of(events) == expected and len(ids) == 1
                  and events[-1] == "[DONE]"
                  and chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
                  and chunks[-2]["choices"][0]["finish_reason"] in ("length", "stop")
                  and chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"]
                  == body["usage"]["completion_tokens"]
                  and all(c["object"] == "chat.completion.chunk" for c in chunks))
            check(ok, f"{name}: streamed in OpenAI's chunk order, one id, the same text",
                  json.dumps(events)[-2000:])

        # grounding boxes in the extension field, parsed from the text
        status, _, body, _ = a.chat({"model": MODEL_ID, "temperature": 0, "max_tokens": 1,
                                     "messages": [{"role": "assistant", "content":
                                                   "<|ref|>cat<|/ref|><|det|>[[1, 2, 300, 400]]"
                                                   "<|/det|>"}, {"role": "user",
                                                                 "content": "again"}]})
        check(status == 200, "an assistant message with grounding tags is accepted", body)

        # an answer of control characters (U+001F: token 222, forced by logit_bias) is JSON
        # that strict parsers read, whole and streamed
        unit_sep = {"model": MODEL_ID, "temperature": 0, "max_tokens": 3,
                    "logit_bias": {"222": 100}, "messages": [{"role": "user", "content": "Hi"}]}
        status, _, body, raw = a.chat(unit_sep)
        try:
            s_status, events = stream(a, unit_sep)
        except ValueError as exc:
            s_status, events = None, [str(exc)]
        check(status == 200 and body is not None
              and body["choices"][0]["message"]["content"] == "\x1f" * 3
              and s_status == 200 and content_of(events) == "\x1f" * 3,
              "an answer of U+001F characters is valid JSON, whole and streamed",
              f"{raw[:300]!r} {events[:3]}")

        # KV cache reuse on a follow-up
        first = {"model": MODEL_ID, "temperature": 0, "max_tokens": 8,
                 "messages": openai_messages(cases["vqa_jpeg"])}
        status, _, body1, _ = a.chat(first)
        follow = dict(first, messages=first["messages"] + [
            {"role": "assistant", "content": body1["choices"][0]["message"]["content"]},
            {"role": "user", "content": "And what colour is it?"}])
        status, _, body2, _ = a.chat(follow)
        cached = body2["usage"]["prompt_tokens_details"]["cached_tokens"] if status == 200 else 0
        check(status == 200 and cached >= body1["usage"]["prompt_tokens"],
              "a follow-up reuses the KV cache of the conversation it extends",
              f"first prompt {body1['usage']}, follow-up {body2 and body2.get('usage')}")

        # errors, each OpenAI's JSON with the right status, and the server keeps serving
        def expect_error(what, status_code, code, response):
            status, headers, body, raw = response
            err = body.get("error") if isinstance(body, dict) else None
            check(status == status_code and err and err.get("code") == code
                  and isinstance(err.get("message"), str) and err.get("type")
                  and headers.get("Content-Type", "").startswith("application/json")
                  and a.healthy(),
                  f"{what}: {status_code} {code}, and the server goes on", raw[:500])

        ok_body = {"model": MODEL_ID, "messages": [{"role": "user", "content": "Hi"}],
                   "max_tokens": 2}
        expect_error("malformed JSON", 400, "invalid_json", a.chat(None, raw=b'{"model": '))
        expect_error("not UTF-8", 400, "invalid_json", a.chat(None, raw=b'{"model": "\xff"}'))
        expect_error("JSON nested 100000 deep", 400, "invalid_json",
                     a.chat(None, raw=b"[" * 100000 + b"]" * 100000))
        expect_error("no API key", 401, "invalid_api_key", a.chat(ok_body, key=None))
        expect_error("a wrong API key", 401, "invalid_api_key", a.chat(ok_body, key="nope"))
        expect_error("a wrong key of the right length", 401, "invalid_api_key",
                     a.chat(ok_body, key="x" * len(KEY)))
        expect_error("an unknown model", 404, "model_not_found",
                     a.chat(dict(ok_body, model="gpt-4o")))
        bad_image = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,"
                                                                + base64.b64encode(
                                                                    b"not an image").decode()}},
                     {"type": "text", "text": "What is it?"}]
        expect_error("an image that is not one", 400, "invalid_image",
                     a.chat(dict(ok_body, messages=[{"role": "user", "content": bad_image}])))
        not_base64 = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,%%%"}}]
        expect_error("a data URL that is not base64", 400, "invalid_image",
                     a.chat(dict(ok_body, messages=[{"role": "user", "content": not_base64}])))
        web = [{"type": "image_url", "image_url": {"url": "http://127.0.0.1:1/x.png"}}]
        expect_error("an http image URL (not allowed by default)", 400, "image_url_not_allowed",
                     a.chat(dict(ok_body, messages=[{"role": "user", "content": web}])))
        many = [{"type": "image_url", "image_url": {"url": data_url(
            os.path.join(GOLDEN, "images", "tiny_gray.png"))}}] * 17
        expect_error("17 images (the limit is 16)", 400, "too_many_images",
                     a.chat(dict(ok_body, messages=[{"role": "user", "content": many}])))
        expect_error("max_tokens beyond the context", 400, "max_tokens_too_large",
                     a.chat(dict(ok_body, max_tokens=1000000)))
        expect_error("n = 2", 400, "invalid_request", a.chat(dict(ok_body, n=2)))
        expect_error("tools", 400, "invalid_request",
                     a.chat(dict(ok_body, tools=[{"type": "function"}])))
        expect_error("temperature 3", 400, "invalid_request", a.chat(dict(ok_body, temperature=3)))
        expect_error("messages missing", 400, "invalid_request", a.chat({"model": MODEL_ID}))
        expect_error("a role that does not exist", 400, "invalid_request",
                     a.chat(dict(ok_body, messages=[{"role": "wizard", "content": "hi"}])))
        expect_error("a wrong path", 404, "not_found",
                     a.request("POST", "/v1/completions", ok_body,
                               {"Authorization": f"Bearer {KEY}"}))
        expect_error("GET on the chat endpoint", 405, "method_not_allowed",
                     a.request("GET", "/v1/chat/completions", None,
                               {"Authorization": f"Bearer {KEY}"}))
        expect_error("a conversation longer than the context", 400, "context_length_exceeded",
                     a.chat(dict(ok_body, messages=[{"role": "user",
                                                     "content": "word " * 5000}])))
        check(a.stop() == 0, "SIGTERM stops the server cleanly")
    finally:
        if a.proc.poll() is None:
            a.proc.kill()

    # limits of a small server: one slot, a queue of one, a 1 MiB body, 1-megapixel images
    b = Server("--parallel", "1", "--queue", "1", "--max-body-mib", "1",
               "--max-image-megapixels", "1")
    try:
        status, headers, body, raw = b.chat({"model": MODEL_ID, "messages": [
            {"role": "user", "content": "x" * (2 * 1024 * 1024)}]}, key=None)
        check(status == 413 and body["error"]["code"] == "request_too_large" and b.healthy(),
              "a 2 MiB body on a 1 MiB server: 413, and the server goes on", raw[:300])
        for (w, h), want in (((1001, 1000), "image_too_large"), ((1000, 1000), None)):
            status, _, body, raw = b.chat({"model": MODEL_ID, "max_tokens": 2, "messages": [
                {"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": png_data_url(w, h)}},
                    {"type": "text", "text": "What is this?"}]}]}, key=None)
            if want:
                check(status == 400 and body["error"]["code"] == want and b.healthy(),
                      f"a {w} x {h} image on a 1-megapixel server: 400 {want}, and the server "
                      "goes on", raw[:300])
            else:
                check(status == 200, f"a {w} x {h} image on a 1-megapixel server is answered",
                      raw[:300])

        # a client that goes away stops its answer and frees the slot
        long = {"model": MODEL_ID, "messages": [{"role": "user", "content": "Count."}],
                "max_tokens": 3000, "temperature": 0, "stream": True}
        sock = socket.create_connection(("127.0.0.1", b.port))
        payload = json.dumps(long).encode()
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/json\r\nContent-Length: " + str(len(payload)).encode()
                     + b"\r\n\r\n" + payload)
        got = b""
        while got.count(b"data: ") < 4:
            got += sock.recv(65536)
        busy = b.request("GET", "/health")[2]["slots_busy"]

        # meanwhile a second request waits in the queue, and a third finds it full
        waiting = {}

        def second():
            waiting["result"] = b.chat({"model": MODEL_ID, "max_tokens": 3,
                                        "messages": [{"role": "user", "content": "Hi"}]},
                                       key=None)

        t = threading.Thread(target=second)
        t.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and b.request("GET", "/health")[2]["queued"] < 1:
            time.sleep(0.05)
        status, headers, body, raw = b.chat({"model": MODEL_ID, "max_tokens": 3, "messages": [
            {"role": "user", "content": "Hi"}]}, key=None)
        check(status == 503 and body["error"]["code"] == "server_overloaded"
              and int(headers.get("Retry-After", "0")) >= 1,
              "one slot busy and one request queued: the next gets 503 with Retry-After",
              f"{status} {headers} {raw[:300]}")
        sock.close()
        t.join(timeout=120)
        status = waiting.get("result", (None,))[0]
        check(busy == 1 and status == 200,
              "a client that disconnects frees its slot: the queued request is answered",
              f"busy {busy}, queued request: {waiting.get('result')}")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any("client went away" in l for l in b.log):
            time.sleep(0.1)
        cancelled = [l for l in b.log if "client went away" in l]
        tokens = int(cancelled[0].split("completion ")[1].split()[0]) if cancelled else -1
        check(cancelled and 0 < tokens < 3000,
              "the disconnected client's answer stopped early", "\n".join(b.log))
        check(b.stop() == 0, "SIGTERM stops the server cleanly")
    finally:
        if b.proc.poll() is None:
            b.proc.kill()

    # image URLs, when allowed: fetched from a web server on loopback, bounded by the body limit
    png = base64.b64decode(png_data_url(32, 32).split(",", 1)[1])
    files = {"/small.png": png, "/big.png": png + b"\0" * (2 * 1024 * 1024)}

    class Files(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            data = files.get(self.path)
            self.send_response(200 if data is not None else 404)
            self.send_header("Content-Length", str(len(data or b"")))
            self.end_headers()
            self.wfile.write(data or b"")

        def log_message(self, *args):
            pass

    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Files)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    d = Server("--allow-image-urls", "--max-body-mib", "1")
    try:
        def ask(path):
            return d.chat({"model": MODEL_ID, "max_tokens": 2, "messages": [
                {"role": "user", "content": [
                    {"type": "image_url",
                     "image_url": {"url": f"http://127.0.0.1:{web.server_port}{path}"}},
                    {"type": "text", "text": "What is this?"}]}]}, key=None)

        status, _, body, raw = ask("/small.png")
        check(status == 200, "an image URL on a server that allows them is fetched and answered",
              raw[:300])
        for path, code, words in (("/big.png", 400, "larger than this server takes"),
                                  ("/missing.png", 400, "gave HTTP 404")):
            status, _, body, raw = ask(path)
            err = body.get("error") if isinstance(body, dict) else None
            check(status == code and err and err.get("code") == "invalid_image"
                  and words in err.get("message", "") and d.healthy(),
                  f"an image URL {path}: {code} invalid_image ({words}), and the server goes on",
                  raw[:300])
        check(d.stop() == 0, "SIGTERM stops the server cleanly")
    finally:
        web.shutdown()
        if d.proc.poll() is None:
            d.proc.kill()

    # two clients at once, each on its own slot: a short answer asked for while a long one
    # streams is given in full before the long one ends (with one slot it would wait for it).
    # The long answer (3000 tokens, about 4.5 s here) leaves a wide margin for a loaded machine;
    # two short answers (60 tokens, about 60 ms) overlapped only by chance.
    c = Server("--parallel", "2")
    try:
        long_events, short = [], {}
        started, long_done = threading.Event(), {}

        def on_long_event(e):
            long_events.append(e)
            if len(long_events) == 2:
                started.set()

        def long_client():
            long_done["outcome"] = stream(
                c, {"model": MODEL_ID, "temperature": 0, "max_tokens": 3000,
                    "messages": [{"role": "user", "content": "Count."}]},
                key=None, on_event=on_long_event)
            started.set()

        t = threading.Thread(target=long_client)
        t.start()
        started.wait(timeout=120)
        short["outcome"] = stream(c, {"model": MODEL_ID, "temperature": 0, "max_tokens": 60,
                                      "messages": [{"role": "user", "content": "Who are you?"}]},
                                  key=None)
        long_seen = len(long_events)
        t.join(timeout=300)
        outcome = [long_done.get("outcome", (0, [None])), short["outcome"]]
        both = all(o[0] == 200 and o[1][-1] == "[DONE]" for o in outcome)
        overlap = both and 2 <= long_seen < len(outcome[0][1])
        separate = both and {e["id"] for e in outcome[0][1] if isinstance(e, dict)} != {
            e["id"] for e in outcome[1][1] if isinstance(e, dict)}
        check(both and overlap and separate,
              "two clients at once on two slots: a short answer is given in full while a long "
              "one streams, and both complete",
              f"long answer: {long_seen} events when the short one ended, then "
              f"{outcome[0][0]} {outcome[0][1][-2:]}; short answer: {outcome[1][0]}, "
              f"{len(outcome[1][1])} events, ending {outcome[1][1][-2:]}")
        # and each equals what one client alone gets
        alone = c.chat({"model": MODEL_ID, "temperature": 0, "max_tokens": 60,
                        "messages": [{"role": "user", "content": "Who are you?"}]}, key=None)[2]
        check(both and content_of(outcome[1][1]) == alone["choices"][0]["message"]["content"],
              "an answer given beside another equals the one given alone")
        check(c.stop() == 0, "SIGTERM stops the server cleanly")
    finally:
        if c.proc.poll() is None:
            c.proc.kill()

    # SIGTERM while answers stream (two slots busy, one request queued), at several moments:
    # the streams end with a shutting-down error event and [DONE], the queued request gets a
    # 503, and the server exits cleanly
    def ended_as(outcome):
        if outcome[0] == 503:
            return "503" if outcome[1][0]["error"]["code"] == "server_shutting_down" else outcome[:2]
        events = outcome[1]
        if (outcome[0] == 200 and len(events) >= 2 and events[-1] == "[DONE]"
                and isinstance(events[-2], dict)
                and events[-2].get("error", {}).get("code") == "server_shutting_down"):
            return "stopped"
        return (outcome[0], events[-2:])  # what it ended with instead

    # The moment is measured from when both streams have begun (not from when the requests
    # were sent, which a loaded machine may not have served yet), and the answers cannot end
    # before it: the end of sentence (id 1) ruled out with a logit bias, and 3000 tokens take
    # mini-tiny 3.5 s or more (at most 850 tokens/s here on one slot), twice the latest moment.
    outcomes = []
    for delay in (0.2, 0.8, 1.5):
        e = Server("--parallel", "2")
        try:
            ended = {}
            begun = threading.Semaphore(0)

            def client(i):
                first = []

                def on_event(event):
                    if not first:
                        first.append(event)
                        begun.release()
                req = {"model": MODEL_ID, "max_tokens": 3000, "temperature": 0,
                       "logit_bias": {"1": -100},
                       "messages": [{"role": "user", "content": f"Question {i}?"}]}
                try:
                    ended[i] = ended_as(stream(e, req, key=None, timeout=120, on_event=on_event))
                except (OSError, http.client.HTTPException) as exc:
                    ended[i] = type(exc).__name__

            threads = [threading.Thread(target=client, args=(i,)) for i in range(3)]
            for t in threads:
                t.start()
            started = begun.acquire(timeout=120) and begun.acquire(timeout=120)
            time.sleep(delay)
            code = e.stop()
            for t in threads:
                t.join(timeout=120)
            outcomes.append((delay, started, code, sorted(map(str, ended.values()))))
        finally:
            if e.proc.poll() is None:
                e.proc.kill()
    check(all(started and code == 0 and ended == ["503", "stopped", "stopped"]
              for _, started, code, ended in outcomes),
          "SIGTERM while two answers stream and one waits: both streams end with an error event "
          "and [DONE], the waiting one gets 503, the server exits cleanly", f"{outcomes}")

    # the engine's load options: weights quantized while loading, copied into memory
    d = Server("--weights", "q8", "--resident")
    try:
        status, _, body, _ = d.chat({"model": MODEL_ID, "temperature": 0, "max_tokens": 8,
                                     "messages": [{"role": "user", "content": "Hello!"}]},
                                    key=None)
        time.sleep(0.2)
        check(status == 200 and body["usage"]["completion_tokens"] > 0
              and any("q8 weights" in line for line in d.log),
              "--weights q8 --resident: loads the 8-bit weights and answers", f"{body} {d.log}")
        check(d.stop() == 0, "SIGTERM stops the server cleanly")
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
    # the bf16 compute mode: the same answer as vl2 eval's in that mode
    d = Server("--compute", "bf16")
    try:
        want = vl2_eval(cases["ground_one"], n, "bf16")
        status, _, body, raw = d.chat({"model": MODEL_ID, "temperature": 0, "max_tokens": n,
                                       "messages": openai_messages(cases["ground_one"])})
        got = body["choices"][0]["message"]["content"] if status == 200 else raw
        check(status == 200 and got == want["text"].split("<｜end▁of▁sentence｜>")[0]
              and any("bf16 compute" in line for line in d.log),
              "--compute bf16: the greedy answer equals vl2 eval --compute bf16's",
              f"server: {got!r}\neval:   {want['text']!r}")
        check(d.stop() == 0, "SIGTERM stops the bf16 server cleanly")
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
    bad = subprocess.run([SERVER, "--model", MODEL, "--port", "0", "--compute", "fp8"],
                         capture_output=True, text=True, timeout=60)
    check(bad.returncode == 2 and "--compute" in bad.stderr,
          "an unknown --compute is refused before loading", bad.stderr)
    bad = subprocess.run([SERVER, "--model", MODEL, "--port", "0", "--weights", "q5"],
                         capture_output=True, text=True, timeout=60)
    check(bad.returncode == 2 and "--weights" in bad.stderr,
          "an unknown --weights is refused before loading", bad.stderr)

    print(f"1..{len(results)}")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
