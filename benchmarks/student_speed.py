"""Is the student faster than its teacher? Greedy tokens per second, bundle (nexus) vs teacher (transformers).

    PYTHONPATH=src python benchmarks/student_speed.py --out benchmarks/results/student_speed.json [--bundle DIR]

The bundle is the golden pipeline's verified bundle (``--bundle``, else ``nexa demo`` runs in a temporary
lab), run through ``nexus.NexusModel`` with routing and adapters (``capability=None``: the router picks).
The teacher is a Llama of the size the issue names (~20 M parameters, >= 20x the student) on the bundle's
tokenizer, run through ``transformers`` ``generate`` (greedy, KV cache). Its weights are freshly initialised:
a speed measurement needs the teacher's shape, not its knowledge, and training a 20 M model does not fit
this benchmark's budget. Both run in this process with the same torch thread count, on the same prompts
(the bundle's held-out benchmark prompts), batch 1 and batch 32, after one untimed warm-up call each.

Same work for both: each batch is answered by the bundle first; the teacher then generates exactly as many
steps as the bundle did on that batch (its longest answer + the EOS step), and both are credited with the
bundle's answer tokens. (An untrained teacher would otherwise never emit EOS and run every step; a trained
one that agrees with its student answers with the same tokens.) Seconds are this process's CPU time by
default (``--clock cpu``): with one thread that equals wall time on an idle machine and, unlike wall time,
does not swing with the load of other jobs on a shared machine. ``--clock wall`` times wall seconds.

Writes exactly ``{"teacher_tokens_per_s": {"b1", "b32"}, "bundle_tokens_per_s": {"b1", "b32"},
"ratio_b1", "ratio_b32"}`` (bundle / teacher).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

TEACHER_SIZE = {"hidden_size": 512, "num_hidden_layers": 6, "num_attention_heads": 8, "intermediate_size": 1376}


def golden_bundle() -> Path:
    """Run the golden pipeline in a temporary lab and return its verified bundle."""
    lab = Path(tempfile.mkdtemp(prefix="nexa-speed-")) / "lab"
    proc = subprocess.run([sys.executable, "-m", "nexa.cli", "demo", "--lab", str(lab), "--json"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"nexa demo failed:\n{proc.stderr[-4000:]}")
    return Path(json.loads(proc.stdout)["bundle"])


def build_teacher(bundle: Path, seed: int):
    """A ~20 M-parameter Llama on the bundle's tokenizer and special tokens (same prompts, same ids)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    backbone = json.loads((bundle / "backbone" / "config.json").read_text())
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=backbone["vocab_size"], max_position_embeddings=backbone["max_position_embeddings"],
                         pad_token_id=backbone["pad_token_id"], eos_token_id=backbone["eos_token_id"],
                         bos_token_id=backbone.get("bos_token_id"), **TEACHER_SIZE)
    return LlamaForCausalLM(config).eval()


def teacher_run(model, tokenizer, prompts: list[str], steps: int) -> None:
    """Exactly ``steps`` greedy steps per prompt of one batch through transformers (KV cache)."""
    import torch

    pad = model.config.pad_token_id
    encoded = [tokenizer.encode(p).ids for p in prompts]
    width = max(map(len, encoded))
    input_ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded])
    attention = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded])
    model.generate(input_ids=input_ids, attention_mask=attention, max_new_tokens=steps, min_new_tokens=steps,
                   do_sample=False, pad_token_id=pad)


def bundle_run(model, prompts: list[str], max_new_tokens: int) -> tuple[int, int]:
    """Greedy generation of one batch through nexus (router + adapters): (answer tokens, decode steps run)."""
    outs = model.complete_batch(prompts, capability=None, max_new_tokens=max_new_tokens, batch_size=len(prompts))
    longest = max(g.completion_tokens for g in outs)
    return sum(g.completion_tokens for g in outs), min(longest + 1, max_new_tokens)


def measure(student, teacher, tokenizer, prompts: list[str], batch: int, max_new_tokens: int, clock) -> dict[str, float]:
    """Tokens/s of bundle and teacher over ``prompts`` in batches of ``batch``, after one untimed warm-up batch each."""
    warm = prompts[:batch]
    teacher_run(teacher, tokenizer, warm, bundle_run(student, warm, max_new_tokens)[1])
    tokens, seconds = 0, {"bundle": 0.0, "teacher": 0.0}
    for start in range(0, len(prompts), batch):
        chunk = prompts[start : start + batch]
        began = clock()
        answered, steps = bundle_run(student, chunk, max_new_tokens)
        seconds["bundle"] += clock() - began
        began = clock()
        teacher_run(teacher, tokenizer, chunk, steps)
        seconds["teacher"] += clock() - began
        tokens += answered
    if tokens == 0:
        raise SystemExit("error: the bundle answered every prompt with no tokens; benchmark a trained bundle")
    return {name: tokens / s for name, s in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--bundle", type=Path, default=None, help="A verified bundle (default: run nexa demo).")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--prompts", type=int, default=96, help="Prompts timed per batch size.")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    args = parser.parse_args()

    import torch
    from nexus import NexusModel
    from tokenizers import Tokenizer

    torch.set_num_threads(args.threads)
    bundle = args.bundle or golden_bundle()
    items = json.loads((bundle / "benchmark" / "items.json").read_text())
    prompts = [i["prompt"] for i in items[:: max(1, len(items) // args.prompts)]][: args.prompts]
    student = NexusModel.load(bundle, device="cpu")
    teacher = build_teacher(bundle, args.seed)
    tokenizer = Tokenizer.from_file(str(bundle / "tokenizer" / "tokenizer.json"))
    teacher_params = sum(p.numel() for p in teacher.parameters())
    student_params = student.parameter_count()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    with torch.no_grad():
        rates = {b: measure(student, teacher, tokenizer, prompts, b, args.max_new_tokens, clock) for b in (1, 32)}
    result = {"teacher_tokens_per_s": {f"b{b}": round(r["teacher"], 1) for b, r in rates.items()},
              "bundle_tokens_per_s": {f"b{b}": round(r["bundle"], 1) for b, r in rates.items()}}
    for b in (1, 32):
        result[f"ratio_b{b}"] = round(result["bundle_tokens_per_s"][f"b{b}"] / result["teacher_tokens_per_s"][f"b{b}"], 2)
    table = Table(title=f"greedy tokens/s ({args.clock} clock), {args.threads} thread(s): teacher {teacher_params / 1e6:.1f} M params (transformers) "
                        f"vs bundle {student_params / 1e6:.2f} M (nexus, routed)")
    for column in ("batch", "teacher tok/s", "bundle tok/s", "bundle / teacher"):
        table.add_column(column, justify="right")
    for b in (1, 32):
        table.add_row(str(b), str(result["teacher_tokens_per_s"][f"b{b}"]), str(result["bundle_tokens_per_s"][f"b{b}"]),
                      f"{result[f'ratio_b{b}']:.2f}x")
    Console().print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
