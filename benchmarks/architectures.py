"""Transformer vs selective SSM vs fixed-point (DEQ) students at about equal parameter count, KD from one teacher.

The golden tasks (reasoning, science, chemistry from ``nexa.data.generators``), a char tokenizer and a Llama
teacher trained the way the golden pipeline trains it (128 wide, 4 layers, 300 SFT steps); each student is
distilled from that teacher (logit KD, forward KL, alpha 0.5, the golden ``student_kd`` settings), bundled and
scored by ``nexus`` on the held-out split. Also: forward time by sequence length (ssm and deq through the
``nexus`` runtime, the transformer through HF's Llama with the causal SDPA kernel: ``nexus``' Llama builds an
explicit length² mask), the DEQ's solver statistics over training and the fraction of its parameters with a
non-zero gradient, the uncertainty gate (temperature + Learn-then-Test threshold on a calibration split,
measured on the held-out split) and energy refinement (N samples, lowest -log p + w · verifier penalty).

    PYTHONPATH=src python benchmarks/architectures.py --out benchmarks/results/architectures.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from pathlib import Path

CAPABILITIES = ["reasoning", "science", "chemistry"]
LENGTHS = [256, 1024, 4096, 16384]
TEACHER = {"hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4}
STUDENTS = {  # about 0.2M parameters each (printed)
    "transformer": {"hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 256},
    "ssm": {"hidden_size": 64, "num_hidden_layers": 6, "state_size": 8},
    "deq": {"hidden_size": 128, "intermediate_size": 384, "num_attention_heads": 4, "max_iters": 12, "tol": 5e-3},
}


def make_data(train_rows: int, eval_rows: int, calib_rows: int) -> dict[str, list[dict]]:
    from nexa.data.generators import generate

    splits: dict[str, list[dict]] = {"train": [], "calibration": [], "eval": []}
    for capability in CAPABILITIES:
        rows = [{**r, "capability": capability} for r in generate(capability, train_rows + eval_rows + calib_rows, seed=42)]
        splits["train"] += rows[:train_rows]
        splits["calibration"] += rows[train_rows:train_rows + calib_rows]
        splits["eval"] += rows[train_rows + calib_rows:]
    return splits


def build_student(name: str, vocab: int, specials):
    import torch

    from nexa.models import ARCHITECTURES
    from nexa.train.models import DecoderSize, build_model

    torch.manual_seed(42)
    if name == "transformer":
        return build_model(DecoderSize(**STUDENTS[name]), vocab, 42, specials)
    model = ARCHITECTURES[name](vocab_size=vocab, **STUDENTS[name])
    model.config.update(specials.as_config())  # as nexa.train.build does: the tokenizer's own special ids
    model.generation_config.update(**specials.as_config())
    return model


def bundle_of(model, tokenizer_file: Path, folder: Path) -> Path:
    """save_pretrained, then the Nexus layout (backbone, tokenizer, manifest) that ``nexus`` loads."""
    import shutil

    from nexa.bundle.build import write_backbone, write_manifest, write_tokenizer

    model.save_pretrained(folder / "model", safe_serialization=True)
    for file in Path(tokenizer_file).parent.iterdir():  # tokenizer.json + tokenizer_config.json (its special tokens)
        shutil.copyfile(file, folder / "model" / file.name)
    bundle = folder / "bundle"
    write_backbone(folder / "model", bundle)
    write_tokenizer(tokenizer_file, bundle)
    write_manifest(bundle, name=folder.name, capabilities=CAPABILITIES, adapters={}, safety={"uncensored": False},
                   generation={"max_new_tokens": 8})
    return bundle


def correctness(model, rows: list[dict]) -> list[bool]:
    outputs = model.complete_batch([r["prompt"] for r in rows], max_new_tokens=8)
    return [o.text.strip() == r["answer"] for o, r in zip(outputs, rows)]


def scores_by_capability(model, rows: list[dict]) -> dict[str, float]:
    right = correctness(model, rows)
    return {c: sum(ok for ok, r in zip(right, rows) if r["capability"] == c) /
            sum(r["capability"] == c for r in rows) for c in CAPABILITIES}


def forward_seconds(forward, vocab: int) -> dict[str, float]:
    import torch

    seconds = {}
    for length in LENGTHS:
        ids = torch.randint(3, vocab, (1, length), generator=torch.Generator().manual_seed(42))
        began = time.perf_counter()
        with torch.no_grad():
            forward(ids)
        seconds[str(length)] = round(time.perf_counter() - began, 4)
        print(f"    {length:>6} tokens: {seconds[str(length)]:.3f} s", flush=True)
    return seconds


def timing_forward(name: str, model, bundle: Path):
    """What is timed: the runtime decoder for ssm/deq, HF's Llama (causal SDPA, no mask) for the transformer."""
    from nexus import NexusModel

    if name == "transformer":
        return lambda ids: model(input_ids=ids, use_cache=False)
    decoder = NexusModel.load(bundle).decoder
    return lambda ids: decoder(ids)


