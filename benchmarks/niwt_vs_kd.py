"""NIWT vs plain logit KD vs SFT-only: steps and time until every capability passes the retention gate.

Same teacher, student size, data and seed for all three (the golden pipeline's stages up to ``synthesize``
are run, or reused, in ``--lab``). Each method trains in its own spawned process so its peak memory is
its own: NIWT reads only the stored profile and the materialized outputs (the teacher is never loaded),
KD holds the teacher in memory for its logits, SFT trains on ground truth. Every ``--eval-every`` steps
the student is benchmarked on the held-out eval split and the gate ``student ≥ 0.97 × teacher`` is
checked per capability; training stops at the first pass (or ``--max-steps``).

    PYTHONPATH=src python benchmarks/niwt_vs_kd.py --out benchmarks/results/niwt_vs_kd.json
    PYTHONPATH=src python benchmarks/niwt_vs_kd.py --preset teacher-25x --out benchmarks/results/niwt_vs_kd_25x_same_size.json

Writes ``{niwt|kd|sft: {steps_to_gate, seconds, peak_mem_mb, retention, ...}, steps_ratio_niwt_vs_kd,
seconds_ratio_niwt_vs_kd, teacher_params, student_params}``. ``--teacher-size '{"hidden_size": 512, ...}'``
trains a larger teacher in the shared stages (e.g. ~20 M parameters, >= 20x the student), where not
loading the teacher shows in NIWT's peak memory.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "src" / "nexa" / "pipeline" / "builtin" / "golden.yaml"
SHARED = ["data", "tokenizer", "teacher", "distill", "pack", "teacher_registry", "router", "profile", "synthesize"]


PRESETS = {
    # The issue-13 headline: a 5.1 M teacher (6 layers, 256 wide) >= 20x both students, which have the same size
    # (NIWT synthesized with a 192-wide MLP: 249,792 parameters with its adapters; KD with a 343-wide MLP: 249,984);
    # NIWT at 128 examples of every capability per step, then again in micro-batches of 32 for its memory.
    "teacher-25x": {
        "teacher_size": {"hidden_size": 256, "intermediate_size": 768, "num_attention_heads": 4, "num_hidden_layers": 6},
        "teacher_steps": 200, "eval_rows": 300, "methods": "niwt,kd",
        "student_size": {"intermediate_size": 343},
        "niwt_arch": {"backbone": {"hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2, "intermediate_size": 192}},
        "niwt_options": {"config": {"batch_size": 128, "step_capabilities": "all"}},
        "lean_micro_batch": 32,
    },
}


def with_preset(args: argparse.Namespace) -> argparse.Namespace:
    """Fill every option the command line left unset from ``--preset``; an explicit flag wins."""
    for key, value in PRESETS.get(args.preset, {}).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.methods = args.methods or "niwt,kd,sft"
    return args


def prepare(lab_dir: Path, teacher_size: dict | None = None, teacher_steps: int | None = None,
            eval_rows: int | None = None) -> dict:
    """Run (or reuse) the golden stages every method shares; returns their output folders and summaries.

    ``teacher_steps`` and ``eval_rows`` shrink the teacher's training and the held-out benchmark (what a larger
    teacher costs on a small CPU); left unset, the golden pipeline's own values are used."""
    from nexa.ledger import Lab
    from nexa.pipeline.runner import run_pipeline
    from nexa.pipeline.spec import load_pipeline

    golden = yaml.safe_load(GOLDEN.read_text())
    stages = [s for s in golden["stages"] if s["name"] in SHARED]
    for stage in stages:
        if stage["name"] == "teacher" and teacher_size:
            stage["with"]["size"] = teacher_size
        if stage["name"] == "teacher" and teacher_steps:
            stage["with"]["optim"]["max_steps"] = teacher_steps
        if stage["name"] == "data" and eval_rows:
            stage["with"]["eval_rows"] = eval_rows
    spec_file = lab_dir / "niwt_vs_kd.yaml"
    lab = Lab.init(lab_dir)
    spec_file.write_text(yaml.safe_dump({**golden, "name": "niwt-vs-kd", "stages": stages}))
    result = run_pipeline(lab, load_pipeline(spec_file))
    golden_by_name = {s["name"]: s for s in golden["stages"]}
    return {"lab": str(lab_dir), "outputs": {k: str(v) for k, v in result.outputs.items()},
            "kd_stage": golden_by_name["student_kd"]["with"], "sft_stage": golden_by_name["baseline"]["with"],
            "niwt_stage": golden_by_name.get("student_niwt", {}).get("with", {})}


