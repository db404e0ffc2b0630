"""Pack artifacts: dataset versions tokenized and packed once, stored in durable ``packs/<id>/``.

A pack's id is the hash of what determines it (dataset content hashes, tokenizer hash, sequence
length, fields), so packing the same inputs twice is a no-op that returns the same artifact. Rows
that cannot be encoded (missing field, teacher logprobs that do not line up with the answer) are
quarantined to ``quarantine.jsonl`` inside the pack with the reason; the good rows go on.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nexa.ledger import Lab
from nexa.ledger.datasets import read_dataset_manifest, read_dataset_rows
from nexa.ledger.hashing import sha256_file, sha256_json
from nexa.ledger.manifests import ArtifactRef
from nexa.train.pack import PackManifest, efficiency, load_pack, pack_examples, padding_efficiency, save_pack
from nexa.train.chat import encode_chat
from nexa.train.tokenizer import encode_example, load_hf_tokenizer, save_tokenizer_files

MISSING_LOGPROB = -1e4  # a top-k slot the teacher did not fill: probability ~0, but never NaN


@dataclass
class PackRequest:
    """What to pack: dataset refs, the tokenizer, the block length and which columns to read."""

    datasets: list[str]
    tokenizer: Path
    seq_len: int
    split: str | None = "train"
    prompt_field: str = "prompt"
    answer_field: str = "answer"
    topk_field: str | None = None  # set for offline KD
    messages_field: str = "messages"  # a chat row: rendered with the tokenizer's chat template


def pack_id(lab: Lab, request: PackRequest) -> str:
    """Content address of a pack: same datasets, tokenizer and settings give the same id."""
    hashes = [read_dataset_manifest(lab, ref).content_hash for ref in request.datasets]
    tok_file = _tokenizer_file(request.tokenizer)
    declared = tok_file.parent / "tokenizer_config.json"  # special tokens and chat template change the encoding
    key = {"datasets": hashes, "tokenizer": sha256_file(tok_file), "seq_len": request.seq_len,
           "tokenizer_config": sha256_file(declared) if declared.is_file() else None, "split": request.split,
           "fields": [request.prompt_field, request.answer_field, request.topk_field, request.messages_field], "v": 2}
    return sha256_json(key)[:16]


def build_pack(lab: Lab, request: PackRequest, created_by: str | None = None) -> tuple[str, ArtifactRef, PackManifest]:
    """Pack into durable ``packs/<id>``, or return the pack already there (idempotent)."""
    pid = pack_id(lab, request)
    store = lab.durable()
    prefix = f"packs/{pid}"
    if store.exists(f"{prefix}/_files.json"):
        local = fetch_pack(lab, pid)
        _, manifest = load_pack(local)
        return pid, _dir_ref(store, prefix, pid), manifest
    folder = lab.scratch / "packs" / pid
    shutil.rmtree(folder, ignore_errors=True)
    manifest = write_pack(lab, request, folder, created_by)
    ref = store.put_dir(folder, prefix)
    return pid, ArtifactRef(kind="pack", ref=f"pack:{pid}", path=ref.path, sha256=ref.sha256, size_bytes=ref.size_bytes), manifest


def pack_in_run(lab: Lab, request: PackRequest) -> tuple[str, str, ArtifactRef, PackManifest]:
    """``nexa pack``: every dataset checked first (an unknown ref writes no run), then :func:`build_pack` in a run of
    its own that records the pack as its output. Returns (run id, pack id, ref, manifest)."""
    from dataclasses import asdict

    from nexa.ledger.console import command_run

    for ref in request.datasets:
        read_dataset_manifest(lab, ref)
    with command_run(lab, "pack", config={**asdict(request), "tokenizer": str(request.tokenizer)}) as run:
        pid, ref, manifest = build_pack(lab, request, created_by=run.run_id)
        run.add_output(ref)
        run.update(dataset_id=",".join(request.datasets), metrics={"efficiency": manifest.efficiency, "blocks": manifest.blocks})
    return run.run_id, pid, ref, manifest


def write_pack(lab: Lab, request: PackRequest, folder: Path, created_by: str | None = None) -> PackManifest:
    """Encode every row of every dataset, pack them, and write pack.safetensors/pack.json and the tokenizer files."""
    tok_file = _tokenizer_file(request.tokenizer)
    tok = load_hf_tokenizer(tok_file)
    examples, quarantine = [], []
    for ref in request.datasets:
        for index, row in enumerate(read_dataset_rows(lab, ref)):
            if request.split and "split" in row and row["split"] != request.split:
                continue
            try:
                examples.append(encode_row(tok, row, request))
            except ValueError as exc:
                quarantine.append({"dataset": ref, "row": index, "reason": str(exc)})
    if not examples:
        raise ValueError(f"no usable rows in {request.datasets} (split={request.split!r}); {len(quarantine)} quarantined")
    packed, truncated = pack_examples(examples, request.seq_len, tok.pad_token_id)
    manifest = PackManifest(
        seq_len=request.seq_len, samples=len(examples), blocks=len(packed), tokens=int(packed.input_ids.numel()),
        efficiency=round(efficiency(packed), 6), sources=list(request.datasets), tokenizer_sha256=sha256_file(tok_file),
        truncated=truncated, padding_efficiency=round(padding_efficiency([len(e[0]) for e in examples], request.seq_len), 6),
        topk=0 if packed.topk_ids is None else int(packed.topk_ids.shape[-1]), quarantined=len(quarantine),
        created_by=created_by,
    )
    save_pack(packed, manifest, folder)
    save_tokenizer_files(tok, folder)  # with the PAD the blocks use, if one was added
    if quarantine:
        (folder / "quarantine.jsonl").write_text("".join(json.dumps(q) + "\n" for q in quarantine))
    return manifest


def encode_row(tok, row: dict[str, Any], request: PackRequest) -> tuple:
    """(ids, labels) or, with a top-k column, (ids, labels, topk_ids, topk_logprobs); ValueError names the problem."""
    if row.get(request.messages_field) is not None:
        if request.topk_field:
            raise ValueError(f"field {request.messages_field!r}: chat rows cannot carry stored top-k logprobs (offline KD); "
                             "use logit or sequence KD for chat data")
        return encode_chat(tok, row[request.messages_field])
    for field in (request.prompt_field, request.answer_field):
        if not isinstance(row.get(field), str):
            raise ValueError(f"field {field!r}: expected a string, got {type(row.get(field)).__name__}")
    ids, labels = encode_example(tok, row[request.prompt_field], row[request.answer_field])
    if not request.topk_field:
        return ids, labels
    answer_len = sum(label != -100 for label in labels)
    top_ids, top_lps = _topk_rows(tok, row.get(request.topk_field), answer_len, request.topk_field)
    prompt_len = len(ids) - answer_len
    k = len(top_ids[0])
    return ids, labels, [[0] * k] * prompt_len + top_ids, [[0.0] * k] * prompt_len + top_lps


def _topk_rows(tok, steps: Any, answer_len: int, field: str) -> tuple[list[list[int]], list[list[float]]]:
    """Teacher top-k per answer token, in the materialize format ``[{token, logprob, top: [{token, logprob}]}]``."""
    if not isinstance(steps, list) or not steps:
        raise ValueError(f"field {field!r}: expected a list of per-token top-k logprobs, got {type(steps).__name__}")
    if len(steps) != answer_len:
        raise ValueError(f"field {field!r}: {len(steps)} teacher positions but the answer has {answer_len} tokens (with EOS)")
    k = max(len(step.get("top") or []) for step in steps)
    if k == 0:
        raise ValueError(f"field {field!r}: no top-k candidates stored (materialize with --top-logprobs K)")
    ids, lps = [], []
    for position, step in enumerate(steps):
        row_ids, row_lps = [], []
        for cand in step.get("top") or []:
            token_id = tok.convert_tokens_to_ids(cand["token"])
            token_id = None if token_id == tok.unk_token_id and cand["token"] != tok.unk_token else token_id
            if token_id is None:
                raise ValueError(f"field {field!r} position {position}: token {cand['token']!r} is not in the tokenizer")
            row_ids.append(token_id)
            row_lps.append(float(cand["logprob"]))
        pad = k - len(row_ids)
        ids.append(row_ids + [tok.eos_token_id] * pad)
        lps.append(row_lps + [MISSING_LOGPROB] * pad)
    return ids, lps


def fetch_pack(lab: Lab, pid: str) -> Path:
    """A verified local copy of durable ``packs/<id>`` in scratch."""
    store = lab.durable()
    prefix = f"packs/{pid}"
    if not store.exists(f"{prefix}/_files.json"):
        known = sorted({p.split("/")[1] for p in store.list("packs") if p.count("/") >= 2})
        raise FileNotFoundError(f"no pack {pid!r} in {store.location('packs')}; known packs: {known or 'none'} "
                                "(make one with `nexa pack --dataset ID --tokenizer PATH --seq-len N`)")
    return store.fetch_dir(prefix, lab.scratch / "packs" / pid)  # every file hash-checked on the way


def _dir_ref(store, prefix: str, pid: str) -> ArtifactRef:
    return ArtifactRef(kind="pack", ref=f"pack:{pid}", path=store.location(prefix), sha256=store.hash_of(f"{prefix}/_files.json"))


def _tokenizer_file(path: Path) -> Path:
    path = Path(path)
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.exists():
        raise FileNotFoundError(f"no tokenizer.json at {file} (data.tokenizer / --tokenizer)")
    return file
