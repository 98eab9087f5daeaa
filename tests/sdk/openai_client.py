"""The official `openai` Python SDK against a running Switchyard node.

Usage: python openai_client.py http://127.0.0.1:PORT
Each check raises AssertionError on failure; the script exits 0 when all hold.
"""
import json
import sys

import openai

BASE = sys.argv[1]
client = openai.OpenAI(base_url=BASE + "/v1", api_key="sk-client-key-not-checked", max_retries=0)
CRASH = "My program crashes with an exception and a stack trace"
TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}]

# A routed chat completion: the response names the model that answered, the
# header names the route.
raw = client.chat.completions.with_raw_response.create(model="router:eng", messages=[{"role": "user", "content": CRASH}])
answer = raw.parse()
assert raw.headers["x-model-router-selected-route"] == "debugging", raw.headers
assert answer.model == "claude", answer.model  # debugging: [claude, gpt]; claude is an Anthropic upstream
assert answer.choices[0].message.content, answer
assert answer.choices[0].finish_reason == "stop"
assert answer.usage.completion_tokens > 0

# Streaming, with usage, relayed from the Anthropic upstream as OpenAI chunks.
text, usage, models = "", None, set()
for chunk in client.chat.completions.create(
    model="router:eng", messages=[{"role": "user", "content": CRASH}], stream=True, stream_options={"include_usage": True}
):
    models.add(chunk.model)
    if chunk.choices and chunk.choices[0].delta.content:
        text += chunk.choices[0].delta.content
    if chunk.usage:
        usage = chunk.usage
assert text and usage and usage.completion_tokens > 0, (text, usage)
assert models == {"claude"}, models

# Tool calls (the `weather` task is served by the Gemini upstream), then the
# tool-result turn, which keeps the model.
question = {"role": "user", "content": "What is the weather forecast in Paris today?"}
first = client.chat.completions.create(model="router:eng", messages=[question], tools=TOOLS)
call = first.choices[0].message.tool_calls[0]
assert first.choices[0].finish_reason == "tool_calls", first
assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}, call
assert first.model == "gem", first.model
second = client.chat.completions.create(
    model="router:eng",
    messages=[question, first.choices[0].message.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"}],
    tools=TOOLS,
)
assert second.model == first.model, (second.model, first.model)
assert "tool result received" in second.choices[0].message.content, second

# Tool calls streamed.
calls = {}
for chunk in client.chat.completions.create(model="router:eng", messages=[question], tools=TOOLS, stream=True):
    for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
        entry = calls.setdefault(delta.index, {"name": "", "arguments": ""})
        if delta.function.name:
            entry["name"] = delta.function.name
        entry["arguments"] += delta.function.arguments or ""
assert calls[0]["name"] == "get_weather" and json.loads(calls[0]["arguments"]) == {"city": "Paris"}, calls

# Errors arrive as the SDK's own exception types.
try:
    client.chat.completions.create(model="router:nope", messages=[question])
    raise AssertionError("an unknown router must fail")
except openai.NotFoundError as error:
    assert error.status_code == 404 and error.code == "router_not_found", error
try:
    client.chat.completions.create(model="router:eng", messages=[])
    raise AssertionError("empty messages must fail")
except openai.BadRequestError as error:
    assert error.status_code == 400, error

print("openai SDK: completion, stream, tool calls (JSON and stream), tool result, errors: ok")
