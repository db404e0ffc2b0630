"""Training throughput: `nexa train` (HF Trainer) vs a minimal hand-written PyTorch loop, same model, same packed data.

Also measures packing efficiency (best-fit decreasing) on a realistic, long-tailed length mix next to
naive padding (every sample padded to the block length) and per-batch dynamic padding.

    PYTHONPATH=src .venv/bin/python benchmarks/train_throughput.py --out benchmarks/results/train_throughput.json

Writes `nexa_tokens_per_s`, `plain_tokens_per_s`, `ratio`, `packing_efficiency`, `padding_efficiency`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import tempfile
import time
from pathlib import Path

# Set before torch is imported (a fair comparison needs the same thread count for both loops).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import yaml  # noqa: E402

ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789 .,=+-()"


def length_mix(n: int, seed: int) -> list[tuple[int, int]]:
    """(prompt, answer) character lengths: log-normal prompts (median ~90, long tail), shorter answers."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        prompt = min(400, max(4, int(rng.lognormvariate(math.log(90), 0.7))))
        answer = min(100, max(1, int(rng.lognormvariate(math.log(20), 0.8))))
        out.append((prompt, answer))
    return out


def make_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed + 1)
    return [{"prompt": "".join(rng.choice(ALPHABET) for _ in range(p)), "answer": "".join(rng.choice(ALPHABET) for _ in range(a)),
             "split": "train"} for p, a in length_mix(n, seed)]


def batch_padding_efficiency(lengths: list[int], batch: int, seed: int) -> float:
    """Dynamic padding: shuffled batches, each padded to its own longest sample."""
    order = lengths[:]
    random.Random(seed).shuffle(order)
    chunks = [order[i:i + batch] for i in range(0, len(order), batch)]
    return sum(sum(c) for c in chunks) / sum(max(c) * len(c) for c in chunks)


def plain_loop(model, packed, steps: int, batch: int, lr: float, warmup: int, seed: int) -> float:
    """The minimal loop: shuffled packed blocks, AdamW, cosine schedule with warmup, grad clipping. Returns tokens/s."""
    from transformers import get_cosine_schedule_with_warmup

    generator = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.0)
    schedule = get_cosine_schedule_with_warmup(optimizer, warmup, steps)
    model.train()
    done, order = 0, torch.randperm(len(packed), generator=generator)
    while done < steps:
        for start in range(0, len(order) - batch + 1, batch):
            index = order[start:start + batch]
            loss = model(input_ids=packed.input_ids[index], position_ids=packed.position_ids[index],
                         labels=packed.labels[index], use_cache=False).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            done += 1
            if done == steps:
                break
        order = torch.randperm(len(packed), generator=generator)
    seconds = time.perf_counter() - started
    return steps * batch * packed.input_ids.shape[1] / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--samples", type=int, default=3000)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="Alternate the two loops this many times; best of each counts.")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both loops (1 is stable on a shared machine).")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from nexa.ledger.datasets import write_dataset_version
    from nexa.ledger import Lab
    from nexa.train.config import load_train_config
    from nexa.train.engine import train
    from nexa.train.models import DecoderSize, build_model
    from nexa.train.pack import load_pack
    from nexa.train.packs import PackRequest, build_pack
    from nexa.train.tokenizer import load_tokenizer, train_char_tokenizer

    lab = Lab.init(Path(tempfile.mkdtemp(prefix="nexa-bench-")) / "lab")
    rows = make_rows(args.samples, seed=42)
    write_dataset_version(lab, "bench-mix", rows, row_schema="qa")
    train_char_tokenizer(r["prompt"] + r["answer"] for r in rows).save(str(lab.root / "tokenizer.json"))
    pack_id, _, manifest = build_pack(lab, PackRequest(["bench-mix@v1"], lab.root / "tokenizer.json", args.seq_len))
    from nexa.train.packs import fetch_pack

    packed, _ = load_pack(fetch_pack(lab, pack_id))
    tok = load_tokenizer(lab.root / "tokenizer.json")
    lengths = [len(tok.encode(r["prompt"]).ids) + len(tok.encode(r["answer"], add_special_tokens=False).ids) + 1 for r in rows]

    size = {"hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4, "max_position_embeddings": args.seq_len}
    optim = {"max_steps": args.steps, "batch_size": args.batch, "learning_rate": 0.002, "warmup_steps": 4, "logging_steps": 10}
    config_path = lab.root / "bench.yaml"
    config_path.write_text(yaml.safe_dump({"name": "bench", "seed": 42, "model": {"size": size}, "data": {"pack": pack_id},
                                           "optim": optim, "tracking": {"wandb": "disabled"}}))
    config = load_train_config(config_path)

    nexa, plain, losses = [], [], {}
    for _ in range(args.repeats):
        model = build_model(DecoderSize(**size), tok.get_vocab_size(), seed=42)
        plain.append(plain_loop(model, packed, args.steps, args.batch, 0.002, 4, seed=42))
        outcome = train(lab, config)
        nexa.append(outcome.stats["tokens_per_s"])
        losses = {"nexa_final_loss": outcome.stats["final_loss"]}
    result = {
        "nexa_tokens_per_s": round(max(nexa), 1),
        "plain_tokens_per_s": round(max(plain), 1),
        "ratio": round(max(nexa) / max(plain), 4),
        "packing_efficiency": manifest.efficiency,
        "padding_efficiency": manifest.padding_efficiency,
        "batch_padding_efficiency": round(batch_padding_efficiency(lengths, args.batch, 42), 6),
        "all_nexa_tokens_per_s": [round(x, 1) for x in nexa],
        "all_plain_tokens_per_s": [round(x, 1) for x in plain],
        "samples": args.samples, "seq_len": args.seq_len, "blocks": manifest.blocks, "steps": args.steps, "batch": args.batch,
        "threads": args.threads, "model": size, "mean_sample_tokens": round(sum(lengths) / len(lengths), 1),
        "device": "cuda" if torch.cuda.is_available() else "cpu", **losses,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
