"""A teacher that is a local HF checkpoint: batched, left-padded generation with the KV cache.

The folder is what ``model.save_pretrained(dir)`` writes plus a ``tokenizer.json`` (and, when there
is one, ``tokenizer_config.json``). The teacher's identity is the hash of every file in the folder,
so retraining the teacher (new weights) misses the cache while moving the folder does not.
"""

from __future__ import annotations

import time
from itertools import groupby
from pathlib import Path
from typing import Sequence

import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from nexa.ledger.hashing import sha256_file, sha256_json
from nexa.teachers.errors import FatalTeacherError
from nexa.teachers.protocol import GenerationParams, TeacherRequest, TeacherResponse, TokenLogprob, TopLogprob


class LocalHFTeacher:
    """Greedy (or sampled) generation from an HF causal LM on this machine, ``batch_size`` prompts at a time."""

    bills_tokens = False

    def __init__(self, path: str | Path, batch_size: int = 32, device: str | None = None):
        self.path = Path(path)
        _check_checkpoint(self.path)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = AutoModelForCausalLM.from_pretrained(self.path).to(self.device).eval()
        self.tokenizer = _load_tokenizer(self.path, self.model.config)
        self.max_batch = batch_size
        self._id = f"local:{self.path.name}@{checkpoint_hash(self.path)[:16]}"

    def __repr__(self) -> str:
        return f"LocalHFTeacher({self._id!r})"

    @property
    def teacher_id(self) -> str:
        return self._id

    @property
    def model_name(self) -> str:
        return self._id

    def close(self) -> None:
        self.model = None

    def complete(self, requests: Sequence[TeacherRequest]) -> list[TeacherResponse]:
        """Answer in order; requests with different parameters are generated in separate batches."""
        out: list[TeacherResponse] = []
        for params, group in groupby(requests, key=lambda r: r.params):
            prompts = [self._prompt(r) for r in group]
            for start in range(0, len(prompts), self.max_batch):
                out.extend(self._generate(prompts[start : start + self.max_batch], params))
        return out

    def _prompt(self, request: TeacherRequest) -> str:
        """A single user prompt as is; a conversation through the model's own chat template."""
        if len(request.messages) == 1 and request.messages[0][0] == "user":
            return request.prompt_text()
        from nexa.train.chat import render_chat

        return render_chat(self.tokenizer, request.chat_messages(), add_generation_prompt=True)

    @torch.no_grad()
    def _generate(self, prompts: list[str], params: GenerationParams) -> list[TeacherResponse]:
        tok = self.tokenizer
        encoded = tok(prompts, padding=True, return_tensors="pt").to(self.device)
        width = encoded["input_ids"].shape[1]
        if params.seed is not None:
            torch.manual_seed(params.seed)
        began = time.perf_counter()
        try:
            out = self.model.generate(
                **encoded, max_new_tokens=params.max_tokens, do_sample=params.temperature > 0,
                temperature=params.temperature if params.temperature > 0 else None,
                top_p=params.top_p if params.temperature > 0 else None, use_cache=True,
                pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                return_dict_in_generate=True, output_logits=params.top_logprobs > 0,
            )
        except torch.OutOfMemoryError:
            raise FatalTeacherError(f"out of memory generating {len(prompts)} prompts at once on {self.device}; "
                                    "lower --batch-size") from None
        per_prompt_ms = (time.perf_counter() - began) * 1000 / len(prompts)
        new_tokens = out.sequences[:, width:].tolist()
        input_lengths = encoded["attention_mask"].sum(dim=1).tolist()
        responses = []
        for row, (tokens, n_in) in enumerate(zip(new_tokens, input_lengths)):
            kept, finish = _until_eos(tokens, tok.eos_token_id)
            text = _cut_at_stop(tok.decode(kept, skip_special_tokens=True), params.stop)
            n_out = len(kept) + (finish == "stop")
            logprobs = self._logprobs(out.logits, row, tokens[:n_out], params.top_logprobs) if params.top_logprobs else None
            responses.append(TeacherResponse(text=text, input_tokens=int(n_in), output_tokens=n_out,
                                             latency_ms=round(per_prompt_ms, 3), finish_reason=finish, logprobs=logprobs))
        return responses

    def _logprobs(self, logits: tuple[torch.Tensor, ...], row: int, tokens: list[int], k: int) -> list[TokenLogprob]:
        """Log-softmax of the raw logits at each generated position: the chosen token and the top ``k``."""
        result = []
        for step, token_id in enumerate(tokens):
            logp = torch.log_softmax(logits[step][row].float(), dim=-1)
            top = torch.topk(logp, k)
            result.append(TokenLogprob(
                token=self.tokenizer.decode([token_id]), logprob=float(logp[token_id]),
                top=[TopLogprob(token=self.tokenizer.decode([i]), logprob=float(v))
                     for v, i in zip(top.values.tolist(), top.indices.tolist())],
            ))
        return result


def checkpoint_hash(path: Path) -> str:
    """One hash over every file of the checkpoint folder (weights, config, tokenizer)."""
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return sha256_json({p.relative_to(path).as_posix(): sha256_file(p) for p in files})


def _check_checkpoint(path: Path) -> None:
    missing = [name for name in ("config.json", "tokenizer.json") if not (path / name).is_file()]
    has_weights = any(path.glob("*.safetensors")) or any(path.glob("*.bin"))
    if missing or not has_weights:
        what = missing + ([] if has_weights else ["*.safetensors weights"])
        raise FileNotFoundError(
            f"{path} is not a local teacher checkpoint: missing {', '.join(what)}. Expected a folder written by "
            "model.save_pretrained(dir) with the tokenizer's tokenizer.json beside it"
        )


def _load_tokenizer(path: Path, config) -> PreTrainedTokenizerFast:
    """The folder's tokenizer, left-padding; special tokens come from tokenizer_config.json or the model config."""
    if (path / "tokenizer_config.json").is_file():
        tok = PreTrainedTokenizerFast.from_pretrained(path)
    else:
        tok = PreTrainedTokenizerFast(tokenizer_file=str(path / "tokenizer.json"))
        specials = {"eos_token": config.eos_token_id, "pad_token": config.pad_token_id, "bos_token": config.bos_token_id}
        tok.add_special_tokens({name: tok.convert_ids_to_tokens(i) for name, i in specials.items() if i is not None})
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise ValueError(f"{path}: the tokenizer and model config name neither a pad nor an eos token; "
                             "set pad_token_id in config.json so prompts can be batched")
        tok.pad_token = tok.eos_token  # the usual choice for decoder-only models; the attention mask hides it
    tok.padding_side = "left"
    return tok


def _until_eos(tokens: list[int], eos: int | None) -> tuple[list[int], str]:
    if eos is not None and eos in tokens:
        return tokens[: tokens.index(eos)], "stop"
    return tokens, "length"


def _cut_at_stop(text: str, stops: tuple[str, ...]) -> str:
    cuts = [text.index(s) for s in stops if s in text]
    return text[: min(cuts)] if cuts else text
