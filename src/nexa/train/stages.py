"""Pipeline stages of the training layer: tokenizer, teacher SFT, packing, logit-KD student, SFT baseline."""

from __future__ import annotations

import shutil
from pathlib import Path

from transformers import LlamaForCausalLM

from nexa.ledger.datasets import read_dataset_rows, read_split
from nexa.ledger.hashing import sha256_file
from nexa.ledger.listings import read_listing, read_paired
from nexa.train.config import TrainConfig, stage_train_config
from nexa.train.models import build_model, count_parameters
from nexa.train.pack import PackManifest, efficiency, load_pack, pack_examples, padding_efficiency, save_pack
from nexa.train.tokenizer import (copy_tokenizer_files, encode_example, load_hf_tokenizer, save_char_tokenizer,
                                  save_tokenizer_files, special_ids, train_char_tokenizer)
from nexa.train.trainer import train_on_pack


def split_rows(ctx, data_stage: str, split: str) -> list[dict]:
    return read_split(ctx.lab, ctx.input(data_stage) / "datasets.json", split)


def tokenizer(ctx, data: str = "data") -> dict:
    """Train a char-level tokenizer on every prompt and answer of every split."""
    texts = [r["prompt"] + r["answer"] for split in ("train", "eval") for r in split_rows(ctx, data, split)]
    tok = train_char_tokenizer(texts)
    save_char_tokenizer(tok, ctx.out)  # special tokens declared, so AutoTokenizer reads them
    return {"vocab_size": tok.get_vocab_size()}


def teacher(ctx, size: dict, optim: dict, seq_len: int = 128, data: str = "data", tokenizer: str = "tokenizer") -> dict:
    """SFT a teacher from a config on the ground-truth training split."""
    rows = split_rows(ctx, data, "train")
    return _train(ctx, rows, _sft_config(ctx, "teacher", size, optim, seq_len, data, tokenizer), tokenizer, "teacher SFT")


def pack(ctx, seq_len: int = 128, source: str = "distill", tokenizer: str = "tokenizer") -> dict:
    """Tokenize and pack a paired (prompt, answer) dataset into fixed-length blocks."""
    paired = read_paired(ctx.input(source) / "dataset.json")
    rows = read_dataset_rows(ctx.lab, paired.ref)
    manifest = _pack_rows(ctx, rows, seq_len, tokenizer, ctx.out, sources=[paired.ref])
    return manifest.model_dump()


def student_kd(ctx, size: dict, optim: dict, kd: dict, max_param_ratio: float = 0.25,
               pack: str = "pack", teacher: str = "teacher") -> dict:
    """Distill the teacher's logits into a student at most ``max_param_ratio`` of its size."""
    packed, pack_manifest = load_pack(ctx.input(pack))
    config = stage_train_config("student_kd", ctx.seed, size, optim, pack_manifest.seq_len, pack_manifest.sources,
                                ctx.input(pack) / "tokenizer.json", kd=kd, teacher=ctx.input(teacher) / "model")
    teacher_model = LlamaForCausalLM.from_pretrained(config.kd.teacher)
    vocab = teacher_model.config.vocab_size
    student = build_model(config.model.size, vocab, ctx.seed, special_ids(load_hf_tokenizer(ctx.input(pack))))
    ratio = count_parameters(student) / count_parameters(teacher_model)
    if ratio > max_param_ratio:
        raise ValueError(f"student has {ratio:.2f}× the teacher's parameters; the limit is {max_param_ratio} (shrink `size`)")
    stats = train_on_pack(student, packed, config.optim, ctx.out / "trainer", ctx.seed, "student KD",
                          teacher=teacher_model, kd=config.kd)
    _save_model(ctx, student, ctx.input(pack) / "tokenizer.json")
    ctx.run.update(teacher_model=f"teacher:{ctx.summary_of(teacher)['model_sha256'][:12]}", tokens_trained=stats["tokens_trained"])
    return _summary(ctx, student, stats, param_ratio=ratio, pack_efficiency=pack_manifest.efficiency)


