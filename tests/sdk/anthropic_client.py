"""The official `anthropic` Python SDK against a running Switchyard node.

Usage: python anthropic_client.py http://127.0.0.1:PORT
"""
import sys

import anthropic

BASE = sys.argv[1]
client = anthropic.Anthropic(base_url=BASE, api_key="sk-ant-client-key-not-checked", max_retries=0)
CRASH = "My program crashes with an exception and a stack trace"
TOOLS = [{
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}]

# Routed, served by the Anthropic upstream, answered in the Messages shape.
message = client.messages.create(model="router:eng", max_tokens=200, system="Be brief.", messages=[{"role": "user", "content": CRASH}])
assert message.type == "message" and message.role == "assistant", message
assert message.model == "claude", message.model
assert message.content[0].type == "text" and message.content[0].text, message
assert message.stop_reason == "end_turn", message.stop_reason
assert message.usage.output_tokens > 0

# The same through an OpenAI upstream (the `databases` task is served by gpt).
message = client.messages.create(
    model="router:eng", max_tokens=200, messages=[{"role": "user", "content": "Write SQL queries and indexes for this database schema"}]
)
assert message.model == "gpt", message.model
assert message.content[0].text and message.stop_reason == "end_turn", message

# Streaming through the SDK's helper: text deltas, then the final message.
with client.messages.stream(model="router:eng", max_tokens=200, messages=[{"role": "user", "content": CRASH}]) as stream:
    text = "".join(stream.text_stream)
    final = stream.get_final_message()
assert text and final.content[0].text == text, (text, final)
assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0, final

# Tools: the `weather` task is served by the Gemini upstream.
question = {"role": "user", "content": "What is the weather forecast in Paris today?"}
first = client.messages.create(model="router:eng", max_tokens=200, tools=TOOLS, messages=[question])
assert first.stop_reason == "tool_use", first
use = next(block for block in first.content if block.type == "tool_use")
assert use.name == "get_weather" and use.input == {"city": "Paris"}, use
second = client.messages.create(
    model="router:eng",
    max_tokens=200,
    tools=TOOLS,
    messages=[
        question,
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 21 C"}]},
    ],
)
assert second.model == first.model, (second.model, first.model)
assert "tool result received" in second.content[0].text, second

# Tool use streamed.
with client.messages.stream(model="router:eng", max_tokens=200, tools=TOOLS, messages=[question]) as stream:
    final = stream.get_final_message()
use = next(block for block in final.content if block.type == "tool_use")
assert use.name == "get_weather" and use.input == {"city": "Paris"}, final

# Errors arrive as the SDK's own exception types.
try:
    client.messages.create(model="router:nope", max_tokens=10, messages=[question])
    raise AssertionError("an unknown router must fail")
except anthropic.NotFoundError as error:
    assert error.status_code == 404, error
try:
    client.messages.create(model="router:eng", max_tokens=10, messages=[])
    raise AssertionError("empty messages must fail")
except anthropic.BadRequestError as error:
    assert error.status_code == 400, error

print("anthropic SDK: message, OpenAI upstream, stream, tool use (JSON and stream), tool result, errors: ok")
