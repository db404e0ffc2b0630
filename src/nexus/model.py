"""``NexusModel``: a verified bundle in memory, with routing, adapters, batched and streaming generation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from tokenizers import Tokenizer

from nexus.chat import check_chat_template
from nexus.errors import BundleError, SafetyError
from nexus.families import is_family, load_family_decoder
from nexus.gate import UncertaintyGate, escalate, sequence_confidence, step_confidence
from nexus.files import backbone_weights, check_integrity, read_manifest, read_tensors
from nexus.llama import KVCache, LlamaDecoder, LlamaSpec
from nexus.router import Router

UNCENSORED = "uncensored"


@dataclass(frozen=True)
class Generation:
    """One completion and what it cost, in the units an OpenAI-style API reports."""

    text: str
    capability: str | None
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (EOS or a stop string) or "length"
    eos: bool = False  # the model emitted its end-of-sequence token (not counted in completion_tokens)
    confidence: float | None = None  # calibrated confidence (nexus.gate); None without a gate
    abstained: bool = False  # the gate judged the student unsure: the text is its guess, or the fallback's answer
    escalated: bool = False  # the text came from the gate's fallback endpoint


@dataclass(frozen=True)
class TokenScore:
    """One position of a scored sequence: its token's log-probability and the ``top`` most likely tokens."""

    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...]


Prompt = str | list[int]  # text, or token ids used as they are (no special tokens added)


