"""The local HF teacher: left-padded batches give exactly the greedy answers, usage and logprobs are right."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from fake_teacher_server import make_prompts
from transformers import LlamaConfig, LlamaForCausalLM
from typer.testing import CliRunner

from nexa.cli import app
from nexa.ledger.datasets import read_dataset_manifest, read_dataset_rows
from nexa.teachers.local import LocalHFTeacher
from nexa.teachers.protocol import GenerationParams, TeacherRequest
from nexa.train.tokenizer import char_special_ids, train_char_tokenizer

PROMPTS = ["q1: what is 1 + 1?", "q22: what is 22 + 22?", "hi", "q0003: what is 3 + 3?"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny random Llama saved like the golden pipeline's teacher: save_pretrained + a char tokenizer.json."""
    folder = tmp_path_factory.mktemp("teacher")
    tokenizer = train_char_tokenizer(["0123456789 qwhatis+?:", *PROMPTS])
    config = LlamaConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=64, **char_special_ids(tokenizer).as_config())
    torch.manual_seed(42)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder


def _greedy_without_cache(teacher: LocalHFTeacher, prompt: str, steps: int) -> list[int]:
    """The reference: one full forward pass per token, no padding, no KV cache."""
    ids = teacher.tokenizer(prompt, return_tensors="pt")["input_ids"]
    out = []
    for _ in range(steps):
        with torch.no_grad():
            next_id = int(teacher.model(ids).logits[0, -1].argmax())
        if next_id == teacher.tokenizer.eos_token_id:
            break
        out.append(next_id)
        ids = torch.cat([ids, torch.tensor([[next_id]])], dim=1)
    return out


def test_batched_left_padded_generation_equals_unbatched_greedy(checkpoint):
    teacher = LocalHFTeacher(checkpoint, batch_size=4, device="cpu")
    params = GenerationParams(max_tokens=6)
    responses = teacher.complete([TeacherRequest.from_prompt(p, params) for p in PROMPTS])
    for prompt, response in zip(PROMPTS, responses):
        expected = teacher.tokenizer.decode(_greedy_without_cache(teacher, prompt, 6), skip_special_tokens=True)
        assert response.text == expected
        assert response.input_tokens == len(prompt) + 1  # one token per character plus <s>
        assert 1 <= response.output_tokens <= 6 and response.finish_reason in ("stop", "length")
    single = teacher.complete([TeacherRequest.from_prompt(PROMPTS[1], params)])[0]
    assert single.text == responses[1].text


def test_top_logprobs_follow_the_greedy_choice(checkpoint):
    teacher = LocalHFTeacher(checkpoint, batch_size=2, device="cpu")
    response = teacher.complete([TeacherRequest.from_prompt(p, GenerationParams(max_tokens=4, top_logprobs=3))
                                 for p in PROMPTS[:2]])[0]
    assert len(response.logprobs) == response.output_tokens
    for step in response.logprobs:
        assert len(step.top) == 3 and step.top[0].token == step.token
        assert step.logprob == pytest.approx(step.top[0].logprob) and step.logprob <= 0
        assert step.top[0].logprob >= step.top[1].logprob >= step.top[2].logprob


def test_identity_follows_the_files_not_the_folder(checkpoint, tmp_path):
    copy = shutil.copytree(checkpoint, tmp_path / "moved")
    same = LocalHFTeacher(copy, device="cpu").teacher_id.split("@")[1]
    assert same == LocalHFTeacher(checkpoint, device="cpu").teacher_id.split("@")[1]
    config = json.loads((copy / "config.json").read_text())
    config["rms_norm_eps"] = 1e-5
    (copy / "config.json").write_text(json.dumps(config))
    assert LocalHFTeacher(copy, device="cpu").teacher_id.split("@")[1] != same


def test_a_folder_without_tokenizer_is_refused_with_the_fix(checkpoint, tmp_path):
    broken = shutil.copytree(checkpoint, tmp_path / "broken")
    (broken / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="missing tokenizer.json.*save_pretrained"):
        LocalHFTeacher(broken)


def test_cli_materializes_with_a_local_teacher_and_reruns_for_free(checkpoint, lab):
    ref = make_prompts(lab, 12)
    args = ["distill", "materialize", "--lab", str(lab.root), "--dataset", ref, "--teacher", str(checkpoint),
            "--out", "local-paired", "--max-tokens", "4", "--batch-size", "5", "--top-logprobs", "2", "--json"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    out = json.loads(first.stdout)
    assert out["calls"] == 12 and out["cache_misses"] == 12 and out["failed"] == 0 and out["cost_usd"] == 0
    rows = read_dataset_rows(lab, out["dataset"])
    assert len(rows) == 12 and all(len(r["logprobs"]) == r["output_tokens"] for r in rows)
    assert read_dataset_manifest(lab, out["dataset"]).notes.startswith(f"outputs of teacher local:{checkpoint.name}@")

    again = json.loads(CliRunner().invoke(app, args).stdout)
    assert again["calls"] == 0 and again["cache_hits"] == 12 and again["dataset"] == out["dataset"]
