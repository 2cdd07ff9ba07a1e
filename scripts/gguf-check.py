"""Reads GGUF files with llama.cpp's own Python reader (the PyPI `gguf` package, gguf-py from the
llama.cpp repository) and checks what llama.cpp's loader requires of a model's vocabulary: the
tokenizer arrays have the element types it reads (strings for tokens and merges, even when
empty; int32 token types), one token per embedding row, and the architecture's keys present.
Usage: python gguf-check.py FILE.gguf...  (exit 1 naming the first problem)."""
import sys

from gguf import GGUFReader, GGUFValueType

EXPECTED = {
    "tokenizer.ggml.tokens": GGUFValueType.STRING,
    "tokenizer.ggml.merges": GGUFValueType.STRING,
    "tokenizer.ggml.token_type": GGUFValueType.INT32,
}


def check(path):
    r = GGUFReader(path)
    arch = bytes(r.fields["general.architecture"].parts[-1]).decode()
    for key in (f"{arch}.context_length", f"{arch}.embedding_length", f"{arch}.block_count", f"{arch}.attention.head_count"):
        if key not in r.fields:
            return f"{key} is missing"
    for key, want in EXPECTED.items():
        field = r.fields.get(key)
        if field is None:
            return f"{key} is missing"
        # parts: key length, key, value type (ARRAY), element type, count, elements...
        if GGUFValueType(int(field.parts[2][0])) != GGUFValueType.ARRAY:
            return f"{key} is not an array"
        got = GGUFValueType(int(field.parts[3][0]))
        if got != want:
            return f"{key} is an array of {got.name}, llama.cpp reads {want.name}"
    tokens = len(r.fields["tokenizer.ggml.tokens"].data)
    embd = [t for t in r.tensors if t.name == "token_embd.weight"]
    if not embd or int(embd[0].shape[1]) != tokens:
        return f"token_embd.weight has {embd[0].shape.tolist() if embd else 'no'} rows for {tokens} tokens"
    return None


for path in sys.argv[1:]:
    problem = check(path)
    if problem:
        print(f"{path}: {problem}")
        sys.exit(1)
    print(f"{path}: ok")
