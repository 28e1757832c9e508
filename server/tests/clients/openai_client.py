"""The official openai Python client against sconce-server (run by tests/openai_client.rs).

Usage: openai_client.py BASE_URL MODEL. Exits non-zero on the first failed check; prints one
`ok <check>` line per check.
"""

import sys

import openai

base, model = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base + "/v1", api_key="not-needed", max_retries=0, timeout=120)
messages = [{"role": "user", "content": "What is 12 times 7?"}]


def ok(name):
    print("ok", name, flush=True)


# Non-streaming chat.
r = client.chat.completions.create(model=model, messages=messages, max_tokens=8, temperature=0)
text = r.choices[0].message.content
assert r.object == "chat.completion", r
assert r.choices[0].message.role == "assistant"
assert r.choices[0].finish_reason in ("stop", "length"), r.choices[0].finish_reason
assert text, r
assert r.usage.completion_tokens <= 8 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
ok("chat")

# Streaming chat with usage: the same greedy text.
stream = client.chat.completions.create(
    model=model, messages=messages, max_tokens=8, temperature=0, stream=True,
    stream_options={"include_usage": True},
)
parts, finish, usage = [], None, None
for chunk in stream:
    if chunk.choices:
        parts.append(chunk.choices[0].delta.content or "")
        finish = chunk.choices[0].finish_reason or finish
    if chunk.usage:
        usage = chunk.usage
assert "".join(parts) == text, ("".join(parts), text)
assert finish == r.choices[0].finish_reason
assert usage is not None and usage.completion_tokens == r.usage.completion_tokens
ok("chat-stream")

# Completions, streaming and not, with a stop string.
c = client.completions.create(model=model, prompt="The quick brown fox", max_tokens=12, temperature=0)
full = c.choices[0].text
cut = full.index(" brown")
c = client.completions.create(
    model=model, prompt="The quick brown fox", max_tokens=12, temperature=0, stop=[" brown"]
)
assert c.choices[0].text == full[:cut] and c.choices[0].finish_reason == "stop", c
streamed = "".join(
    ch.choices[0].text
    for ch in client.completions.create(
        model=model, prompt="The quick brown fox", max_tokens=12, temperature=0, stop=[" brown"], stream=True
    )
)
assert streamed == full[:cut], (streamed, full[:cut])
ok("completions")

# Seeded sampling repeats.
a = client.completions.create(model=model, prompt="Once upon a time", max_tokens=8, temperature=1.0, seed=42)
b = client.completions.create(model=model, prompt="Once upon a time", max_tokens=8, temperature=1.0, seed=42)
assert a.choices[0].text == b.choices[0].text
ok("seed")

# Models and errors as the client raises them.
assert [m.id for m in client.models.list()] == [model]
try:
    client.chat.completions.create(model=model, messages=messages, n=2)
    raise AssertionError("n=2 accepted")
except openai.BadRequestError as e:
    assert e.status_code == 400 and e.body["param"] == "n", e.body
try:
    client.chat.completions.create(model="gpt-4o", messages=messages)
    raise AssertionError("unknown model accepted")
except openai.NotFoundError as e:
    assert e.body["code"] == "model_not_found", e.body
ok("errors")
