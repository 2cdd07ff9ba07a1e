"""An upstream engine's failures, as the serving node must pass them on (run by scripts/openai-test).

`serve PORT`: a stand-in OpenAI-compatible engine (a real engine does not fail on demand) whose
answer the last user message picks: `error` streams one chunk then an error event (as vLLM does),
`cut` streams one chunk then closes, `boom` answers 500 with a traceback, anything else a
normal one-chunk stream.
`check URL`: through the node with the official client — a stream with an error event raises and
gets no receipt, a cut stream raises instead of ending quietly, a 500's traceback does not reach
the client, and a request for another model is refused before it reaches the engine.
"""

import http.server
import json
import sys
import time
import urllib.error
import urllib.request


def chunk(content):
    return {"id": "up", "object": "chat.completion.chunk", "created": 0, "model": "up",
            "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}


class Engine(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        what = body["messages"][-1]["content"]
        if body.get("model") != "served-model":
            self.send_response(400)
            self.end_headers()
            return
        if what == "boom":
            text = b'{"error":{"message":"Traceback (most recent call last): File \\"/srv/engine/app.py\\", 10.0.0.7"}}'
            self.send_response(500)
            self.send_header("content-length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        self.wfile.write(f"data: {json.dumps(chunk('partial'))}\n\n".encode())
        self.wfile.flush()
        if what == "error":
            self.wfile.write(b'data: {"error": {"message": "CUDA out of memory", "type": "internal_error"}}\n\n')
            self.wfile.write(b"data: [DONE]\n\n")
        elif what == "cut":
            pass
        else:
            self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


def serve(port):
    http.server.ThreadingHTTPServer(("127.0.0.1", port), Engine).serve_forever()


def check(url):
    import openai

    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)

    def fail(msg):
        print(f"openai-faults: FAILED: {msg}", file=sys.stderr)
        sys.exit(1)

    def stream(what):
        ids, error = [], None
        try:
            for c in client.chat.completions.create(
                model="served-model", messages=[{"role": "user", "content": what}], stream=True
            ):
                ids.append(c.id)
        except openai.APIError as e:
            error = e
        return ids, error

    ids, error = stream("fine")
    if error or not ids:
        fail(f"a normal stream failed: {error}")
    ids, error = stream("error")
    if error is None:
        fail("an upstream error event did not reach the client as an error")
    if "CUDA" in str(error):
        fail(f"the engine's own error text reached the client: {error}")
    time.sleep(1.0)  # past the batch interval: a recorded leaf would be in the log by now
    try:
        urllib.request.urlopen(f"{url}/v1/provenance/{ids[0]}")
        fail("a stream that failed got a receipt")
    except urllib.error.HTTPError as e:
        if e.code != 404:
            fail(f"the failed stream's receipt answered {e.code}, not 404")
    ids, error = stream("cut")
    if error is None:
        fail("a stream the engine cut off ended quietly, as if complete")
    try:
        client.chat.completions.create(model="served-model", messages=[{"role": "user", "content": "boom"}])
        fail("an upstream 500 was answered")
    except openai.APIStatusError as e:
        if e.status_code != 502 or "Traceback" in json.dumps(e.body) or "10.0.0.7" in json.dumps(e.body):
            fail(f"an upstream 500 reached the client as {e.status_code}: {e.body}")
    try:
        client.chat.completions.create(model="some-lora-adapter", messages=[{"role": "user", "content": "hi"}])
        fail("a request for another model was served")
    except openai.BadRequestError as e:
        if "model_not_found" not in json.dumps(e.body):
            fail(f"another model's refusal: {e.body}")
    print("openai-faults: ok (error event, cut stream, engine failure, other model)")


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    else:
        check(sys.argv[2])
