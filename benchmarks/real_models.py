"""Real models in, real models out: every supported family end to end, and a cross-tokenizer pair.

    python benchmarks/real_models.py --out benchmarks/results/real_models.json [--steps 150]

Per family (llama, qwen2, mistral, gemma), in a fresh lab, through the CLI (``nexa train``, run in-process
with Typer's runner): a tiny random-init teacher of that family with its own byte-level BPE tokenizer
(EOS at a high id, chat template) is trained by SFT on the golden ``reasoning`` capability; a smaller
student of the same family is distilled from it by logit KD and given a LoRA adapter; a NIWT student is
profiled from the same teacher, synthesized in the teacher's family and distilled with anchors (the NIWT
pipeline stages); both students are bundled (HF backbone folder + PEFT adapter + tokenizer folder), checked
with transformers and PEFT, compared with transformers logit by logit (the worse of the two is reported),
and the KD bundle is served (the FastAPI app) and queried through chat. Then a cross-tokenizer pair: a
qwen2 BPE teacher into a char-tokenized llama student by ULD, by sequence KD on the teacher's answers, and by
SFT alone. Retention = student exact match / teacher exact match, on the same held-out prompts.

Writes {"families": {NAME: {"eos_respected", "hf_loadable", "peft_loadable", "nexus_max_abs_logit_diff",
"chat_roundtrip", "kd_retention": {cap: r}, "niwt_retention": {cap: r}}}, "cross_tokenizer": {"uld": {cap: r},
"sequence_kd": {cap: r}, "sft_only": {cap: r}}}; ``<out>.scores.json`` holds the exact-match scores behind
them. Timings are not reported: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # 2 threads on a loaded 2-core machine ran 4x slower
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tiny-family builders the tests use

import torch  # noqa: E402
import yaml  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

CAP = "reasoning"
TEACHER = {"hidden": 96, "layers": 3}
STUDENT = {"hidden": 48, "layers": 2}


def make_lab(root: Path, train_rows: int, eval_rows: int):
    from nexa.data.generators import generate
    from nexa.ledger.datasets import write_dataset_version
    from nexa.ledger import Lab

    lab = Lab.init(root)
    rows = generate(CAP, train_rows + eval_rows, seed=42)
    data = [{**r, "capability": CAP, "split": "train" if i < train_rows else "eval"} for i, r in enumerate(rows)]
    write_dataset_version(lab, "golden-reasoning", data, row_schema="qa")
    return lab, [r for r in data if r["split"] == "eval"]


def cli_train(lab, name: str, **sections) -> Path:
    """``nexa train --config`` through the CLI; returns the trained model folder."""
    from typer.testing import CliRunner

    from nexa.cli import app

    config = {"name": name, "seed": 42, "tracking": {"wandb": "disabled"}, **sections}
    path = lab.root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["train", "--config", str(path), "--lab", str(lab.root), "--json"])
    if result.exit_code != 0:
        raise SystemExit(f"nexa train {name} failed: {result.output[-3000:]}")
    run_id = json.loads(result.stdout.strip().splitlines()[-1])["run_id"]
    return lab.durable().local_path(f"models/{run_id}")


BATCH = 64  # on a loaded CPU a step's cost is per-op latency, not FLOPs: big batches learn more per second


def optim(steps: int, lr: float = 3e-3) -> dict:
    return {"max_steps": steps, "batch_size": BATCH, "learning_rate": lr, "warmup_steps": max(1, steps // 10)}


def hf_score(model_dir: Path, rows: list[dict]) -> float:
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    from nexa.eval.generate import greedy_generate

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    outputs = greedy_generate(model, tokenizer, [r["prompt"] for r in rows], max_new_tokens=6)
    return sum(o.output.strip() == r["answer"] for o, r in zip(outputs, rows)) / len(rows)


def retention(student: float, teacher: float) -> float:
    return round(student / teacher, 4) if teacher > 0 else 0.0


def eos_respected(lab, tokenizer_dir: Path) -> bool:
    """Every sample of the packed blocks ends with the tokenizer's own EOS id."""
    from nexa.train.pack import load_pack
    from nexa.train.packs import PackRequest, build_pack, fetch_pack
    from nexa.train.tokenizer import load_hf_tokenizer

    pid, _, _ = build_pack(lab, PackRequest(["golden-reasoning"], tokenizer_dir, 64))
    packed, _ = load_pack(fetch_pack(lab, pid))
    eos = load_hf_tokenizer(tokenizer_dir).eos_token_id
    ends = []
    for row in range(len(packed)):
        positions, labels = packed.position_ids[row].tolist(), packed.labels[row].tolist()
        starts = [i for i, p in enumerate(positions) if p == 0] + [len(positions)]
        ends += [int(packed.input_ids[row, b - 1]) for a, b in zip(starts, starts[1:]) if any(x != -100 for x in labels[a:b])]
    return bool(ends) and all(e == eos for e in ends)