def shared_stages(work: Path, reuse: bool, teacher_size: dict | None, teacher_steps: int | None,
                  eval_rows: int | None) -> dict:
    """The shared stages' outputs: run (or taken from the stage cache) and recorded in ``work/prepared.json``, or,
    with ``reuse``, read back from that record as they are — no cache check, so an edit to ``nexa.niwt`` (part of
    the profile stage's code key) does not re-run the profile while NIWT itself is being changed."""
    recorded = work / "prepared.json"
    if reuse:
        if not recorded.exists():
            raise SystemExit(f"error: {recorded} does not exist; run once without --reuse-prepared")
        return json.loads(recorded.read_text())
    shared = prepare(work, teacher_size, teacher_steps, eval_rows)
    recorded.write_text(json.dumps(shared, indent=2))
    return shared


def synthesize_variant(shared: dict, arch: dict, tag: str) -> str:
    """The folder of one more student synthesized with ``arch`` (a ``student_arch.json`` body) from the shared
    teacher and profile, built once into the work folder (``synthesize-<tag>/``) and reused after."""
    from nexa.niwt.stages import synthesize
    from nexa.pipeline.standalone import run_stage

    out = Path(shared["lab"]) / f"synthesize-{tag}"
    if not (out / "summary.json").exists():
        inputs = {"teacher": Path(shared["outputs"]["teacher"]), "profile": Path(shared["outputs"]["profile"])}
        run_stage(Path(shared["lab"]), "niwt-synthesize", out, inputs, 42, synthesize, arch=arch)
    return str(out)


def arch_tag(arch: dict) -> str:
    """A work-folder name for a synthesized variant, stable for the same ``arch`` body."""
    from nexa.ledger.hashing import sha256_json

    return "arch-" + sha256_json(arch)[:12]


