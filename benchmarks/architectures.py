"""Transformer vs selective SSM vs fixed-point (DEQ) students at about equal parameter count, KD from one teacher.

The golden tasks (reasoning, science, chemistry from ``nexa.data.generators``, 3,000 training rows each as in
the golden pipeline), a char tokenizer and a Llama teacher (128 wide, 4 layers, SFT); each student is distilled
from that teacher (logit KD, forward KL, alpha 0.5), bundled and scored by ``nexus`` on the held-out split. Also:
forward time by sequence length (ssm and deq through the ``nexus`` runtime, the transformer through HF's Llama
with the causal SDPA kernel: ``nexus``' Llama builds an explicit length² mask), the DEQ's solver statistics over
training and the fraction of its parameters with a non-zero gradient, the uncertainty gate (fitted by ``nexa
bundle calibrate-gate``'s function on a calibration split, measured on the held-out split) and energy
refinement (N samples, lowest -log p + w · verifier penalty).

Where the time goes, and how it is spent: the teacher trains once; the three students then train at the same
time, each in its own process with one torch thread (tiny models gain nothing from intra-op threads, and
three processes share two cores better than one process with three threads), each with its own learning rate
and a schedule that decays over a wall-clock budget (``--student-minutes``), so a loaded machine shortens
training but never cuts it off at a high rate. Forward timing runs in a separate process while scoring runs.
Everything is kept in ``--work``: a rerun with the same folder reuses the teacher and finished students.

    PYTHONPATH=src python benchmarks/architectures.py --out benchmarks/results/architectures.json --work /tmp/arch
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
    # training: 8 Anderson iterations without a tape, then a 4-step phantom gradient (damping 0.6), and the Jacobian
    # regulariser that keeps the block contractive (exact IFT at 12 iterations: loss 0.97 after 300 steps, the solver
    # at its cap with residual 0.018; 1.55 → 1.29 at step 100 with phantom steps alone → with the regulariser)
    "deq": {"hidden_size": 128, "intermediate_size": 384, "num_attention_heads": 4, "max_iters": 12, "tol": 5e-3,
            "train_max_iters": 8, "phantom_steps": 4, "phantom_tau": 0.6, "jacobian_weight": 3.0},
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


def forward_seconds(forward, vocab: int, repeats: int = 3, long_run: float = 30.0) -> dict[str, float]:
    """Median forward time per length over ``repeats`` rounds, after one untimed warm-up forward.

    The rounds go over all lengths in turn (256, 1k, 4k, 16k, then again), so a change of load on the shared
    machine hits every length alike instead of one; a length whose run took over ``long_run`` seconds is not
    repeated (the DEQ's 16k forward alone is minutes), so its figure is a single run."""
    import statistics

    import torch

    inputs = {length: torch.randint(3, vocab, (1, length), generator=torch.Generator().manual_seed(42)) for length in LENGTHS}
    runs: dict[int, list[float]] = {length: [] for length in LENGTHS}
    with torch.no_grad():
        forward(inputs[LENGTHS[0]])  # warm-up: first-call allocations and lazy imports are not the model's cost
        for _ in range(repeats):
            for length in LENGTHS:
                if runs[length] and runs[length][-1] > long_run:
                    continue
                began = time.perf_counter()
                forward(inputs[length])
                runs[length].append(time.perf_counter() - began)
    for length in LENGTHS:
        print(f"    forward, {length:>6} tokens: median {statistics.median(runs[length]):.3f} s of "
              f"{[round(s, 3) for s in runs[length]]}", flush=True)
    return {str(length): round(statistics.median(runs[length]), 4) for length in LENGTHS}


def timing_forward(name: str, model, bundle: Path):
    """What is timed: the runtime decoder for ssm/deq, HF's Llama (causal SDPA, no mask) for the transformer."""
    from nexus import NexusModel

    if name == "transformer":
        return lambda ids: model(input_ids=ids, use_cache=False)
    decoder = NexusModel.load(bundle).decoder
    return lambda ids: decoder(ids)


def nonzero_grad_fraction(model, packed) -> float:
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


def abstention(bundle: Path, splits: dict, alpha: float, work: Path) -> dict:
    """``nexa bundle calibrate-gate``'s function on the calibration split (a copy of the bundle), then the gated
    bundle on the held-out split: its coverage and the error rate among the prompts it answered."""
    import shutil

    from nexa.bundle.uncertainty import calibrate_gate
    from nexa.models.gate import risk_coverage
    from nexus import NexusModel

    gated = shutil.copytree(bundle, work / "gated-bundle", dirs_exist_ok=True)
    fitted = calibrate_gate(gated, splits["calibration"], alpha, max_new_tokens=8)
    held = NexusModel.load(gated).complete_batch([r["prompt"] for r in splits["eval"]], max_new_tokens=8)
    right = [g.text.strip() == r["answer"] for g, r in zip(held, splits["eval"])]
    answered = [ok for g, ok in zip(held, right) if not g.abstained]
    error = sum(not ok for ok in answered) / len(answered) if answered else 0.0
    print(f"  gate: temperature {fitted['temperature']}, threshold {fitted['threshold']}; calibration accuracy "
          f"{fitted['calibration_accuracy']:.3f}; held-out accuracy {sum(right) / len(right):.3f}, risk-coverage "
          f"{[(round(p['coverage'], 2), round(p['error'], 3)) for p in risk_coverage([g.confidence for g in held], right, 5)]}")
    return {"alpha": alpha, "error_answered": round(error, 4), "coverage": round(len(answered) / len(held), 4)}


def energy(model, rows: list[dict], n: int) -> dict:
    from nexus.refine import refine

    before = sum(correctness(model, rows)) / len(rows)
    after = sum(refine(model, r["prompt"], n=n, temperature=1.0, penalty=verifier_penalty, weight=5.0,
                       max_new_tokens=8)[0].text.strip() == r["answer"] for r in rows) / len(rows)
    return {"before": round(before, 4), "after": round(after, 4)}


# Per-architecture rate and warm-up: a fixed-point model gets a gentler rate and a longer warm-up than attention
# (its solver must stay contractive while the weights move), the SSM a higher one. ``max_steps`` bounds the run;
# on a shared machine the wall-clock budget (--student-minutes) usually ends it first (``time_budget_schedule``).
STUDENT_OPTIM = {
    "transformer": {"max_steps": 600, "learning_rate": 3e-3, "warmup_steps": 30},
    "ssm": {"max_steps": 2000, "learning_rate": 4e-3, "warmup_steps": 100},
    "deq": {"max_steps": 2000, "learning_rate": 4e-3, "warmup_steps": 40},
}


def time_budget_schedule(peak_lr: float, max_steps: int, minutes: float, warmup: float = 0.05):
    """A Trainer callback: warm-up then cosine decay over whichever ends first, ``max_steps`` or ``minutes`` of wall time.

    On a shared machine the CPU share is unknown in advance: a step-based cosine cut off by a wall-clock cap
    stops at a high learning rate. Here progress = max(step / max_steps, elapsed / budget), so every run
    decays fully and ends inside its budget; the Trainer's own scheduler is constant and this sets the
    rate before each step."""
    import math

    from transformers import TrainerCallback

    class TimeBudgetSchedule(TrainerCallback):
        def __init__(self):
            self.started, self.stopped_by_clock = None, False

        def progress(self, step: int) -> float:
            return max(step / max_steps, (time.perf_counter() - self.started) / (60 * minutes))

        def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
            self.started = self.started or time.perf_counter()
            done = min(self.progress(state.global_step), 1.0)
            lr = peak_lr * (done / warmup if done < warmup else 0.5 * (1 + math.cos(math.pi * (done - warmup) / (1 - warmup))))
            for group in optimizer.param_groups:
                group["lr"] = lr
            return control

        def on_step_end(self, args, state, control, **kwargs):
            if self.progress(state.global_step) >= 1.0:
                control.should_training_stop = True
                self.stopped_by_clock = state.global_step < max_steps
            return control

    return TimeBudgetSchedule()


class Lab:
    """The benchmark's shared inputs, rebuilt identically by every process from ``work`` (data is seeded)."""

    def __init__(self, args: argparse.Namespace):
        from nexa.train.pack import pack_examples
        from nexa.train.tokenizer import (char_special_ids, encode_example, load_hf_tokenizer, save_char_tokenizer,
                                          train_char_tokenizer)
        from tokenizers import Tokenizer

        self.work = args.work
        self.splits = make_data(args.train_rows, args.eval_rows, args.calib_rows)
        self.tokenizer_file = self.work / "tokenizer" / "tokenizer.json"
        if self.tokenizer_file.exists():
            tokenizer = Tokenizer.from_file(str(self.tokenizer_file))
        else:
            tokenizer = train_char_tokenizer(r["prompt"] + r["answer"] for rows in self.splits.values() for r in rows)
            self.tokenizer_file = save_char_tokenizer(tokenizer, self.work / "tokenizer")
        self.specials, self.hf_tokenizer = char_special_ids(tokenizer), load_hf_tokenizer(self.tokenizer_file)
        self.vocab = tokenizer.get_vocab_size()
        self.encode = lambda prompt, answer: encode_example(self.hf_tokenizer, prompt, answer)
        self.packed, _ = pack_examples([self.encode(r["prompt"], r["answer"]) for r in self.splits["train"]],
                                       args.seq_len, self.specials.pad_token_id)

    def saved(self, name: str):
        from transformers import AutoModelForCausalLM

        import nexa.models  # noqa: F401  registers the DEQ with the Auto classes
        return AutoModelForCausalLM.from_pretrained(self.work / name / "model").eval()


def train_teacher(lab: Lab, args: argparse.Namespace) -> None:
    from nexa.train.models import DecoderSize, build_model
    from nexa.train.trainer import OptimConfig, train_on_pack

    if (lab.work / "teacher" / "train.json").exists():
        print("teacher: reusing the one in", lab.work, flush=True)
        return
    teacher = build_model(DecoderSize(**TEACHER), lab.vocab, 42, lab.specials)
    run = train_on_pack(teacher, lab.packed, OptimConfig(max_steps=args.teacher_steps, batch_size=16, learning_rate=0.002,
                                                         warmup_steps=min(30, args.teacher_steps // 10)),
                        lab.work / "teacher-trainer", 42, "teacher SFT")
    bundle_of(teacher.eval(), lab.tokenizer_file, lab.work / "teacher")
    (lab.work / "teacher" / "train.json").write_text(json.dumps({k: run[k] for k in ("steps", "final_loss", "seconds")}))


def train_student(lab: Lab, args: argparse.Namespace, name: str) -> None:
    """One student, KD from the saved teacher, saved with its bundle and a ``train.json`` (steps, time, DEQ stats)."""
    from nexa.train.trainer import KDConfig, OptimConfig, train_on_pack

    if (lab.work / name / "train.json").exists():
        print(f"{name}: reusing the one in {lab.work}", flush=True)
        return
    student = build_student(name, lab.vocab, lab.specials)
    optim = {**STUDENT_OPTIM[name], **({"max_steps": args.student_steps} if args.student_steps else {})}
    schedule = time_budget_schedule(optim["learning_rate"], optim["max_steps"], args.student_minutes,
                                    optim["warmup_steps"] / optim["max_steps"])
    run = train_on_pack(student, lab.packed, OptimConfig(batch_size=args.student_batch, scheduler="constant", **optim),
                        lab.work / f"{name}-trainer", 42, f"{name} KD", teacher=lab.saved("teacher"),
                        kd=KDConfig(loss="forward_kl", temperature=1.0, alpha=0.5), callbacks=[schedule])
    record = {"steps": run["steps"], "max_steps": optim["max_steps"], "learning_rate": optim["learning_rate"],
              "final_loss": run["final_loss"], "seconds": round(run["seconds"], 1), "stopped_by_wall_clock": schedule.stopped_by_clock,
              "loss_curve": run["loss_curve"][::max(1, len(run["loss_curve"]) // 20)]}
    if name == "deq":
        record["solver"] = student.solver_summary()
    bundle_of(student.eval(), lab.tokenizer_file, lab.work / name)
    (lab.work / name / "train.json").write_text(json.dumps(record))
    print(f"{name}: {record['steps']} steps in {record['seconds']}s, final loss {record['final_loss']:.3f}", flush=True)


def train_students(args: argparse.Namespace, names: list[str]) -> None:
    """Each student in its own process (one torch thread each), all at once, so the cores share the work."""
    import subprocess
    import sys

    command = [sys.executable, __file__, *sys.argv[1:], "--work", str(args.work), "--only-student"]
    children = {name: subprocess.Popen([*command, name]) for name in names}
    failed = [name for name, child in children.items() if child.wait() != 0]
    if failed:
        raise SystemExit(f"error: training failed for {failed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=None, help="keeps trained models; a rerun reuses what is there")
    parser.add_argument("--train-rows", type=int, default=3000, help="per capability (the golden pipeline's)")
    parser.add_argument("--eval-rows", type=int, default=150, help="per capability (held out)")
    parser.add_argument("--calib-rows", type=int, default=150, help="per capability (gate calibration)")
    parser.add_argument("--teacher-steps", type=int, default=600)
    parser.add_argument("--student-steps", type=int, default=None, help="all students (default: STUDENT_OPTIM's per architecture)")
    parser.add_argument("--student-minutes", type=float, default=40.0, help="wall-clock budget per student: the schedule decays over it")
    parser.add_argument("--student-batch", type=int, default=16)
    parser.add_argument("--serial", action="store_true", help="train the students one after another in this process")
    parser.add_argument("--only-student", choices=sorted(STUDENTS), help=argparse.SUPPRESS)
    parser.add_argument("--only-timing", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--energy-n", type=int, default=8)
    parser.add_argument("--energy-rows", type=int, default=60, help="held-out prompts refined (all capabilities)")
    parser.add_argument("--gate-student", default="best", choices=["best", *sorted(STUDENTS)],
                        help="student the gate and refinement run on (best: the highest mean held-out score)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=64, help="packed block length (a golden example is ~20 tokens)")
    parser.add_argument("--lengths", type=int, nargs="+", default=LENGTHS, help="forward-time lengths (all four for the JSON)")
    args = parser.parse_args()
    LENGTHS[:] = args.lengths
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("WANDB_MODE", "disabled")
    import torch

    args.work = args.work or Path(tempfile.mkdtemp(prefix="nexa-architectures-"))
    args.work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1 if args.only_student else args.threads)
    lab = Lab(args)
    if args.only_student:
        train_student(lab, args, args.only_student)
        return
    if args.only_timing:
        (lab.work / "timing.json").write_text(json.dumps(
            {name: forward_seconds(timing_forward(name, lab.saved(name), lab.work / name / "bundle"), lab.vocab) for name in STUDENTS}))
        return
    train_teacher(lab, args)
    if args.serial:
        for name in STUDENTS:
            train_student(lab, args, name)
    else:
        train_students(args, [name for name in STUDENTS if not (args.work / name / "train.json").exists()])
    results = evaluate(lab, args)
    print_table(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


def evaluate(lab: Lab, args: argparse.Namespace) -> dict:
    """Scores, retention, DEQ stats, the gate, energy refinement and forward time, from the saved models."""
    from nexa.ledger.retention import retention
    from nexa.train.models import count_parameters
    import subprocess
    import sys

    from nexus import NexusModel

    # Forward time by length runs in its own process (one thread) while this one scores: the two share the cores.
    timing = subprocess.Popen([sys.executable, __file__, *sys.argv[1:], "--work", str(args.work), "--only-timing"])
    teacher_scores = scores_by_capability(NexusModel.load(lab.work / "teacher" / "bundle"), lab.splits["eval"])
    print(f"teacher: scores {teacher_scores}; {json.loads((lab.work / 'teacher' / 'train.json').read_text())}", flush=True)
    results: dict = {"students": {}}
    models, bundles, training, mean_scores = {}, {}, {}, {}
    for name in STUDENTS:
        models[name], bundles[name] = lab.saved(name), lab.work / name / "bundle"
        training[name] = json.loads((lab.work / name / "train.json").read_text())
        scores = scores_by_capability(NexusModel.load(bundles[name]), lab.splits["eval"])
        kept = retention(scores, teacher_scores)
        print(f"{name}: {count_parameters(models[name]):,} params, {training[name]['steps']} steps in "
              f"{training[name]['seconds']}s (lr {training[name]['learning_rate']}); scores {scores}; retention {kept}", flush=True)
        results["students"][name] = {"params": count_parameters(models[name]), "retention": {c: round(r, 4) for c, r in kept.items()}}
        mean_scores[name] = sum(scores.values()) / len(scores)
    gate_student = max(mean_scores, key=mean_scores.get) if args.gate_student == "best" else args.gate_student

    deq_training = training["deq"]["solver"]
    grad_fraction = nonzero_grad_fraction(models["deq"], lab.packed)
    results["deq"] = {"mean_iters": round(deq_training["mean_iters"], 3), "mean_residual": round(deq_training["mean_residual"], 6),
                      "nonzero_grad_fraction": round(grad_fraction, 6)}
    print(f"deq solver over {deq_training['forwards']} training forwards: {results['deq']}, "
          f"fallback fraction {deq_training['fallback_fraction']:.3f}", flush=True)

    results["abstention"] = abstention(bundles[gate_student], lab.splits, args.alpha, lab.work / f"gate-{gate_student}")
    gate_model = NexusModel.load(bundles[gate_student])  # ungated: refinement sees every prompt
    step = max(1, len(lab.splits["eval"]) // args.energy_rows)
    results["energy"] = energy(gate_model, lab.splits["eval"][::step][:args.energy_rows], args.energy_n)
    print(f"abstention ({gate_student}): {results['abstention']}; energy refinement ({gate_student}): {results['energy']}", flush=True)

    if timing.wait() != 0:
        raise SystemExit("error: the forward-time process failed")
    for name, seconds in json.loads((lab.work / "timing.json").read_text()).items():
        results["students"][name]["seconds_by_len"] = seconds
    ssm = results["students"]["ssm"]["seconds_by_len"]
    results["ssm_len_ratio_16k_1k"] = round(ssm["16384"] / ssm["1024"], 3) if {"1024", "16384"} <= set(ssm) else None
    return {"students": results["students"], "ssm_len_ratio_16k_1k": results["ssm_len_ratio_16k_1k"],
            "deq": results["deq"], "abstention": results["abstention"], "energy": results["energy"]}


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
