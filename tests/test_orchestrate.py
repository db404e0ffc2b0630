"""`python orchestrate.py` (the spec's quickstart) maps onto the nexa command and explains what it can't resolve."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _orchestrate(*args, cwd=None):
    return subprocess.run([sys.executable, str(ROOT / "orchestrate.py"), *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


def test_hosted_teacher_without_configuration_gets_a_message_not_a_traceback(tmp_path):
    proc = _orchestrate("--stage", "train", "--mode", "distill", "--teacher", "gpt-4o", "--student", "tiny",
                        "--dataset", "x@v1", "--lab", str(tmp_path))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "OPENAI_API_KEY" in proc.stderr and "nexa distill materialize" in proc.stderr


def test_unknown_student_preset_lists_the_known_ones(tmp_path):
    teacher = tmp_path / "t"
    teacher.mkdir()
    (teacher / "config.json").write_text("{}")
    proc = _orchestrate("--stage", "train", "--mode", "distill", "--teacher", str(teacher), "--student", "mistral-7b",
                        "--dataset", "x@v1", "--lab", str(tmp_path))
    assert proc.returncode == 2 and "known: ['small', 'tiny']" in proc.stderr


def test_local_distillation_runs_through_the_pipeline(tmp_path):
    from nexa.data.generators import generate
    from nexa.ledger import Lab
    from nexa.ledger.datasets import write_dataset_version
    from nexa.train.models import DecoderSize, build_model
    from nexa.train.tokenizer import char_special_ids, save_char_tokenizer, train_char_tokenizer

    lab = Lab.init(tmp_path / "lab")
    rows = [{**r, "split": "train"} for r in generate("science", 40, 42)]
    write_dataset_version(lab, "sci", rows, row_schema="qa")
    tok = train_char_tokenizer(r["prompt"] + r["answer"] for r in rows)
    teacher = build_model(DecoderSize(hidden_size=128, num_hidden_layers=2, num_attention_heads=4), tok.get_vocab_size(), 42, char_special_ids(tok))
    teacher.save_pretrained(tmp_path / "teacher")
    save_char_tokenizer(tok, tmp_path / "teacher")
    proc = _orchestrate("--stage", "train", "--mode", "distill", "--teacher", str(tmp_path / "teacher"), "--student", "tiny",
                        "--dataset", "sci@v1", "--steps", "3", "--lab", str(lab.root), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("\n") == 1, proc.stdout
    result = json.loads(proc.stdout)
    assert [s["name"] for s in result["stages"]] == ["data", "teacher", "distill", "pack", "student_kd"]
    assert (Path(result["outputs"][-1]["path"]) / "model" / "model.safetensors").exists()