def nonzero_grad_fraction(model, packed) -> float:
    import torch

    model.train()
    model.zero_grad()
    batch = packed.input_ids[:8].long()
    labels = packed.labels[:8].long()
    model(input_ids=batch, labels=labels).loss.backward()
    params = [p for p in model.parameters() if p.requires_grad]
    nonzero = sum(p.numel() for p in params if p.grad is not None and bool((p.grad != 0).any()))
    model.zero_grad()
    model.eval()
    return nonzero / sum(p.numel() for p in params)


def verifier_penalty(prompt: str, answer: str) -> float:
    """A cheap checker that rules answers out without knowing the right one: 0 plausible, 1 impossible."""
    answer = answer.strip()
    if not answer.isdigit():
        return 1.0
    if match := re.fullmatch(r"max\((\d+),(\d+)\)=", prompt):
        return 0.0 if answer in match.groups() else 1.0
    if match := re.fullmatch(r"(\d+) \S+ in \S+\?", prompt):
        return 0.0 if answer.startswith(match.group(1)) and len(answer) > len(match.group(1)) else 1.0
    if match := re.fullmatch(r"atoms in (\S+)\?", prompt):
        symbols = len(re.findall(r"[A-Z]", match.group(1)))
        return 0.0 if symbols <= int(answer) <= 4 * symbols else 1.0
    return 0.0


def abstention(model, hf_model, encode, splits: dict, alpha: float) -> dict:
    from nexa.models.gate import calibrate_threshold, fit_temperature, risk_coverage, selective_error
    from nexus.gate import UncertaintyGate

    temperature = fit_temperature(hf_model, [encode(r["prompt"], r["answer"]) for r in splits["calibration"]])
    model.gate = UncertaintyGate(temperature=temperature, threshold=0.0)
    calib = model.complete_batch([r["prompt"] for r in splits["calibration"]], max_new_tokens=8)
    threshold = calibrate_threshold([g.confidence for g in calib],
                                    [g.text.strip() == r["answer"] for g, r in zip(calib, splits["calibration"])], alpha)
    held = model.complete_batch([r["prompt"] for r in splits["eval"]], max_new_tokens=8)
    confidences = [g.confidence for g in held]
    right = [g.text.strip() == r["answer"] for g, r in zip(held, splits["eval"])]
    error, coverage = selective_error(confidences, right, threshold)
    print(f"  gate: temperature {temperature}, threshold {threshold:.4f}; held-out risk-coverage "
          f"{[(round(p['coverage'], 2), round(p['error'], 3)) for p in risk_coverage(confidences, right, 5)]}")
    return {"alpha": alpha, "error_answered": round(error, 4), "coverage": round(coverage, 4)}