def bundle_student(model_dir: Path, adapter: Path, bundle: Path) -> Path:
    """Backbone + tokenizer + the capability's adapter: a PEFT folder (``nexa train``'s LoRA) is copied, a NIWT
    adapter file is converted by the bundle layer's writer."""
    from nexa.bundle.build import write_backbone, write_manifest, write_peft_adapter, write_tokenizer

    write_backbone(model_dir, bundle)
    write_tokenizer(model_dir / "tokenizer.json", bundle)
    target = bundle / "adapters" / CAP
    if adapter.is_file():
        write_peft_adapter(adapter, target)
    else:
        target.mkdir(parents=True)
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            shutil.copyfile(adapter / name, target / name)
    write_manifest(bundle, name=bundle.name, version="0.0.1", capabilities=[CAP], adapters={CAP: f"adapters/{CAP}"},
                   safety={"uncensored": False}, generation={"max_new_tokens": 6})
    return bundle


def check_bundle(bundle: Path, rows: list[dict], family: str) -> dict:
    """HF/PEFT loadability, nexus vs transformers logits (adapter active), chat round trip, exact match."""
    from fastapi.testclient import TestClient
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from nexa.serve.app import create_app
    from nexus import NexusModel

    hf = AutoModelForCausalLM.from_pretrained(bundle / "backbone").eval()
    peft = PeftModel.from_pretrained(hf, bundle / "adapters" / CAP).eval()
    runtime = NexusModel.load(bundle)
    encoded = [runtime.tokenizer.encode(r["prompt"] + r["answer"]).ids for r in rows[:8]]
    ids = torch.tensor([e[: min(map(len, encoded))] for e in encoded])  # real prompts, one length, no padding
    with torch.no_grad():
        runtime.decoder.set_active_adapter(CAP)
        diff = (runtime.decoder(ids) - peft(ids).logits).abs().max().item()
    outputs = runtime.generate_batch([r["prompt"] for r in rows], capability=CAP, max_new_tokens=6)
    score = sum(o.strip() == r["answer"] for o, r in zip(outputs, rows)) / len(rows)
    messages = [{"role": "system", "content": "answer exactly"}, {"role": "user", "content": rows[0]["prompt"]}]
    with TestClient(create_app(bundle)) as client:
        reply = client.post("/v1/chat/completions", json={"model": bundle.name, "messages": messages, "max_tokens": 6})
    expected_tokens = len(runtime.tokenizer.encode(runtime.chat_prompt(messages)).ids)
    chat_ok = reply.status_code == 200 and reply.json()["usage"]["prompt_tokens"] == expected_tokens
    return {"hf_loadable": hf.config.model_type == family, "peft_loadable": isinstance(peft, PeftModel),
            "nexus_max_abs_logit_diff": diff, "chat_roundtrip": chat_ok, "score": score}


