"""Tiny random-init models of every supported family, each with its own locally trained BPE tokenizer.

No network: the BPE vocabulary is trained here with ``tokenizers`` and the models are built from
``transformers`` configs. Special ids are deliberately not 0/1/2: the EOS of each family sits at the
end of the vocabulary, and id 2 is an ordinary reserved token, which is exactly what a model that
assumed ``</s> = 2`` would get wrong. Some families have no PAD (the lab must add one).
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

FAMILIES = ("llama", "qwen2", "mistral", "gemma")

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
LLAMA3 = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
          "{{ m['content'] }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}"
          "<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
GEMMA = ("{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
         "{{ m['content'] }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
MISTRAL = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'assistant' %}{{ m['content'] }}{{ eos_token }}"
           "{% else %}[INST] {{ m['content'] }} [/INST]{% endif %}{% endfor %}")

# per family: special tokens appended after training (so their ids are high), which is BOS/EOS/PAD, the template
SPECIALS = {
    "llama": {"added": ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
              "bos": "<|begin_of_text|>", "eos": "<|eot_id|>", "pad": None, "template": LLAMA3},
    "qwen2": {"added": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
              "bos": None, "eos": "<|im_end|>", "pad": "<|endoftext|>", "template": CHATML},
    "mistral": {"added": ["<s>", "</s>", "[INST]", "[/INST]"],
                "bos": "<s>", "eos": "</s>", "pad": None, "template": MISTRAL},
    "gemma": {"added": ["<pad>", "<bos>", "<start_of_turn>", "<end_of_turn>", "<eos>"],
              "bos": "<bos>", "eos": "<eos>", "pad": "<pad>", "template": GEMMA},
}

CORPUS = [f"max({a},{b})={max(a, b)}" for a in range(0, 100, 7) for b in range(3, 100, 11)] + [
    "Convert 7 km to m: 7000", "How many atoms in H2O? 3", "The quick brown fox jumps over the lazy dog.",
    "user assistant system tool", "What is the answer? It is 42.",
]


def bpe_tokenizer(family: str, vocab_size: int = 320, corpus: list[str] | None = None) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on ``corpus`` with the family's special tokens and chat template."""
    spec = SPECIALS[family]
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|reserved_0|>", "<|reserved_1|>", "<|reserved_2|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    raw.train_from_iterator(corpus or CORPUS, trainer)
    raw.add_special_tokens(spec["added"])
    if spec["bos"]:
        raw.post_processor = processors.TemplateProcessing(single=f"{spec['bos']} $A",
                                                           special_tokens=[(spec["bos"], raw.token_to_id(spec["bos"]))])
    else:
        raw.post_processor = processors.ByteLevel(trim_offsets=False)
    names = {k: spec[k] for k in ("bos", "eos", "pad") if spec[k]}
    return PreTrainedTokenizerFast(tokenizer_object=raw, chat_template=spec["template"],
                                   **{f"{k}_token": v for k, v in names.items()})


def tiny_config(family: str, tokenizer: PreTrainedTokenizerFast, hidden: int = 32, layers: int = 2, **overrides):
    """A transformers config of ``family`` sized for tests, with the tokenizer's special ids."""
    params = dict(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                  pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    if family == "gemma":
        params.update(head_dim=hidden // 4, hidden_activation="gelu_pytorch_tanh")
    if family == "mistral":
        params.update(sliding_window=None)
    params.update(overrides)
    return AutoConfig.for_model(family, **params)


def make_family_model(family: str, folder: Path, seed: int = 42, **overrides) -> Path:
    """A random-init model of ``family`` + its BPE tokenizer saved with save_pretrained into ``folder``."""
    tokenizer = bpe_tokenizer(family)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(family, tokenizer, **overrides))
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return Path(folder)


def padded_family_model(family: str, folder: Path, seed: int = 42, **overrides) -> Path:
    """``make_family_model`` given a PAD the way ``nexa train`` gives one (appended ``<|pad|>``, embeddings grown)."""
    from nexa.train.build import fit_to_tokenizer
    from nexa.train.tokenizer import load_hf_tokenizer

    make_family_model(family, folder, seed, **overrides)
    tokenizer = load_hf_tokenizer(folder)
    model = fit_to_tokenizer(AutoModelForCausalLM.from_pretrained(folder), tokenizer, str(folder))
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return Path(folder)


def niwt_stages(teacher: Path, train_rows: int, eval_rows: int, profile: dict, student: dict, distill: dict,
                capabilities: tuple[str, ...] = ("reasoning",)) -> list[dict]:
    """A NIWT pipeline around a local HF teacher of any family: data, materialized answers, registry, router,
    profile, synthesis (student in the teacher's family), anchored distillation and its gate."""
    return [
        {"name": "data", "uses": "nexa.data.stages:capability_datasets",
         "with": {"capabilities": {c: {"train": train_rows} for c in capabilities}, "eval_rows": eval_rows, "hypotheses": 0}},
        {"name": "teacher", "uses": "nexa.teachers.stages:local_checkpoint", "with": {"path": str(teacher)}},
        {"name": "distill", "uses": "nexa.teachers.stages:materialize_local", "needs": ["teacher", "data"]},
        {"name": "teacher_registry", "uses": "nexa.niwt.stages:teacher_registry",
         "with": {"teachers": [{"ModelName": "family-teacher", "Parameters": "0.1M", "Category": "text",
                                "BestFeature": ";".join(capabilities), "RetainFraction": "0.5"}]}},
        {"name": "router", "uses": "nexa.niwt.stages:router", "needs": ["data"], "with": {"epochs": 30}},
        {"name": "profile", "uses": "nexa.niwt.stages:profile", "needs": ["teacher", "distill", "data", "teacher_registry"],
         "with": {"teacher_name": "family-teacher", "config": profile}},
        {"name": "synthesize", "uses": "nexa.niwt.stages:synthesize", "needs": ["teacher", "profile"], "with": {"arch": student}},
        {"name": "student_niwt", "uses": "nexa.niwt.stages:student_niwt",
         "needs": ["profile", "synthesize", "distill", "data", "router"], "with": {"config": distill, "max_attempts": 1}},
    ]
