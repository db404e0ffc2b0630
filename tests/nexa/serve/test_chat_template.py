"""Chat serving renders the whole conversation with the bundle's own chat template."""

from __future__ import annotations

import sys
from pathlib import Path

from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/: shared fixture modules
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "nexus"))
from hf_families import make_family_model  # noqa: E402
from test_nexus_families import MESSAGES, build_family_bundle  # noqa: E402

from nexa.serve.app import create_app  # noqa: E402


def test_chat_sends_the_whole_conversation_through_the_template(tmp_path):
    from transformers import AutoTokenizer

    bundle = build_family_bundle(make_family_model("qwen2", tmp_path / "model"), tmp_path / "bundle")
    tokenizer = AutoTokenizer.from_pretrained(bundle / "tokenizer")
    rendered = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=True)
    expected = len(rendered["input_ids"] if hasattr(rendered, "keys") else rendered)
    last_only = len(tokenizer(MESSAGES[-1]["content"])["input_ids"])
    with TestClient(create_app(bundle)) as client:
        reply = client.post("/v1/chat/completions", json={"model": "tiny", "messages": MESSAGES, "max_tokens": 3})
        bad = client.post("/v1/chat/completions", json={"model": "tiny", "messages": [{"role": "bot", "content": "x"}]})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["usage"]["prompt_tokens"] == expected > last_only
    assert body["choices"][0]["message"]["role"] == "assistant" and isinstance(body["choices"][0]["message"]["content"], str)
    assert bad.status_code in (400, 422) and "role" in bad.text