def energy(model, rows: list[dict], n: int) -> dict:
    from nexus.refine import refine

    before = sum(correctness(model, rows)) / len(rows)
    after = sum(refine(model, r["prompt"], n=n, temperature=1.0, penalty=verifier_penalty, weight=5.0,
                       max_new_tokens=8)[0].text.strip() == r["answer"] for r in rows) / len(rows)
    return {"before": round(before, 4), "after": round(after, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--train-rows", type=int, default=1500, help="per capability")
    parser.add_argument("--eval-rows", type=int, default=100, help="per capability (held out)")
    parser.add_argument("--calib-rows", type=int, default=100, help="per capability (gate calibration)")
    parser.add_argument("--teacher-steps", type=int, default=300)
    parser.add_argument("--student-steps", type=int, default=600)
    parser.add_argument("--student-batch", type=int, default=16)
    parser.add_argument("--deq-steps", type=int, default=None, help="default: --student-steps")
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--energy-n", type=int, default=8)
    parser.add_argument("--energy-rows", type=int, default=60, help="held-out prompts refined (all capabilities)")
    parser.add_argument("--gate-student", default="ssm", choices=sorted(STUDENTS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=64, help="packed block length (a golden example is ~20 tokens)")
    parser.add_argument("--lengths", type=int, nargs="+", default=LENGTHS, help="forward-time lengths (all four for the JSON)")
    args = parser.parse_args()
    LENGTHS[:] = args.lengths
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("WANDB_MODE", "disabled")
    import torch

    torch.set_num_threads(args.threads)
    from nexa.ledger.retention import retention
    from nexa.train.models import DecoderSize, build_model, count_parameters
    from nexa.train.pack import pack_examples
    from nexa.train.tokenizer import char_special_ids, encode_example, load_hf_tokenizer, save_char_tokenizer, train_char_tokenizer
    from nexa.train.trainer import KDConfig, OptimConfig, train_on_pack
    from nexus import NexusModel

    work = Path(tempfile.mkdtemp(prefix="nexa-architectures-"))
    splits = make_data(args.train_rows, args.eval_rows, args.calib_rows)
    tokenizer = train_char_tokenizer(r["prompt"] + r["answer"] for rows in splits.values() for r in rows)
    tokenizer_file = save_char_tokenizer(tokenizer, work / "tokenizer")
    specials, hf_tokenizer = char_special_ids(tokenizer), load_hf_tokenizer(tokenizer_file)
    vocab = tokenizer.get_vocab_size()

    def encode(prompt: str, answer: str):
        return encode_example(hf_tokenizer, prompt, answer)

    packed, _ = pack_examples([encode(r["prompt"], r["answer"]) for r in splits["train"]], args.seq_len, specials.pad_token_id)

    began = time.perf_counter()
    teacher = build_model(DecoderSize(**TEACHER), vocab, 42, specials)
    train_on_pack(teacher, packed, OptimConfig(max_steps=args.teacher_steps, batch_size=16, learning_rate=0.002,
                                               warmup_steps=min(30, args.teacher_steps // 10)),
                  work / "teacher-trainer", 42, "teacher SFT")
    teacher.eval()
    teacher_scores = scores_by_capability(NexusModel.load(bundle_of(teacher, tokenizer_file, work / "teacher")), splits["eval"])
    print(f"teacher ({count_parameters(teacher):,} params, {time.perf_counter() - began:.0f}s): {teacher_scores}", flush=True)

    results: dict = {"students": {}}
    models, bundles = {}, {}
    for name in STUDENTS:
        began = time.perf_counter()
        student = build_student(name, vocab, specials)
        steps = args.deq_steps if name == "deq" and args.deq_steps else args.student_steps
        train_on_pack(student, packed, OptimConfig(max_steps=steps, batch_size=args.student_batch, learning_rate=0.003,
                                                   warmup_steps=min(30, steps // 10)),
                      work / f"{name}-trainer", 42, f"{name} KD", teacher=teacher,
                      kd=KDConfig(loss="forward_kl", temperature=1.0, alpha=0.5))
        student.eval()
        bundles[name] = bundle_of(student, tokenizer_file, work / name)
        models[name] = student
        scores = scores_by_capability(NexusModel.load(bundles[name]), splits["eval"])
        kept = retention(scores, teacher_scores)
        print(f"{name}: {count_parameters(student):,} params, {steps} steps in {time.perf_counter() - began:.0f}s; "
              f"scores {scores}; retention {kept}", flush=True)
        results["students"][name] = {"params": count_parameters(student), "retention": {c: round(r, 4) for c, r in kept.items()}}

    deq_training = models["deq"].solver_summary()
    grad_fraction = nonzero_grad_fraction(models["deq"], packed)
    results["deq"] = {"mean_iters": round(deq_training["mean_iters"], 3), "mean_residual": round(deq_training["mean_residual"], 6),
                      "nonzero_grad_fraction": round(grad_fraction, 6)}
    print(f"deq solver over {deq_training['forwards']} training forwards: {results['deq']}, "
          f"fallback fraction {deq_training['fallback_fraction']:.3f}", flush=True)

    gate_model = NexusModel.load(bundles[args.gate_student])
    results["abstention"] = abstention(gate_model, models[args.gate_student], encode, splits, args.alpha)
    gate_model.gate = None
    step = max(1, len(splits["eval"]) // args.energy_rows)
    results["energy"] = energy(gate_model, splits["eval"][::step][:args.energy_rows], args.energy_n)
    print(f"abstention ({args.gate_student}): {results['abstention']}; energy refinement: {results['energy']}", flush=True)

    for name in STUDENTS:
        print(f"  forward time, {name}:", flush=True)
        results["students"][name]["seconds_by_len"] = forward_seconds(timing_forward(name, models[name], bundles[name]), vocab)
    ssm = results["students"]["ssm"]["seconds_by_len"]
    results["ssm_len_ratio_16k_1k"] = round(ssm["16384"] / ssm["1024"], 3) if {"1024", "16384"} <= set(ssm) else None
    ordered = {"students": results["students"], "ssm_len_ratio_16k_1k": results["ssm_len_ratio_16k_1k"],
               "deq": results["deq"], "abstention": results["abstention"], "energy": results["energy"]}
    print_table(ordered)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(ordered, indent=2))


def print_table(results: dict) -> None:
    print(f"\n{'student':<12} {'params':>8} " + " ".join(f"{c:>10}" for c in CAPABILITIES) + " "
          + " ".join(f"{str(n):>8}" for n in LENGTHS))
    for name, row in results["students"].items():
        print(f"{name:<12} {row['params']:>8} " + " ".join(f"{row['retention'][c]:>10.3f}" for c in CAPABILITIES) + " "
              + " ".join(f"{row['seconds_by_len'][str(n)]:>8.3f}" for n in LENGTHS))
    print(f"ssm 16k/1k time ratio {results['ssm_len_ratio_16k_1k']}; deq {results['deq']}; "
          f"abstention {results['abstention']}; energy {results['energy']}")


if __name__ == "__main__":
    main()