class NexusModel:
    """A student bundle ready to generate; build one with :meth:`load`."""

    def __init__(self, path: Path, manifest: dict, decoder: LlamaDecoder, tokenizer: Tokenizer,
                 router: Router | None, device: torch.device):
        self.path, self.manifest, self.decoder, self.tokenizer = path, manifest, decoder, tokenizer
        self.router, self.device = router, device
        self.spec: LlamaSpec = decoder.spec
        self.uncensored_allowed = bool((manifest.get("safety") or {}).get("uncensored", False))
        self.gate: UncertaintyGate | None = UncertaintyGate.from_manifest(manifest)
        self.chat_template = check_chat_template(path / "tokenizer", tokenizer)

    # ----------------------------------------------------------------- loading
    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", dtype: torch.dtype | None = None,
             verify: bool = True) -> NexusModel:
        """Check every file against the manifest's SHA-256 (unless ``verify=False``), then load backbone,
        adapters, router and tokenizer. Only safetensors are read."""
        bundle = Path(path)
        manifest = read_manifest(bundle)
        if verify:
            check_integrity(bundle, manifest)
        torch_device = torch.device(device)
        if dtype is None:
            dtype = torch.bfloat16 if torch_device.type == "cuda" else torch.float32
        decoder = _load_decoder(bundle, dtype)
        _check_safety(bundle, manifest)
        for capability, relative in sorted((manifest.get("adapters") or {}).items()):
            _attach_adapter(decoder, bundle / relative, capability)
        decoder.to(torch_device).eval()
        router_file = bundle / "router" / "router.safetensors"
        router = Router.load(router_file) if router_file.is_file() else None
        tokenizer_file = bundle / "tokenizer" / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise BundleError(f"{tokenizer_file}: missing")
        return cls(bundle, manifest, decoder, Tokenizer.from_file(str(tokenizer_file)), router, torch_device)

    def chat_prompt(self, messages: list[dict]) -> str:
        """The whole conversation rendered with the bundle's chat template (the last user message without one)."""
        return self.chat_template.render(messages)

    @property
    def capabilities(self) -> list[str]:
        return list(self.manifest["capabilities"])

    def parameter_count(self) -> int:
        unique = {id(p): p.numel() for p in self.decoder.parameters()}
        return sum(unique.values())

    # ----------------------------------------------------------------- routing
    def route(self, prompt: Prompt, enable_uncensored: bool = False) -> str | None:
        """The capability whose adapter answers ``prompt``; the uncensored one only when enabled."""
        if not isinstance(prompt, str):
            prompt = self.tokenizer.decode(prompt, skip_special_tokens=True)
        allowed = {c for c in self.capabilities if c != UNCENSORED or (enable_uncensored and self.uncensored_allowed)}
        if self.router is not None:
            return self.router.choose(prompt, allowed)
        return next(iter(allowed)) if len(allowed) == 1 else None

    def _resolve(self, prompt: Prompt, capability: str | None, enable_uncensored: bool) -> str | None:
        if capability is None:
            return self.route(prompt, enable_uncensored)
        if capability not in self.capabilities:
            raise BundleError(f"capability {capability!r} is not in this bundle; it has {self.capabilities}")
        if capability == UNCENSORED:
            if not self.uncensored_allowed:
                raise SafetyError("this bundle was built in standard mode; it has no uncensored capability")
            if not enable_uncensored:
                raise SafetyError("the uncensored capability answers only with enable_uncensored=True")
        return capability

    # -------------------------------------------------------------- generation
    def generate(self, prompt: str, capability: str | None = None, max_new_tokens: int | None = None,
                 temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None,
                 enable_uncensored: bool = False, stop: list[str] | None = None) -> str:
        return self.complete_batch([prompt], capability, max_new_tokens, temperature, top_p, seed,
                                   enable_uncensored, stop)[0].text

    def generate_batch(self, prompts: list[str], capability: str | None = None, max_new_tokens: int | None = None,
                       temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None,
                       enable_uncensored: bool = False, stop: list[str] | None = None) -> list[str]:
        generations = self.complete_batch(prompts, capability, max_new_tokens, temperature, top_p, seed,
                                          enable_uncensored, stop)
        return [g.text for g in generations]

    def complete_batch(self, prompts: list[Prompt], capability: str | None = None, max_new_tokens: int | None = None,
                       temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None,
                       enable_uncensored: bool = False, stop: list[str] | None = None,
                       batch_size: int = 64) -> list[Generation]:
        """Completions in prompt order; prompts are grouped by their capability so each group runs with one adapter.

        A prompt is text (encoded with the tokenizer's special tokens, as in training) or a list of token ids
        used as given, as OpenAI's completions API takes them."""
        max_new_tokens = self._max_new_tokens(max_new_tokens)
        chosen = [self._resolve(p, capability, enable_uncensored) for p in prompts]
        results: list[Generation | None] = [None] * len(prompts)
        for group in sorted(set(chosen), key=lambda c: c or ""):
            indices = [i for i, c in enumerate(chosen) if c == group]
            for start in range(0, len(indices), batch_size):
                chunk = indices[start:start + batch_size]
                outputs = self._generate_group([prompts[i] for i in chunk], group, max_new_tokens, temperature, top_p, seed, stop)
                for index, output in zip(chunk, outputs):
                    results[index] = output
        return [r for r in results if r is not None]

    def stream(self, prompt: str, capability: str | None = None, max_new_tokens: int | None = None,
               temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None,
               enable_uncensored: bool = False) -> Iterator[str]:
        """Yield the completion piece by piece as tokens are produced; the pieces join to :meth:`generate`'s text."""
        for piece, _ in self.stream_scored(prompt, capability, max_new_tokens, temperature, top_p, seed, enable_uncensored):
            if piece:
                yield piece

    @torch.inference_mode()
    def stream_scored(self, prompt: str, capability: str | None = None, max_new_tokens: int | None = None,
                      temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None,
                      enable_uncensored: bool = False, top: int = 0) -> Iterator[tuple[str, TokenScore]]:
        """Per generated token (the end-of-sequence token included): the text it adds (may be "" while a
        character is incomplete) and its :class:`TokenScore` — the model's log-probability of it given everything
        before, with the ``top`` most likely alternatives, as :meth:`score` would give it. What streaming with
        ``logprobs`` sends."""
        chosen = self._resolve(prompt, capability, enable_uncensored)
        emitted, steps = "", []
        for ids in self._decode_steps([prompt], chosen, self._max_new_tokens(max_new_tokens), temperature, top_p, seed,
                                      step_logits=steps):
            logprobs = torch.log_softmax(steps[-1][0].float(), dim=-1)
            token = ids[0][-1] if len(ids[0]) == len(steps) else self.spec.eos_token_id
            best = logprobs.topk(min(top, logprobs.shape[-1])) if top > 0 else None
            score = TokenScore(token, float(logprobs[token]), tuple(zip(best.indices.tolist(), best.values.tolist()))
                               if best is not None else ())
            text = self.tokenizer.decode(ids[0], skip_special_tokens=True)
            piece = text[len(emitted):] if len(text) > len(emitted) and text.startswith(emitted) else ""
            emitted += piece
            yield piece, score

    @torch.inference_mode()
    def score(self, sequences: list[list[int]], capability: str | None = None, top: int = 0,
              enable_uncensored: bool = False, routed_on: list[Prompt] | None = None) -> list[list[TokenScore]]:
        """Log-probabilities of every token of each sequence given the tokens before it (positions 1..n-1),
        with the ``top`` most likely alternatives: what an OpenAI ``echo`` + ``logprobs`` request returns and
        what log-likelihood benchmarks sum. Sequences are grouped by capability like :meth:`complete_batch`;
        without one, the router picks it from ``routed_on`` (each sequence's prompt; default the sequence)."""
        if any(len(ids) == 0 for ids in sequences):
            raise ValueError("cannot score an empty token sequence")
        longest = max(len(ids) for ids in sequences)
        if longest > self.spec.max_position_embeddings:
            raise ValueError(f"a sequence of {longest} tokens exceeds the model's context of "
                             f"{self.spec.max_position_embeddings} tokens")
        chosen = [self._resolve(on, capability, enable_uncensored) for on in (routed_on or sequences)]
        results: list[list[TokenScore]] = [[] for _ in sequences]
        for group in sorted(set(chosen), key=lambda c: c or ""):
            indices = [i for i, c in enumerate(chosen) if c == group]
            for index, scores in zip(indices, self._score_group([sequences[i] for i in indices], group, top)):
                results[index] = scores
        return results

    def loglikelihood(self, pairs: list[tuple[str, str]], capability: str | None = None) -> list[tuple[float, bool]]:
        """Per (context, continuation): the summed log-probability of the continuation's tokens after the context
        and whether greedy decoding would have produced every one of them — what lm-eval's ``loglikelihood``
        requests (multiple choice) ask. The context is encoded as generation encodes a prompt, the continuation
        without special tokens; without ``capability`` the router picks the adapter from the context."""
        contexts = [self.tokenizer.encode(c).ids for c, _ in pairs]
        continuations = [self.tokenizer.encode(x, add_special_tokens=False).ids for _, x in pairs]
        if any(not ids for ids in continuations):
            raise ValueError("cannot score an empty continuation")
        scored = self.score([c + x for c, x in zip(contexts, continuations)], capability, top=1,
                            routed_on=[c for c, _ in pairs])
        results = []
        for scores, continuation in zip(scored, continuations):
            tail = scores[len(scores) - len(continuation):]
            results.append((sum(t.logprob for t in tail), all(t.top and t.top[0][0] == t.token_id for t in tail)))
        return results

    def _score_group(self, sequences: list[list[int]], capability: str | None, top: int) -> list[list[TokenScore]]:
        longest = max(len(ids) for ids in sequences)
        pad = self.spec.pad_token_id
        input_ids = torch.tensor([[pad] * (longest - len(ids)) + ids for ids in sequences], device=self.device)
        mask = torch.tensor([[0] * (longest - len(ids)) + [1] * len(ids) for ids in sequences], device=self.device,
                            dtype=torch.bool)
        self.decoder.set_active_adapter(capability)
        logprobs = torch.log_softmax(self.decoder(input_ids, mask).float(), dim=-1)
        out = []
        for row, ids in enumerate(sequences):
            start = longest - len(ids)
            rows = logprobs[row, start:longest - 1]  # row t predicts token t+1
            targets = torch.tensor(ids[1:], device=self.device)
            chosen = rows.gather(-1, targets[:, None]).squeeze(-1).tolist()
            best = rows.topk(min(top, rows.shape[-1]), dim=-1) if top > 0 else None
            out.append([TokenScore(token, value, tuple(zip(best.indices[t].tolist(), best.values[t].tolist())) if best
                                   is not None else ()) for t, (token, value) in enumerate(zip(ids[1:], chosen))])
        return out

    # ---------------------------------------------------------------- internals
    def _max_new_tokens(self, requested: int | None) -> int:
        value = requested if requested is not None else int((self.manifest.get("generation") or {}).get("max_new_tokens", 16))
        if value < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {value}")
        return value

    def _encode(self, prompts: list[str], max_new_tokens: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        encoded = [self.tokenizer.encode(p).ids if isinstance(p, str) else list(p) for p in prompts]
        if any(len(ids) == 0 for ids in encoded):
            raise ValueError("a prompt of token ids must hold at least one token")
        longest = max(len(ids) for ids in encoded)
        if longest + max_new_tokens > self.spec.max_position_embeddings:
            raise ValueError(f"prompt of {longest} tokens + max_new_tokens {max_new_tokens} exceeds the model's "
                             f"context of {self.spec.max_position_embeddings} tokens")
        pad = self.spec.pad_token_id
        input_ids = torch.tensor([[pad] * (longest - len(ids)) + ids for ids in encoded], device=self.device)
        mask = torch.tensor([[0] * (longest - len(ids)) + [1] * len(ids) for ids in encoded], device=self.device, dtype=torch.bool)
        return input_ids, mask, [len(ids) for ids in encoded]

    def _decode_steps(self, prompts, capability, max_new_tokens, temperature, top_p, seed,
                      confidences: list | None = None, step_logits: list | None = None) -> Iterator[list[list[int]]]:
        """Yields the generated ids of every prompt after each step; a finished prompt stops growing at EOS.
        With a gate, each step's calibrated max-probability per prompt is appended to ``confidences``; each step's
        logits (the distribution the step's token was picked from) go to ``step_logits`` when given."""
        input_ids, mask, _ = self._encode(prompts, max_new_tokens)
        generator = torch.Generator(device=self.device).manual_seed(seed if seed is not None else 42)
        self.decoder.set_active_adapter(capability)
        cache = self.decoder.new_cache() if hasattr(self.decoder, "new_cache") else KVCache(self.spec.num_hidden_layers)
        generated: list[list[int]] = [[] for _ in prompts]
        finished = torch.zeros(len(prompts), dtype=torch.bool, device=self.device)
        logits = self.decoder(input_ids, mask, cache)[:, -1]
        for _ in range(max_new_tokens):
            if confidences is not None and self.gate is not None:
                confidences.append(step_confidence(logits, self.gate.temperature))
            if step_logits is not None:
                step_logits.append(logits)
            next_ids = _pick(logits.float(), temperature, top_p, generator)
            for row, token in enumerate(next_ids.tolist()):
                if not finished[row] and token != self.spec.eos_token_id:
                    generated[row].append(token)
            finished |= next_ids == self.spec.eos_token_id
            yield generated
            if bool(finished.all()):
                return
            step_mask = torch.ones(len(prompts), 1, dtype=torch.bool, device=self.device)
            logits = self.decoder(next_ids[:, None], step_mask, cache)[:, -1]

    def _generate_group(self, prompts, capability, max_new_tokens, temperature, top_p, seed, stop) -> list[Generation]:
        _, _, prompt_lengths = self._encode(prompts, max_new_tokens)
        final: list[list[int]] = [[] for _ in prompts]
        steps: list = []
        for final in self._decode_steps(prompts, capability, max_new_tokens, temperature, top_p, seed, steps):
            pass
        outputs = []
        for row, (ids, prompt_length) in enumerate(zip(final, prompt_lengths)):
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            reason = "stop" if len(ids) < max_new_tokens else "length"
            eos = len(ids) < max_new_tokens
            for marker in stop or []:
                if marker and marker in text:
                    text, reason, eos = text[: text.index(marker)], "stop", False
            outputs.append(self._gated(Generation(text, capability, prompt_length, len(ids), reason, eos),
                                       prompts[row], steps, row, max_new_tokens))
        return outputs

    def _gated(self, generation: Generation, prompt: str, steps: list, row: int, max_new_tokens: int) -> Generation:
        """Attach the gate's confidence and verdict; an abstained prompt goes to the fallback endpoint if one is set."""
        if self.gate is None:
            return generation
        produced = generation.completion_tokens + (generation.completion_tokens < max_new_tokens)  # + the EOS step
        confidence = sequence_confidence(steps, row, produced)
        abstained = self.gate.abstains(confidence)
        if abstained and self.gate.fallback_url:
            text = escalate(self.gate.fallback_url, prompt, max_new_tokens)
            return replace(generation, text=text, confidence=confidence, abstained=True, escalated=True)
        return replace(generation, confidence=confidence, abstained=abstained)


def _pick(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator) -> torch.Tensor:
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        keep = sorted_probs.cumsum(-1) - sorted_probs < top_p
        sorted_probs = sorted_probs * keep
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _load_decoder(bundle: Path, dtype: torch.dtype) -> LlamaDecoder:
    config_file = bundle / "backbone" / "config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
        if is_family(config):
            return load_family_decoder(bundle, config, dtype)
        spec = LlamaSpec.from_json(config)
    except (OSError, json.JSONDecodeError, KeyError) as error:
        raise BundleError(f"{config_file}: {error.args[0] if isinstance(error, KeyError) else error}") from error
    decoder = LlamaDecoder(spec)
    weights = backbone_weights(bundle)
    tensors, _ = read_tensors(weights)
    expected = set(decoder.state_dict())
    if spec.tie_word_embeddings:
        expected.discard("lm_head.weight")
        tensors.pop("lm_head.weight", None)
    missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
    if missing or unexpected:
        raise BundleError(f"{weights}: missing tensors {missing[:5]}, "
                          f"unexpected tensors {unexpected[:5]}")
    decoder.load_state_dict(tensors, strict=False)
    if spec.tie_word_embeddings:
        decoder.lm_head.weight = decoder.model.embed_tokens.weight
    return decoder.to(dtype)


def _check_safety(bundle: Path, manifest: dict) -> None:
    uncensored_listed = UNCENSORED in manifest["capabilities"] or UNCENSORED in (manifest.get("adapters") or {})
    if uncensored_listed and not (manifest.get("safety") or {}).get("uncensored", False):
        raise SafetyError(f"{bundle / 'manifest.json'}: lists an uncensored capability but the bundle was not built "
                          "with the explicit opt-in (safety.uncensored is false)")


PEFT_PREFIX = "base_model.model."


def read_adapter(path: Path) -> tuple[dict[str, torch.Tensor], float]:
    """``{target.lora_A/B: tensor}`` and the LoRA scaling (alpha / rank) of a PEFT adapter folder
    (adapter_config.json + adapter_model.safetensors) or of a single nexus adapter file (rank/alpha metadata)."""
    if path.is_dir():
        config_file, file = path / "adapter_config.json", path / "adapter_model.safetensors"
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
            rank, alpha = int(config["r"]), float(config["lora_alpha"])
        except (OSError, json.JSONDecodeError, KeyError, ValueError) as error:
            raise BundleError(f"{config_file}: a PEFT adapter config with numeric 'r' and 'lora_alpha' is needed: {error}") from error
        if config.get("peft_type", "LORA") != "LORA" or config.get("use_dora") or config.get("use_rslora"):
            raise BundleError(f"{config_file}: only plain LoRA adapters are supported (not DoRA/rsLoRA/{config.get('peft_type')})")
        raw, _ = read_tensors(file)
        tensors = {name.removeprefix(PEFT_PREFIX).replace(".lora_A.weight", ".lora_A").replace(".lora_B.weight", ".lora_B"): t
                   for name, t in raw.items()}
        return tensors, alpha / rank
    tensors, metadata = read_tensors(path)
    try:
        rank, alpha = int(metadata["rank"]), float(metadata["alpha"])
    except (KeyError, ValueError) as error:
        raise BundleError(f"{path}: adapter metadata needs numeric 'rank' and 'alpha': {error}") from error
    return tensors, alpha / rank


def _attach_adapter(decoder: LlamaDecoder, file: Path, capability: str) -> None:
    if not file.exists():
        raise BundleError(f"{file}: adapter for {capability!r} is listed in the manifest but missing")
    tensors, scaling = read_adapter(file)
    modules = decoder.adaptable_modules()
    targets = sorted({name.rsplit(".", 1)[0] for name in tensors})
    for target in targets:
        if target not in modules:
            raise BundleError(f"{file}: adapter targets {target!r}, which is not a linear layer of the backbone")
        lora_a, lora_b = tensors.get(f"{target}.lora_A"), tensors.get(f"{target}.lora_B")
        if lora_a is None or lora_b is None:
            raise BundleError(f"{file}: {target} needs both lora_A and lora_B")
        try:
            modules[target].add_adapter(capability, lora_a, lora_b, scaling)
        except ValueError as error:
            raise BundleError(f"{file}: {error}") from error
