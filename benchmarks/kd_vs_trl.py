"""Logit KD, step by step: `nexa train`'s trainer against TRL's GKDTrainer on the same objective and data.

    PYTHONPATH=src .venv/bin/python benchmarks/kd_vs_trl.py --steps 200 --out benchmarks/results/kd_vs_trl.json

Same teacher (a random-init Llama whose head is sharpened so its next-token distributions are peaked),
same student initialisation, same samples (golden `reasoning` prompts and answers, character ids),
same objective (forward KL(teacher || student) at temperature 1 on answer tokens, no CE: nexa
`alpha=1`, TRL `beta=0, lmbda=0`), same optimizer and schedule, one torch thread. Runs:

* ``trl``           — GKDTrainer on dynamically padded batches of ``--batch`` samples;
* ``nexa_padded``   — nexa's trainer (``train_on_pack``, what `nexa train` runs) on one sample per row,
                      the same batches of samples as TRL: isolates the loss and the optimizer;
* ``nexa_packed``   — nexa's trainer on best-fit-packed blocks, as `nexa train` really trains, with the
                      batch sized so a step holds about the same number of answer tokens;
* ``nexa_packed_same_blocks`` — packed, but ``--batch`` blocks a step (the old like-for-like setting:
                      same rows per step means several times the samples per step);
* ``nexa_packed_beta2_098`` — packed with `nexa train`'s own default Adam beta2 (0.98; TRL's is 0.999).

Each step's training KL (the loss, which is exactly the KL here) is recorded; the script prints mean,
last-20 mean and last per run, and tokens/s. Writes {runs: {name: {kl_mean, kl_last20, kl_last,
answer_tokens_per_step, answer_tokens_per_s, kl_per_step}}, ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

PAD = 0


def samples(n: int, seed: int) -> tuple[list[tuple[list[int], list[int]]], int]:
    """(ids, labels) per golden reasoning row, character ids (0 = pad, 1 = end of answer); labels on the answer."""
    from nexa.data.generators import generate

    rows = generate("reasoning", n, seed)
    alphabet = sorted({c for r in rows for c in r["prompt"] + r["answer"]})
    index = {c: i + 2 for i, c in enumerate(alphabet)}
    out = []
    for row in rows:
        prompt = [index[c] for c in row["prompt"]]
        answer = [index[c] for c in row["answer"]] + [1]
        out.append((prompt + answer, [-100] * len(prompt) + answer))
    return out, len(alphabet) + 2


def models(vocab: int, seed: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    def build(hidden: int, layers: int, model_seed: int):
        torch.manual_seed(model_seed)
        config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 4, num_hidden_layers=layers,
                             num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256, pad_token_id=PAD,
                             bos_token_id=None, eos_token_id=1, tie_word_embeddings=False)
        return LlamaForCausalLM(config)

    teacher = build(128, 3, seed + 1)
    with torch.no_grad():
        teacher.lm_head.weight.mul_(8.0)  # peaked next-token distributions: a KL worth minimising
    return teacher, build(64, 2, seed)


def padded(examples: list[tuple[list[int], list[int]]], seq_len: int):
    """One sample per row, right-padded: the rows TRL's collator makes, in nexa's Packed layout."""
    from nexa.train.pack import Packed

    ids = [e[0][:seq_len] + [PAD] * (seq_len - len(e[0][:seq_len])) for e in examples]
    labels = [e[1][:seq_len] + [-100] * (seq_len - len(e[1][:seq_len])) for e in examples]
    positions = [list(range(seq_len)) for _ in examples]
    return Packed(torch.tensor(ids), torch.tensor(labels), torch.tensor(positions))


class _PerStep:
    """Trainer callback: the loss logged at every step (logging_steps=1)."""

    def __init__(self):
        from transformers import TrainerCallback

        outer = self

        class Callback(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "loss" in logs:
                    outer.losses.append(float(logs["loss"]))

        self.losses: list[float] = []
        self.callback = Callback()


def run_nexa(teacher, student, packed, steps: int, batch: int, lr: float, warmup: int, seed: int, out: Path,
             beta2: float = 0.999) -> dict:
    from nexa.train.trainer import KDConfig, OptimConfig, train_on_pack

    recorder = _PerStep()
    optim = OptimConfig(max_steps=steps, batch_size=batch, learning_rate=lr, warmup_steps=warmup, scheduler="cosine")
    result = train_on_pack(student, packed, optim, out, seed, "kd", teacher=teacher,
                           kd=KDConfig(loss="forward_kl", temperature=1.0, alpha=1.0),
                           callbacks=[recorder.callback], overrides={"logging_steps": 1, "adam_beta2": beta2})
    return {"kl_per_step": recorder.losses, "seconds": result["seconds"]}


def run_trl(teacher, student, examples, vocab: int, steps: int, batch: int, lr: float, warmup: int, seed: int, out: Path) -> dict:
    from datasets import Dataset
    from tokenizers import Tokenizer, models as tok_models
    from transformers import PreTrainedTokenizerFast
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(tok_models.WordLevel({str(i): i for i in range(vocab)}, unk_token="0")),
                                        pad_token="0", eos_token="1")

    def collate(batch_rows):
        width = max(len(r["ids"]) for r in batch_rows)
        ids = torch.tensor([r["ids"] + [PAD] * (width - len(r["ids"])) for r in batch_rows])
        labels = torch.tensor([r["labels"] + [-100] * (width - len(r["labels"])) for r in batch_rows])
        mask = torch.tensor([[1] * len(r["ids"]) + [0] * (width - len(r["ids"])) for r in batch_rows])
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    recorder = _PerStep()
    args = GKDConfig(output_dir=str(out), max_steps=steps, per_device_train_batch_size=batch, learning_rate=lr,
                     warmup_steps=warmup, lr_scheduler_type="cosine", max_grad_norm=1.0, weight_decay=0.0,
                     adam_beta2=0.999, logging_steps=1, report_to=[], seed=seed, data_seed=seed, use_cpu=True,
                     lmbda=0.0, beta=0.0, temperature=1.0, save_strategy="no", disable_tqdm=True, bf16=False)
    trainer = GKDTrainer(model=student, teacher_model=teacher, args=args, data_collator=collate,
                         train_dataset=Dataset.from_list([{"ids": e[0], "labels": e[1]} for e in examples]), processing_class=tokenizer,
                         callbacks=[recorder.callback])
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    started = time.perf_counter()
    trainer.train()
    return {"kl_per_step": recorder.losses, "seconds": time.perf_counter() - started}


def summary(run: dict, answer_tokens_per_step: float) -> dict:
    kl = run["kl_per_step"]
    return {"kl_mean": round(sum(kl) / len(kl), 4), "kl_last20": round(sum(kl[-20:]) / len(kl[-20:]), 4),
            "kl_last": round(kl[-1], 4), "answer_tokens_per_step": round(answer_tokens_per_step, 1),
            "answer_tokens_per_s": round(answer_tokens_per_step * len(kl) / run["seconds"]), "kl_per_step": [round(x, 5) for x in kl]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    random.seed(42)
    from nexa.train.pack import pack_examples

    examples, vocab = samples(args.samples, 42)
    answer_tokens = sum(sum(1 for t in e[1] if t != -100) for e in examples) / len(examples)
    packed, _ = pack_examples(examples, args.seq_len, PAD)
    per_block = len(examples) / len(packed)
    packed_batch = max(1, round(args.batch / per_block))
    runs = {}
    with tempfile.TemporaryDirectory(prefix="nexa-kd-trl-") as tmp:
        for name in ("trl", "nexa_padded", "nexa_packed", "nexa_packed_same_blocks", "nexa_packed_beta2_098"):
            teacher, student = models(vocab, 42)
            out = Path(tmp) / name
            if name == "trl":
                run = run_trl(teacher, student, examples, vocab, args.steps, args.batch, args.lr, args.warmup, 42, out)
                per_step = args.batch * answer_tokens
            elif name == "nexa_padded":
                run = run_nexa(teacher, student, padded(examples, args.seq_len), args.steps, args.batch, args.lr, args.warmup, 42, out)
                per_step = args.batch * answer_tokens
            else:
                batch = args.batch if name == "nexa_packed_same_blocks" else packed_batch
                beta2 = 0.98 if name.endswith("beta2_098") else 0.999
                run = run_nexa(teacher, student, packed, args.steps, batch, args.lr, args.warmup, 42, out, beta2)
                per_step = batch * per_block * answer_tokens
            runs[name] = summary(run, per_step)
    result = {"steps": args.steps, "samples_per_packed_block": round(per_block, 2), "packed_batch": packed_batch, "runs": runs,
              "settings": {"batch": args.batch, "seq_len": args.seq_len, "lr": args.lr, "warmup": args.warmup,
                           "schedule": "cosine", "adam_beta2": 0.999, "threads": 1, "objective": "forward KL, T=1, answer tokens"}}
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"logit KD, {args.steps} steps, per-step training KL")
    for column in ("run", "answer tokens/step", "KL mean", "KL last 20", "KL last", "answer tokens/s"):
        table.add_column(column, justify="right")
    for name, r in runs.items():
        table.add_row(name, f"{r['answer_tokens_per_step']:.0f}", f"{r['kl_mean']:.4f}", f"{r['kl_last20']:.4f}", f"{r['kl_last']:.4f}",
                      f"{r['answer_tokens_per_s']:,}")
    Console(stderr=True).print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"} | {"runs": {n: {k: v for k, v in r.items() if k != "kl_per_step"}
                                                                            for n, r in runs.items()}}))


if __name__ == "__main__":
    main()