def peak_mb() -> float:
    """This process's peak resident memory. ``VmHWM`` resets when the spawned child execs, unlike
    ``ru_maxrss``, which Linux carries over from the forking parent and so reports the parent's peak."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def gate_check(scores: dict, teacher: dict, retain: float = 0.97) -> tuple[bool, dict]:
    retention = {c: (scores.get(c, 0.0) / t if t > 0 else 0.0) for c, t in sorted(teacher.items())}
    return all(r >= retain for r in retention.values()), retention


def hf_scores(model, tokenizer, eval_rows) -> dict:
    from nexa.eval.exact import exact_match
    from nexa.eval.generate import greedy_generate

    model.eval()
    scores = {}
    for capability in sorted({r["capability"] for r in eval_rows}):
        items = [r for r in eval_rows if r["capability"] == capability]
        outs = greedy_generate(model, tokenizer, [r["prompt"] for r in items], max_new_tokens=8)
        scores[capability] = sum(exact_match(o.output, r["answer"]) for o, r in zip(outs, items)) / len(items)
    model.train()
    return scores


class Clock:
    """Training seconds only: the periodic gate evaluations are not counted."""

    def __init__(self):
        self.started, self.excluded = time.perf_counter(), 0.0

    def seconds(self) -> float:
        return time.perf_counter() - self.started - self.excluded


def run_niwt(shared: dict, eval_every: int, max_steps: int, seed: int, options: dict | None = None) -> dict:
    """The golden ``student_niwt`` schedule — adapters only, joint, then gate retries that retrain each failing
    capability's adapter — with the gate checked every ``eval_every`` steps and at the end of every phase, up to
    ``max_steps`` optimizer steps in all (retries included). ``options`` (the ablations) may override the
    distillation ``config``, ``retry_steps``, ``max_attempts`` and the ``synthesize`` folder."""
    from nexus.router import Router
    from tokenizers import Tokenizer
    from transformers import LlamaForCausalLM

    from nexa.ledger import Lab
    from nexa.pipeline.standalone import FolderContext
    from nexa.niwt.distill import DistillConfig, gate_scores
    from nexa.niwt.student import load_inputs, make_distiller, retrain_failing

    options, stage = options or {}, shared["niwt_stage"]
    out = {**shared["outputs"], "synthesize": options.get("synthesize", shared["outputs"]["synthesize"])}
    lab = Lab.find(Path(shared["lab"]))
    ctx = FolderContext(lab, None, Path(shared["lab"]), {k: Path(v) for k, v in out.items()}, seed)
    before = peak_mb()
    _, profiles, basis, plan, paired, eval_rows = load_inputs(ctx, "profile", "synthesize", "distill", "data")
    config = DistillConfig.model_validate({**stage.get("config", {}), **options.get("config", {})})
    retry_steps = options.get("retry_steps", stage.get("retry_steps", 150))
    max_attempts = options.get("max_attempts", stage.get("max_attempts", 3))
    student = LlamaForCausalLM.from_pretrained(Path(out["synthesize"]) / "model", attn_implementation="eager")
    tokenizer = Tokenizer.from_file(str(Path(out["synthesize"]) / "model" / "tokenizer.json"))
    distiller = make_distiller(student, tokenizer, profiles, basis, plan, paired, config, seed)
    route = Router.load(Path(out["router"]) / "router" / "router.safetensors").choose
    teacher = json.loads((Path(out["profile"]) / "summary.json").read_text())["teacher_scores"]
    clock, state = Clock(), {"passed_at": None, "retention": {}, "curve": [], "checked_at": None}

    def check(step: int) -> bool:
        if state["checked_at"] != step:
            began = time.perf_counter()
            passed, kept = gate_check(gate_scores(distiller.model, tokenizer, eval_rows, route, 8), teacher)
            clock.excluded += time.perf_counter() - began
            state["curve"].append({"step": step, "retention": kept})
            state.update(retention=kept, checked_at=step)
            if passed and state["passed_at"] is None:
                state["passed_at"], state["seconds"] = step, clock.seconds()
        return state["passed_at"] is not None

    def on_step(step: int) -> bool:
        return step >= max_steps or (step % eval_every == 0 and check(step))

    def left(steps: int) -> int:
        return max(0, min(steps, max_steps - distiller.state.step))

    distiller.run_phase(left(config.phase1_steps), backbone=False, on_step=on_step)
    if not check(distiller.state.step):
        distiller.run_phase(left(config.phase2_steps), backbone=True, on_step=on_step)
    attempts = 1
    while not check(distiller.state.step) and attempts < max_attempts and left(retry_steps):
        failing = sorted(c for c, r in state["retention"].items() if r < 0.97)
        retrain_failing(distiller, failing, left(retry_steps), on_step=on_step)
        attempts += 1
    return {"steps_to_gate": state["passed_at"], "seconds": round(state.get("seconds", clock.seconds()), 2),
            "peak_mem_mb": round(peak_mb(), 1), "peak_mem_over_start_mb": round(peak_mb() - before, 1),
            "teacher_in_memory": False, "retention": state["retention"], "curve": state["curve"],
            "steps_run": distiller.state.step, "gate_attempts": attempts,
            "student_params": sum(p.numel() for p in distiller.model.parameters())}


def run_trainer(shared: dict, method: str, eval_every: int, max_steps: int, seed: int) -> dict:
    from tokenizers import Tokenizer
    from transformers import LlamaForCausalLM, TrainerCallback

    from nexa.ledger import Lab
    from nexa.ledger.datasets import read_split
    from nexa.train.pack import load_pack, pack_examples
    from nexa.train.tokenizer import encode_example
    from nexa.train.trainer import KDConfig, OptimConfig, train_on_pack

    out = {k: Path(v) for k, v in shared["outputs"].items()}
    lab = Lab.find(Path(shared["lab"]))
    eval_rows = read_split(lab, out["data"] / "datasets.json", "eval")
    teacher_scores = json.loads((out["profile"] / "summary.json").read_text())["teacher_scores"]
    tokenizer = Tokenizer.from_file(str(out["tokenizer"] / "tokenizer.json"))
    before = peak_mb()
    stage = shared["kd_stage"] if method == "kd" else shared["sft_stage"]
    if method == "kd":
        packed, _ = load_pack(out["pack"])
        teacher = LlamaForCausalLM.from_pretrained(out["teacher"] / "model")
        kd = KDConfig(**stage["kd"])
    else:
        rows = read_split(lab, out["data"] / "datasets.json", "train")
        packed, _ = pack_examples([encode_example(tokenizer, r["prompt"], r["answer"]) for r in rows], 128)
        teacher, kd = None, None
    model = fresh_student(out["tokenizer"], stage["size"], seed)
    clock, state = Clock(), {"passed_at": None, "retention": {}, "curve": []}

    class GateEvery(TrainerCallback):
        def on_step_end(self, args, trainer_state, control, **kwargs):
            step = trainer_state.global_step
            if step % eval_every:
                return
            began = time.perf_counter()
            passed, kept = gate_check(hf_scores(model, tokenizer, eval_rows), teacher_scores)
            clock.excluded += time.perf_counter() - began
            state["curve"].append({"step": step, "retention": kept})
            state["retention"] = kept
            if passed and state["passed_at"] is None:
                state["passed_at"], state["seconds"] = step, clock.seconds()
                control.should_training_stop = True

    optim = OptimConfig(**{**stage["optim"], "max_steps": max_steps})
    work = Path(shared["lab"]) / ".nexa" / "scratch" / f"bench-{method}"
    stats = train_on_pack(model, packed, optim, work, seed, f"{method} (benchmark)", teacher=teacher, kd=kd,
                          callbacks=[GateEvery()])
    return {"steps_to_gate": state["passed_at"], "seconds": round(state.get("seconds", clock.seconds()), 2),
            "peak_mem_mb": round(peak_mb(), 1), "peak_mem_over_start_mb": round(peak_mb() - before, 1),
            "teacher_in_memory": teacher is not None, "retention": state["retention"], "curve": state["curve"],
            "steps_run": stats["steps"]}


def _child(method: str, shared: dict, eval_every: int, max_steps: int, seed: int, options: dict | None, queue) -> None:
    import torch

    torch.manual_seed(seed)
    result = (run_niwt(shared, eval_every, max_steps, seed, options) if method == "niwt"
              else run_trainer(shared, method, eval_every, max_steps, seed))
    queue.put(result)


def measure(method: str, shared: dict, eval_every: int, max_steps: int, seed: int, options: dict | None = None) -> dict:
    """One method in a fresh spawned process, so peak memory is that method's alone (``options``: NIWT's)."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(method, shared, eval_every, max_steps, seed, options, queue))
    process.start()
    result = queue.get()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"{method} benchmark process exited with {process.exitcode}")
    return result