def baseline(ctx, size: dict, optim: dict, seq_len: int = 128, data: str = "data", tokenizer: str = "tokenizer",
             labelled: int | None = None) -> dict:
    """A student-sized model trained by SFT on ground truth alone: what the teacher is measured against.

    With ``labelled``, only the first ``labelled`` training rows of each capability keep their answers:
    the small labelled set a student has when the teacher's answers on the other prompts are the only
    extra signal (SFT cannot use a prompt without its answer).
    """
    rows = labelled_rows(split_rows(ctx, data, "train"), labelled)
    return _train(ctx, rows, _sft_config(ctx, "baseline", size, optim, seq_len, data, tokenizer), tokenizer, "baseline SFT")


# -- shared by the stages above -------------------------------------------------------------------
def labelled_rows(rows: list[dict], per_capability: int | None) -> list[dict]:
    """The first ``per_capability`` rows of each capability (all rows when None), in their original order."""
    if per_capability is None:
        return rows
    if per_capability < 1:
        raise ValueError(f"labelled must be at least 1 row per capability, got {per_capability}")
    seen: dict[str, int] = {}
    kept = []
    for row in rows:
        seen[row["capability"]] = seen.get(row["capability"], 0) + 1
        if seen[row["capability"]] <= per_capability:
            kept.append(row)
    return kept


def _sft_config(ctx, stage: str, size: dict, optim: dict, seq_len: int, data: str, tokenizer_stage: str) -> TrainConfig:
    """An SFT stage's validated config: the data stage's datasets (train split) and the tokenizer stage's tokenizer."""
    refs = [entry.ref for _, entry in sorted(read_listing(ctx.input(data) / "datasets.json").capabilities.items())]
    return stage_train_config(stage, ctx.seed, size, optim, seq_len, refs, ctx.input(tokenizer_stage) / "tokenizer.json")


def _train(ctx, rows, config: TrainConfig, tokenizer_stage: str, description: str) -> dict:
    pack_dir = ctx.out / "pack"
    pack_manifest = _pack_rows(ctx, rows, config.data.seq_len, tokenizer_stage, pack_dir, sources=["train split"])
    packed, _ = load_pack(pack_dir)
    tok = load_hf_tokenizer(ctx.input(tokenizer_stage))
    model = build_model(config.model.size, len(tok), ctx.seed, special_ids(tok))
    stats = train_on_pack(model, packed, config.optim, ctx.out / "trainer", ctx.seed, description)
    shutil.rmtree(pack_dir)
    _save_model(ctx, model, ctx.input(tokenizer_stage) / "tokenizer.json")
    ctx.run.update(tokens_trained=stats["tokens_trained"])
    return _summary(ctx, model, stats, pack_efficiency=pack_manifest.efficiency)


def _pack_rows(ctx, rows, seq_len, tokenizer_stage, folder: Path, sources: list[str]) -> PackManifest:
    tok_path = ctx.input(tokenizer_stage) / "tokenizer.json"
    tok = load_hf_tokenizer(tok_path)
    examples = [encode_example(tok, r["prompt"], r["answer"]) for r in rows]
    packed, truncated = pack_examples(examples, seq_len, tok.pad_token_id)
    manifest = PackManifest(
        seq_len=seq_len, samples=len(examples), blocks=len(packed), tokens=int(packed.input_ids.numel()),
        efficiency=round(efficiency(packed), 6), sources=sources, tokenizer_sha256=sha256_file(tok_path), truncated=truncated,
        padding_efficiency=round(padding_efficiency([len(ids) for ids, _ in examples], seq_len), 6),
    )
    save_pack(packed, manifest, folder)
    save_tokenizer_files(tok, folder)
    return manifest


def _save_model(ctx, model, tokenizer_file: Path) -> None:
    shutil.rmtree(ctx.out / "trainer", ignore_errors=True)
    model.save_pretrained(ctx.out / "model", safe_serialization=True)
    copy_tokenizer_files(tokenizer_file, ctx.out / "model")


def _summary(ctx, model, stats: dict, **extra) -> dict:
    return {
        "parameters": count_parameters(model),
        "model_sha256": sha256_file(ctx.out / "model" / "model.safetensors"),
        **{k: v for k, v in stats.items() if k != "loss_curve"},
        "loss_curve": stats["loss_curve"],
        **extra,
    }
