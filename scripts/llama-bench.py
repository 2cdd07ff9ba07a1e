"""llama.cpp's side of `cargo bench -p chipledger-inference --bench versus` (through llama-cpp-python).

usage: llama-bench.py GGUF PROMPT_IDS_JSON DECODE_TOKENS RUNS THREADS
Prints one JSON line per run: {"prefill_tok_s": …, "decode_tok_s": …, "first": …} — the exact prompt
token ids the Rust side used are evaluated as one batch (prefill), then DECODE_TOKENS greedy tokens
one at a time (decode), the KV cache reset between runs.
"""

import json
import sys
import time

import llama_cpp
import numpy as np
from llama_cpp import Llama

path, ids_file, n_decode, runs, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
ids = json.load(open(ids_file))
m = Llama(model_path=path, n_ctx=len(ids) + n_decode + 8, n_batch=max(512, len(ids)), n_threads=threads,
          n_threads_batch=threads, verbose=False, logits_all=False)
def last_logits():
    # The last position's logits straight from llama.cpp (llama-cpp-python fills `scores` only
    # with logits_all, which would also compute the output layer for every prompt token).
    ptr = llama_cpp.llama_get_logits_ith(m._ctx.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(m.n_vocab(),))


for _ in range(runs):
    m.reset()
    t = time.perf_counter()
    m.eval(ids)
    prefill = time.perf_counter() - t
    nxt = int(np.argmax(last_logits()))
    first = nxt
    t = time.perf_counter()
    for _ in range(n_decode):
        m.eval([nxt])
        nxt = int(np.argmax(last_logits()))
    decode = time.perf_counter() - t
    print(json.dumps({"prefill_tok_s": len(ids) / prefill, "decode_tok_s": n_decode / decode, "first": first}),
          flush=True)
