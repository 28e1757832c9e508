"""Drives sconce-server's OpenAI-compatible routes with the official `openai` client.

    python openai_check.py BASE_URL MODEL DIM API_KEY

BASE_URL is the server's `http://127.0.0.1:PORT/v1`; the server must require API_KEY as its
bearer token (`--api-key-file`). Every check raises on failure; the last line printed is
`openai client: N checks passed`, which the Rust test (tests/openai_client.rs) looks for.
"""

import math
import sys

import openai

base_url, model, dim, key = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
checks = 0


def check(cond, what):
    global checks
    if not cond:
        raise AssertionError(what)
    checks += 1


def expect_error(cls, status, call, *, message, type_, param=None, code=None):
    """`call` must raise `cls` with the server's message in the client's own error text."""
    try:
        call()
    except cls as e:
        check(e.status_code == status, f"status {e.status_code} != {status}")
        check(message in str(e), f"{message!r} not in the client's error text {str(e)!r}")
        check(e.type == type_, f"type {e.type!r} != {type_!r}")
        check(e.param == param, f"param {e.param!r} != {param!r}")
        check(e.code == code, f"code {e.code!r} != {code!r}")
        body = e.body
        check(isinstance(body, dict) and set(body) == {"message", "type", "param", "code"},
              f"error object {body!r}")
        return
    raise AssertionError(f"no {cls.__name__} raised")


client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=30)

models = client.models.list()
ids = [m.id for m in models.data]
check(ids == [model], f"models.list() gave {ids}")
check(models.data[0].object == "model", "model object")
check(client.models.retrieve(model).id == model, "models.retrieve")

sentences = ["the cat sat on the mat", "hello world"]
# The client asks for base64 by default and decodes it; ask for floats too.
for fmt in (None, "float"):
    kwargs = {} if fmt is None else {"encoding_format": fmt}
    r = client.embeddings.create(model=model, input=sentences, **kwargs)
    check(len(r.data) == 2, f"{len(r.data)} embeddings")
    check([d.index for d in r.data] == [0, 1], "indices")
    for d in r.data:
        check(len(d.embedding) == dim, f"embedding of {len(d.embedding)} values")
        norm = math.sqrt(sum(x * x for x in d.embedding))
        check(abs(norm - 1.0) < 1e-4, f"norm {norm}")
    check(r.usage.prompt_tokens > 0, "usage")
    check(r.model == model, "model in the answer")
single = client.embeddings.create(model=model, input="hello world", encoding_format="float")
check(max(abs(a - b) for a, b in zip(single.data[0].embedding, r.data[1].embedding)) < 1e-5,
      "a single string embeds like the same string in a list")

expect_error(openai.BadRequestError, 400,
             lambda: client.embeddings.create(model=model, input=[]),
             message="input must not be empty", type_="invalid_request_error", param="input")
expect_error(openai.BadRequestError, 400,
             lambda: client.embeddings.create(model=model, input="hi", dimensions=dim + 1),
             message=f"dimensions {dim + 1} is not supported", type_="invalid_request_error",
             param="dimensions")
expect_error(openai.NotFoundError, 404,
             lambda: client.embeddings.create(model="no-such-model", input="hi"),
             message="unknown model no-such-model", type_="invalid_request_error", param="model",
             code="model_not_found")
expect_error(openai.BadRequestError, 400,
             lambda: client.embeddings.create(model=model, input="hi",
                                              extra_body={"encoding_format": "int8"}),
             message="unknown encoding_format", type_="invalid_request_error",
             param="encoding_format")
# completions exist for language models; an embedding model says it does not generate text
expect_error(openai.BadRequestError, 400,
             lambda: client.completions.create(model=model, prompt="hi"),
             message="does not generate text", type_="invalid_request_error", param="model")
expect_error(openai.NotFoundError, 404,
             lambda: client.post("/audio/speech", cast_to=object, body={"input": "hi"}),
             message="no such route", type_="invalid_request_error", code="unknown_url")

wrong = openai.OpenAI(base_url=base_url, api_key=key + "-wrong", max_retries=0, timeout=30)
expect_error(openai.AuthenticationError, 401,
             lambda: wrong.embeddings.create(model=model, input="hi"),
             message="bearer token", type_="invalid_request_error", code="invalid_api_key")
expect_error(openai.AuthenticationError, 401, lambda: wrong.models.list(),
             message="bearer token", type_="invalid_request_error", code="invalid_api_key")

print(f"openai client: {checks} checks passed")
