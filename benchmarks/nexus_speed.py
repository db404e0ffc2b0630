"""nexus's own decoder vs transformers on the same bundle backbone: greedy tokens/s at batch 1 and 16.

    python benchmarks/nexus_speed.py --out benchmarks/results/nexus_speed.json

Random-init tiny models of every supported family (same weights both ways, fp32, CPU, 1 thread), 32 new
tokens after a 16-token prompt, best of 3. Decides whether nexus keeps its own decoder (no transformers
dependency at serving time) or runs on transformers. Writes {family: {"nexus_b1", "hf_b1", "nexus_b16", "hf_b16"}}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import torch  # noqa: E402

NEW = 32


def tokens_per_s(step, batch: int) -> float:
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - began)
    return batch * NEW / best


def measure(family: str, work: Path) -> dict:
    from hf_families import make_family_model
    from transformers import AutoModelForCausalLM

    from nexa.bundle.build import write_backbone, write_manifest, write_tokenizer
    from nexus import NexusModel
    from nexus.llama import KVCache

    model_dir = make_family_model(family, work / family, hidden=128, layers=4)
    bundle = work / f"{family}-bundle"
    write_backbone(model_dir, bundle)
    write_tokenizer(model_dir / "tokenizer.json", bundle)
    write_manifest(bundle, name="speed", version="0", capabilities=["x"], adapters={}, safety={"uncensored": False})
    hf = AutoModelForCausalLM.from_pretrained(bundle / "backbone").eval()
    runtime = NexusModel.load(bundle)
    result = {}
    for batch in (1, 16):
        ids = torch.randint(5, 300, (batch, 16))

        def nexus_step():
            cache = KVCache(runtime.spec.num_hidden_layers)
            logits = runtime.decoder(ids, None, cache)[:, -1]
            for _ in range(NEW - 1):
                logits = runtime.decoder(logits.argmax(-1)[:, None], torch.ones(batch, 1, dtype=torch.bool), cache)[:, -1]

        def hf_step():
            with torch.no_grad():
                hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False,
                            pad_token_id=hf.config.pad_token_id or 0)

        result[f"nexus_b{batch}"] = round(tokens_per_s(nexus_step, batch), 1)
        result[f"hf_b{batch}"] = round(tokens_per_s(hf_step, batch), 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="nexus-speed-"))
    results = {f: measure(f, work) for f in ("llama", "qwen2", "mistral", "gemma")}
    for family, r in results.items():
        print(f"{family:8s} nexus b1 {r['nexus_b1']:8.1f}  hf b1 {r['hf_b1']:8.1f}  nexus b16 {r['nexus_b16']:8.1f}  hf b16 {r['hf_b16']:8.1f} tok/s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