def fresh_student(tokenizer_dir: Path, size: dict, seed: int):
    """A freshly initialised student of ``size`` with the lab tokenizer's vocabulary and special ids."""
    from nexa.train.models import DecoderSize, build_model
    from nexa.train.tokenizer import load_hf_tokenizer, special_ids

    tokenizer = load_hf_tokenizer(tokenizer_dir / "tokenizer.json")
    return build_model(DecoderSize(**size), len(tokenizer), seed, special_ids(tokenizer))


def parameter_counts(shared: dict, seed: int) -> dict:
    """The teacher's parameters and the (KD/SFT/NIWT-sized) student's."""
    from transformers import LlamaForCausalLM

    from nexa.train.models import count_parameters

    out = {k: Path(v) for k, v in shared["outputs"].items()}
    teacher = LlamaForCausalLM.from_pretrained(out["teacher"] / "model")
    student = fresh_student(out["tokenizer"], shared["kd_stage"]["size"], seed)
    return {"teacher_params": count_parameters(teacher), "student_params": count_parameters(student)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON results file.")
    parser.add_argument("--work", "--lab", dest="work", type=Path, default=Path("/tmp/nexa-niwt-vs-kd"),
                        help="Work folder (a lab) kept between runs: the trained teacher, its materialized outputs and "
                             "profile are reused from its stage cache, so a rerun skips teacher training.")
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--max-steps", type=int, default=600)
    parser.add_argument("--methods", default=None, help="Comma-separated: niwt, kd, sft (default: all three).")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="A named setting (see PRESETS); explicit flags override its values.")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--teacher-size", type=json.loads, default=None, help="JSON size of the teacher (default: golden's).")
    parser.add_argument("--teacher-steps", type=int, default=None, help="Teacher training steps (default: golden's).")
    parser.add_argument("--eval-rows", type=int, default=None, help="Held-out prompts per capability (default: golden's).")
    parser.add_argument("--reuse-prepared", action="store_true",
                        help="Take the shared stage outputs recorded in the work folder as they are (see shared_stages).")
    parser.add_argument("--student-size", type=json.loads, default=None,
                        help='JSON overrides of the KD/SFT student\'s size (e.g. {"intermediate_size": 416}: the '
                             'synthesized NIWT student\'s 292,032 parameters in the 25x setting).')
    parser.add_argument("--niwt-options", type=json.loads, default=None,
                        help='JSON overrides of the NIWT run: {"config": {...}, "retry_steps": n, "max_attempts": n}.')
    parser.add_argument("--niwt-arch", type=json.loads, default=None,
                        help='A student_arch.json body for the NIWT student (e.g. {"backbone": {"intermediate_size": 192}}), '
                             'synthesized once into the work folder from the shared teacher and profile.')
    parser.add_argument("--lean-micro-batch", type=int, default=None,
                        help="Also run NIWT with this micro_batch (the same loss and gradient, in slices: less memory, "
                             "more seconds) and record it as niwt_micro_batched beside the unsliced run.")
    args = with_preset(parser.parse_args())
    shared = shared_stages(args.work, args.reuse_prepared, args.teacher_size, args.teacher_steps, args.eval_rows)
    for stage in ("kd_stage", "sft_stage"):
        shared[stage] = {**shared[stage], "size": {**shared[stage]["size"], **(args.student_size or {})}}
    niwt_options = dict(args.niwt_options or {})
    if args.niwt_arch:
        niwt_options["synthesize"] = synthesize_variant(shared, args.niwt_arch, arch_tag(args.niwt_arch))
    runs = []  # (result name, method, NIWT options); the micro-batched NIWT right after the unsliced one
    for method in args.methods.split(","):
        runs.append((method, method, niwt_options if method == "niwt" else None))
        if method == "niwt" and args.lean_micro_batch:
            lean = {**niwt_options, "config": {**niwt_options.get("config", {}), "micro_batch": args.lean_micro_batch}}
            runs.append(("niwt_micro_batched", "niwt", lean))
    results = {}
    for name, method, options in runs:
        results[name] = measure(method, shared, args.eval_every, args.max_steps, args.seed, options)
        print(name, {k: v for k, v in results[name].items() if k != "curve"}, flush=True)
    niwt, kd = results.get("niwt", {}), results.get("kd", {})
    ratio = (niwt["steps_to_gate"] / kd["steps_to_gate"]) if niwt.get("steps_to_gate") and kd.get("steps_to_gate") else None
    results["steps_ratio_niwt_vs_kd"] = ratio
    results["seconds_ratio_niwt_vs_kd"] = (round(niwt["seconds"] / kd["seconds"], 3)
                                           if niwt.get("steps_to_gate") and kd.get("steps_to_gate") else None)
    results.update(parameter_counts(shared, args.seed))
    results["settings"] = {"eval_every": args.eval_every, "max_steps": args.max_steps, "seed": args.seed, "retain_fraction": 0.97,
                           "teacher_size": args.teacher_size, "teacher_steps": args.teacher_steps, "eval_rows": args.eval_rows,
                           "niwt_options": args.niwt_options, "student_size": args.student_size, "niwt_arch": args.niwt_arch,
                           "lean_micro_batch": args.lean_micro_batch, "preset": args.preset}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, sort_keys=True))
    print(json.dumps({"steps_ratio_niwt_vs_kd": ratio}))


if __name__ == "__main__":
    main()
