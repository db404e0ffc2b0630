"""Real models in: every supported family with its own BPE tokenizer, special ids and chat template."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/: the shared hf_families module
from hf_families import FAMILIES, make_family_model  # noqa: E402

from nexa.cli import app  # noqa: E402
from nexa.ledger.datasets import write_dataset_version  # noqa: E402
from nexa.ledger import Lab  # noqa: E402
from nexa.train.chat import encode_chat  # noqa: E402
from nexa.train.crosstok import reencode, sorted_probability_distance, teacher_view  # noqa: E402
from nexa.train.pack import load_pack  # noqa: E402
from nexa.train.packs import PackRequest, build_pack, fetch_pack  # noqa: E402
from nexa.train.tokenizer import ADDED_PAD, load_hf_tokenizer, save_char_tokenizer, train_char_tokenizer  # noqa: E402

ROWS = [{"prompt": f"max({a},{b})=", "answer": str(max(a, b)), "split": "train"} for a, b in [(3, 41), (77, 9), (5, 6), (12, 40)]]
CHAT = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "max(3,9)="},
        {"role": "assistant", "content": "9"}, {"role": "user", "content": "max(1,2)="}, {"role": "assistant", "content": "2"}]


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {f: make_family_model(f, root / f) for f in FAMILIES}


def _sample_ends(packed) -> list[int]:
    """The last token of every sample in every block (samples restart their position ids at 0)."""
    ends = []
    for row in range(len(packed)):
        positions, labels = packed.position_ids[row].tolist(), packed.labels[row].tolist()
        starts = [i for i, p in enumerate(positions) if p == 0] + [len(positions)]
        for a, b in zip(starts, starts[1:]):
            if any(label != -100 for label in labels[a:b]):
                ends.append(int(packed.input_ids[row, b - 1]))
    return ends


@pytest.mark.parametrize("family", FAMILIES)
def test_packed_samples_end_with_the_tokenizers_own_eos(family, family_dirs, tmp_path):
    lab = Lab.init(tmp_path / "lab")
    rows = [{**r, "messages": None} for r in ROWS] + [{"prompt": None, "answer": None, "messages": CHAT, "split": "train"}]
    write_dataset_version(lab, "mix", rows, row_schema="qa")
    tok = load_hf_tokenizer(family_dirs[family])
    assert tok.eos_token_id not in (0, 1, 2)
    pid, _, manifest = build_pack(lab, PackRequest(["mix@v1"], family_dirs[family], 128))
    packed, _ = load_pack(fetch_pack(lab, pid))
    ends = _sample_ends(packed)
    assert manifest.samples == 5 and manifest.truncated == 0 and len(ends) == 5 and set(ends) == {tok.eos_token_id}
    pad_tail = packed.input_ids[0, -1].item()
    assert pad_tail == tok.pad_token_id and packed.labels[0, -1].item() == -100
    saved = load_hf_tokenizer(fetch_pack(lab, pid))  # the pack keeps the tokenizer, PAD included
    assert saved.pad_token_id == tok.pad_token_id and saved.eos_token_id == tok.eos_token_id


def test_a_tokenizer_without_pad_gets_one_after_every_existing_id(family_dirs):
    tok = load_hf_tokenizer(family_dirs["llama"])  # the llama fixture declares no PAD
    assert tok.pad_token == ADDED_PAD and tok.pad_token_id == len(tok) - 1
    assert tok.convert_ids_to_tokens(tok.eos_token_id) == "<|eot_id|>"


def test_chat_rows_train_only_assistant_tokens(family_dirs):
    tok = load_hf_tokenizer(family_dirs["qwen2"])
    ids, labels = encode_chat(tok, CHAT)
    trained = tok.decode([i for i, label in zip(ids, labels) if label != -100])
    assert trained == "9<|im_end|>2<|im_end|>"
    assert ids[-1] == tok.eos_token_id and "<|im_start|>assistant" in tok.decode(ids)
    with pytest.raises(ValueError, match="unknown role 'bot'.*OpenAI roles"):
        encode_chat(tok, [{"role": "bot", "content": "hi"}])


def test_uld_is_zero_for_a_permuted_distribution_and_positive_otherwise():
    torch.manual_seed(42)
    teacher = torch.randn(5, 40)
    student = torch.cat([teacher[:, torch.randperm(40)], torch.full((5, 7), -1e4)], -1)  # other vocab, same shape
    assert sorted_probability_distance(student, teacher, 1.0).item() < 1e-6
    assert sorted_probability_distance(torch.randn(5, 47), teacher, 1.0).item() > 0.05


def test_teacher_view_holds_the_same_text_in_the_teachers_tokens(family_dirs, tmp_path):
    lab = Lab.init(tmp_path / "lab")
    write_dataset_version(lab, "rows", ROWS, row_schema="qa")
    save_char_tokenizer(train_char_tokenizer(r["prompt"] + r["answer"] for r in ROWS), tmp_path / "char")
    student_tok, teacher_tok = load_hf_tokenizer(tmp_path / "char"), load_hf_tokenizer(family_dirs["qwen2"])
    pid, _, _ = build_pack(lab, PackRequest(["rows@v1"], tmp_path / "char", 64))
    packed, _ = load_pack(fetch_pack(lab, pid))
    view = teacher_view(packed, student_tok, teacher_tok)
    answers = [teacher_tok.decode([t for t, label in zip(ids, labels) if label != -100])
               for ids, labels in zip(view["teacher_input_ids"].tolist(), view["teacher_labels"].tolist())]
    assert sorted("".join(answers).split("<|im_end|>")[:-1]) == sorted(r["answer"] for r in ROWS)
    ids, labels = reencode((student_tok("max(1,2)=")["input_ids"] + [student_tok.convert_tokens_to_ids("2"), student_tok.eos_token_id],
                            [-100] * 10 + [student_tok.convert_tokens_to_ids("2"), student_tok.eos_token_id]), student_tok, teacher_tok)
    assert teacher_tok.decode(ids) == "max(1,2)=2<|im_end|>" and labels[-1] == teacher_tok.eos_token_id


# -- bad input through the CLI: one line, exit 2, nothing written ------------------------------------
def _lab_with_config(tmp_path, tokenizer_dir, **sections):
    lab = Lab.init(tmp_path / "lab")
    write_dataset_version(lab, "rows", ROWS, row_schema="qa")
    config = {"name": "t", "method": "sft", "model": {"size": {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2}},
              "data": {"train": ["rows@v1"], "tokenizer": str(tokenizer_dir), "seq_len": 32},
              "optim": {"max_steps": 2, "batch_size": 2, "warmup_steps": 0}, "tracking": {"wandb": "disabled"}, **sections}
    (lab.root / "t.yaml").write_text(yaml.safe_dump(config))
    return lab


def _refused(lab, match: str):
    before = sorted(p.relative_to(lab.root) for p in lab.root.rglob("*"))
    result = CliRunner().invoke(app, ["train", "--config", str(lab.root / "t.yaml"), "--lab", str(lab.root)])
    assert result.exit_code == 2, result.output
    flat = " ".join(result.output.split())  # the console wraps long lines
    assert result.output.count("error:") == 1 and match in flat.split("error:")[1], result.output
    assert sorted(p.relative_to(lab.root) for p in lab.root.rglob("*")) == before  # nothing written


def test_bad_models_and_tokenizers_are_refused_before_anything_is_written(family_dirs, tmp_path):
    no_eos = tmp_path / "no_eos"
    tok = load_hf_tokenizer(family_dirs["qwen2"])
    tok.eos_token = None
    tok.save_pretrained(no_eos)
    _refused(_lab_with_config(tmp_path / "a", no_eos), "has no EOS token")
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text((family_dirs["qwen2"] / "config.json").read_text())
    _refused(_lab_with_config(tmp_path / "b", family_dirs["qwen2"], model={"pretrained": str(bare)}), "has no tokenizer")
    gpt2 = tmp_path / "gpt2"
    gpt2.mkdir()
    (gpt2 / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    _refused(_lab_with_config(tmp_path / "c", family_dirs["qwen2"], model={"pretrained": str(gpt2)}),
             "supported: llama, qwen2, mistral, gemma")
    _refused(_lab_with_config(tmp_path / "d", family_dirs["qwen2"], model={"pretrained": "nobody-here/not-cached-model"}),
             "HF_HUB_OFFLINE")
    _refused(_lab_with_config(tmp_path / "e", family_dirs["qwen2"], method="kd", kd={"teacher": str(family_dirs["llama"])}),
             "kd.loss: uld")


def test_cross_tokenizer_logit_kd_trains_with_uld(family_dirs, tmp_path):
    """A qwen2 BPE teacher into a char-tokenized student: refused with forward_kl, trains with kd.loss uld."""
    from nexa.train.config import load_train_config
    from nexa.train.engine import train

    save_char_tokenizer(train_char_tokenizer(r["prompt"] + r["answer"] for r in ROWS), tmp_path / "char")
    lab = _lab_with_config(tmp_path, tmp_path / "char", method="kd",
                           kd={"teacher": str(family_dirs["qwen2"]), "loss": "uld", "temperature": 1.0})
    outcome = train(lab, load_train_config(lab.root / "t.yaml"))
    assert outcome.stats["steps"] == 2 and torch.isfinite(torch.tensor(outcome.stats["final_loss"]))
