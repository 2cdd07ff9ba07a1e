"""The serving node as the official `openai` Python client sees it (run by scripts/openai-test).

Against one running `chipledger node serve` (built-in engine or upstream mode): models, whole and
streamed chat completions, usage, R1's reasoning_content, OpenAI's error shapes (bad request,
wrong key), then every response's receipt fetched and checked offline with
`chipledger report verify --response`, and one altered response refused.

usage: openai-check.py URL CHIPLEDGER LOG_KEY WORKDIR [--reasoning] [--api-key KEY] [--expect-text]
"""

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request

import openai

ap = argparse.ArgumentParser()
ap.add_argument("url")
ap.add_argument("chipledger")
ap.add_argument("log_key")
ap.add_argument("workdir")
ap.add_argument("--reasoning", action="store_true", help="the model is R1-templated: expect reasoning_content")
ap.add_argument("--expect-text", help="the answer (greedy) must contain this, case-insensitive")
ap.add_argument("--api-key", default="unused")
ap.add_argument("--prompt", default="What is the capital of France?")
ap.add_argument("--upstream", action="store_true",
                help="upstream mode: a streamed usage chunk is passed through only if the engine sends one")
args = ap.parse_args()

client = openai.OpenAI(base_url=f"{args.url}/v1", api_key=args.api_key, max_retries=0)
checked = []


def fail(msg):
    print(f"openai-check: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


# Models.
models = client.models.list()
ids = [m.id for m in models.data]
if len(ids) != 1:
    fail(f"/v1/models lists {ids}")
model = ids[0]

messages = [{"role": "user", "content": args.prompt}]

# Whole response, parsed by the client.
r = client.chat.completions.create(model=model, messages=messages, max_tokens=24, temperature=0)
choice = r.choices[0]
if r.usage is None or r.usage.prompt_tokens <= 0 or r.usage.completion_tokens <= 0:
    fail(f"usage not filled: {r.usage}")
if r.usage.total_tokens != r.usage.prompt_tokens + r.usage.completion_tokens:
    fail(f"usage does not add up: {r.usage}")
if r.system_fingerprint != r.id:
    fail(f"system_fingerprint {r.system_fingerprint} is not the provenance id {r.id}")
if choice.finish_reason not in ("stop", "length"):
    fail(f"finish_reason {choice.finish_reason}")
reasoning = getattr(choice.message, "reasoning_content", None)
if reasoning is None and choice.message.model_extra:
    reasoning = choice.message.model_extra.get("reasoning_content")
if args.reasoning and not reasoning:
    fail("an R1-templated model's thinking is not in reasoning_content")
if args.expect_text and args.expect_text.lower() not in (choice.message.content or "").lower():
    fail(f"answer {choice.message.content!r} lacks {args.expect_text!r}")
print(f"whole: {r.id} finish={choice.finish_reason} usage={r.usage.prompt_tokens}+{r.usage.completion_tokens}"
      f" answer={choice.message.content!r:.60}")

# Streamed, parsed by the client, with usage.
stream = client.chat.completions.create(
    model=model, messages=messages, max_tokens=24, temperature=0, stream=True, stream_options={"include_usage": True}
)
content, thinking, usage, finish, sid = "", "", None, None, None
for chunk in stream:
    sid = chunk.id
    if chunk.usage:
        usage = chunk.usage
    for c in chunk.choices:
        d = c.delta
        content += d.content or ""
        extra = (d.model_extra or {}).get("reasoning_content") or getattr(d, "reasoning_content", None)
        thinking += extra or ""
        finish = c.finish_reason or finish
if usage is None and args.upstream:
    print("stream: the upstream engine sent no usage chunk (the node passes streams through, it invents no counts)")
elif usage is None or usage.completion_tokens <= 0:
    fail("the stream's usage chunk is missing")
if finish is None:
    fail("the stream has no finish_reason")
if args.reasoning and not thinking:
    fail("streamed thinking is not in reasoning_content deltas")
if args.expect_text and args.expect_text.lower() not in content.lower():
    fail(f"streamed answer {content!r} lacks {args.expect_text!r}")
print(f"stream: {sid} finish={finish} usage={usage and (usage.prompt_tokens, usage.completion_tokens)} answer={content!r:.60}")

# The same through the raw response, for the receipts: the bytes as received.
raw = client.chat.completions.with_raw_response.create(model=model, messages=messages, max_tokens=8)
body = raw.http_response.content
rid = json.loads(body)["id"]
if raw.headers.get("x-chipledger-provenance") != f"/v1/provenance/{rid}":
    fail(f"x-chipledger-provenance is {raw.headers.get('x-chipledger-provenance')}")
checked.append((rid, body))
with client.chat.completions.with_streaming_response.create(
    model=model, messages=messages, max_tokens=8, stream=True
) as s:
    sbody = b"".join(s.iter_bytes())
first = sbody.split(b"\n\n")[0]
checked.append((json.loads(first[len(b"data: "):])["id"], sbody))
if not sbody.endswith(b"data: [DONE]\n\n"):
    fail("the raw stream does not end with data: [DONE]")

# Errors in OpenAI's shape, raised as the client's own exceptions.
try:
    client.chat.completions.create(model=model, messages=messages, temperature=5)
    fail("temperature 5 was accepted")
except openai.BadRequestError as e:
    if not isinstance(e.body, dict) or "temperature" not in json.dumps(e.body):
        fail(f"the 400's body does not name the field: {e.body}")
try:
    client.chat.completions.create(model=model, messages=[])
    fail("no messages was accepted")
except openai.BadRequestError:
    pass
if args.api_key != "unused":
    wrong = openai.OpenAI(base_url=f"{args.url}/v1", api_key="wrong", max_retries=0)
    try:
        wrong.models.list()
        fail("a wrong API key was accepted")
    except openai.AuthenticationError:
        pass
print("errors: 400s and 401 arrive as the client's BadRequestError / AuthenticationError")

# Receipts, verified offline against the bytes received.
for i, (rid, body) in enumerate(checked):
    deadline = time.time() + 20
    while True:
        req = urllib.request.Request(f"{args.url}/v1/provenance/{rid}",
                                     headers={"Authorization": f"Bearer {args.api_key}"})
        with urllib.request.urlopen(req) as resp:
            status, text = resp.status, resp.read()
        if status == 200:
            break
        if time.time() > deadline:
            fail(f"the receipt of {rid} stayed pending")
        time.sleep(0.2)
    receipt = os.path.join(args.workdir, f"{rid}.receipt.json")
    response = os.path.join(args.workdir, f"{rid}.body")
    open(receipt, "wb").write(text)
    open(response, "wb").write(body)
    out = subprocess.run(
        [args.chipledger, "report", "verify", receipt, "--log-key", args.log_key, "--response", response],
        capture_output=True, text=True,
    )
    if out.returncode != 0 or f"valid: response {rid}" not in out.stdout:
        fail(f"report verify on {rid}: {out.stdout}{out.stderr}")
    print(out.stdout.splitlines()[0])
    if i == 0:
        altered = bytearray(body)
        altered[len(altered) // 2] ^= 1
        open(response, "wb").write(bytes(altered))
        out = subprocess.run(
            [args.chipledger, "report", "verify", receipt, "--log-key", args.log_key, "--response", response],
            capture_output=True, text=True,
        )
        if out.returncode == 0 or "SHA-256 differs" not in out.stderr:
            fail(f"an altered response verified: {out.stdout}{out.stderr}")
        print("altered response: refused")
print("openai-check: ok")