def family_run(family: str, work: Path, steps: int, student_steps: int, train_rows: int, eval_rows: int) -> dict:
    from hf_families import make_family_model

    lab, rows = make_lab(work / family / "lab", train_rows, eval_rows)
    init = make_family_model(family, work / family / "teacher-init", hidden=TEACHER["hidden"], layers=TEACHER["layers"])
    data = {"train": ["golden-reasoning"], "tokenizer": str(init), "seq_len": 64}
    teacher = cli_train(lab, f"{family}-teacher", model={"pretrained": str(init)}, data=data, optim=optim(steps))
    student_config = {"model_type": family, "hidden_size": STUDENT["hidden"], "intermediate_size": STUDENT["hidden"] * 2,
                      "num_hidden_layers": STUDENT["layers"], "num_attention_heads": 4, "num_key_value_heads": 2,
                      "max_position_embeddings": 256, "tie_word_embeddings": True,
                      **({"head_dim": STUDENT["hidden"] // 4} if family == "gemma" else {})}
    student = cli_train(lab, f"{family}-kd", method="kd", model={"hf_config": student_config}, data=data,
                        kd={"teacher": str(teacher), "mode": "logit"}, optim=optim(student_steps))
    lora = cli_train(lab, f"{family}-lora", method="sft+lora", model={"pretrained": str(student)}, data=data,
                     lora={"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}, optim=optim(max(10, steps // 5), 1e-3))
    checks = check_bundle(bundle_student(student, lora / "adapter", work / family / f"{family}-bundle"), rows, family)
    teacher_score = hf_score(teacher, rows)
    niwt = niwt_run(family, lab, teacher, rows, work, student_steps, train_rows)
    return {"eos_respected": eos_respected(lab, init), "hf_loadable": checks["hf_loadable"] and niwt["hf_loadable"],
            "peft_loadable": checks["peft_loadable"] and niwt["peft_loadable"],
            "nexus_max_abs_logit_diff": max(checks["nexus_max_abs_logit_diff"], niwt["nexus_max_abs_logit_diff"]),
            "chat_roundtrip": checks["chat_roundtrip"], "kd_retention": {CAP: retention(checks["score"], teacher_score)},
            "niwt_retention": {CAP: retention(niwt["score"], teacher_score)},
            "_scores": {"teacher": teacher_score, "kd_bundle": checks["score"], "niwt_bundle": niwt["score"],
                        "niwt_gate_passed": niwt["gate_passed"]}}


def niwt_run(family: str, lab, teacher: Path, rows: list[dict], work: Path, steps: int, train_rows: int) -> dict:
    """NIWT on the trained teacher (profile, synthesis in its family, anchored distillation: ``steps`` optimizer
    steps, a quarter adapters-only), bundled and scored by nexus on the same prompts as the KD student.

    The pipeline's gate is a real one (retain 0.5); a student that fails it is still measured (from the
    stage's scratch output), since retention is what this benchmark reports."""
    from hf_families import niwt_stages

    from nexa.pipeline.runner import StageFailedError, run_pipeline
    from nexa.pipeline.spec import load_pipeline

    heads = 2
    stages = niwt_stages(teacher, train_rows=train_rows, eval_rows=50,
                         profile={"samples": 100, "pilot_samples": 32, "key_layers": 2, "components": 16,
                                  "residual_components": STUDENT["hidden"], "batch_size": 50},
                         student={"backbone": {"hidden_size": STUDENT["hidden"], "num_hidden_layers": STUDENT["layers"],
                                               "num_attention_heads": heads, "intermediate_size": STUDENT["hidden"] * 2},
                                  "max_param_ratio": 0.5},
                         distill={"phase1_steps": steps // 4, "phase2_steps": steps - steps // 4, "check_every": steps,
                                  "batch_size": BATCH, "anchor_batch": 16, "max_new_tokens": 6,
                                  "warmup_steps": max(1, steps // 10)})
    spec = work / family / "niwt.yaml"
    spec.write_text(yaml.safe_dump({"schema_version": 1, "name": f"niwt-{family}", "seed": 42, "stages": stages}))
    try:
        run_pipeline(lab, load_pipeline(spec))
        student, passed = next((lab.root / ".nexa" / "durable" / "stages" / "student_niwt").iterdir()), True
    except StageFailedError as error:
        if error.stage != "student_niwt":
            raise
        student, passed = sorted((lab.root / ".nexa" / "scratch" / "work").glob("student_niwt-*"))[-1], False
    bundle = bundle_student(student / "model", student / "adapters" / f"{CAP}.safetensors",
                            work / family / f"{family}-niwt-bundle")
    checks = check_bundle(bundle, rows, family)
    return {"score": checks["score"], "gate_passed": passed, "nexus_max_abs_logit_diff": checks["nexus_max_abs_logit_diff"],
            "hf_loadable": checks["hf_loadable"], "peft_loadable": checks["peft_loadable"]}


def cross_tokenizer_run(work: Path, steps: int, train_rows: int, eval_rows: int) -> dict:
    """qwen2 BPE teacher -> llama student with a char tokenizer: ULD vs sequence KD vs SFT only."""
    from hf_families import make_family_model

    from nexa.ledger.datasets import write_dataset_version
    from nexa.train.tokenizer import save_char_tokenizer, train_char_tokenizer

    lab, rows = make_lab(work / "cross" / "lab", train_rows, eval_rows)
    init = make_family_model("qwen2", work / "cross" / "teacher-init", hidden=TEACHER["hidden"], layers=TEACHER["layers"])
    teacher = cli_train(lab, "cross-teacher", model={"pretrained": str(init)},
                        data={"train": ["golden-reasoning"], "tokenizer": str(init), "seq_len": 64}, optim=optim(steps))
    char = work / "cross" / "char"
    save_char_tokenizer(train_char_tokenizer(r["prompt"] + r["answer"] for r in rows + [{"prompt": "max(0123456789,)=", "answer": ""}]), char)
    data = {"train": ["golden-reasoning"], "tokenizer": str(char / "tokenizer.json"), "seq_len": 64}
    size = {"size": {"hidden_size": STUDENT["hidden"], "num_hidden_layers": STUDENT["layers"], "num_attention_heads": 4,
                     "max_position_embeddings": 128}}
    uld = cli_train(lab, "cross-uld", method="kd", model=size, data=data, optim=optim(steps),
                    kd={"teacher": str(teacher), "mode": "logit", "loss": "uld", "temperature": 1.0, "alpha": 0.5})
    teacher_answers = _teacher_answers(teacher, lab)
    write_dataset_version(lab, "teacher-answers", teacher_answers, row_schema="qa")
    sequence = cli_train(lab, "cross-seq", method="kd", model=size, optim=optim(steps), kd={"mode": "sequence"},
                         data={**data, "train": ["teacher-answers"]})
    sft = cli_train(lab, "cross-sft", model=size, data=data, optim=optim(steps))
    teacher_score = hf_score(teacher, rows)
    return {"uld": {CAP: retention(hf_score(uld, rows), teacher_score)},
            "sequence_kd": {CAP: retention(hf_score(sequence, rows), teacher_score)},
            "sft_only": {CAP: retention(hf_score(sft, rows), teacher_score)}, "_teacher": teacher_score}


def _teacher_answers(teacher: Path, lab) -> list[dict]:
    """The teacher's own answers to every training prompt (what sequence-level KD learns from)."""
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    from nexa.eval.generate import greedy_generate
    from nexa.ledger.datasets import read_dataset_rows

    rows = [r for r in read_dataset_rows(lab, "golden-reasoning") if r["split"] == "train"]
    model = AutoModelForCausalLM.from_pretrained(teacher).eval()
    outputs = greedy_generate(model, Tokenizer.from_file(str(teacher / "tokenizer.json")), [r["prompt"] for r in rows], 6)
    return [{**r, "answer": o.output.strip() or "?"} for r, o in zip(rows, outputs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=120, help="Teacher SFT steps (and every cross-tokenizer run's).")
    parser.add_argument("--student-steps", type=int, default=240, help="KD and NIWT student steps.")
    parser.add_argument("--skip-cross", action="store_true", help="Families only (to split a run over processes).")
    parser.add_argument("--train-rows", type=int, default=1500)
    parser.add_argument("--eval-rows", type=int, default=100)
    parser.add_argument("--families", default="llama,qwen2,mistral,gemma")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    work = Path(tempfile.mkdtemp(prefix="nexa-real-models-"))
    families: dict = {}
    for family in args.families.split(","):  # the file is rewritten after each part, so a cut-short run keeps its figures
        families[family] = family_run(family, work, args.steps, args.student_steps, args.train_rows, args.eval_rows)
        write_result(args.out, families, {})
    cross = {} if args.skip_cross else cross_tokenizer_run(work, args.steps, args.train_rows, args.eval_rows)
    table = Table(title="real models: families")
    for column in ("family", "eos", "hf", "peft", "nexus diff", "chat", "teacher EM", "KD EM", "KD retention", "NIWT EM",
                   "NIWT retention"):
        table.add_column(column)
    for name, r in families.items():
        table.add_row(name, str(r["eos_respected"]), str(r["hf_loadable"]), str(r["peft_loadable"]),
                      f"{r['nexus_max_abs_logit_diff']:.2e}", str(r["chat_roundtrip"]), f"{r['_scores']['teacher']:.2f}",
                      f"{r['_scores']['kd_bundle']:.2f}", f"{r['kd_retention'][CAP]:.3f}",
                      f"{r['_scores']['niwt_bundle']:.2f}", f"{r['niwt_retention'][CAP]:.3f}")
    Console().print(table)
    if cross:
        Console().print(f"cross-tokenizer (teacher EM {cross['_teacher']:.2f}): ULD {cross['uld']}, sequence KD "
                        f"{cross['sequence_kd']}, SFT only {cross['sft_only']}")
    write_result(args.out, families, cross)


def write_result(out: Path, families: dict, cross: dict) -> None:
    """The contract's JSON shape (private ``_`` figures left out)."""
    result = {"families": {n: {k: v for k, v in r.items() if not k.startswith("_")} for n, r in families.items()},
              "cross_tokenizer": {k: v for k, v in cross.items() if not k.startswith("_")}}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    out.with_suffix(".scores.json").write_text(json.dumps(
        {"teacher_and_student_exact_match": {n: r["_scores"] for n, r in families.items()},
         "cross_tokenizer_teacher_exact_match": cross.get("_teacher")}, indent=2))


if __name__ == "__main__":
    main()
