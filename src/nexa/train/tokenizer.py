"""Tokenizers trained locally (no hub): a character-level vocabulary with <s>/</s>/<pad>/<unk>.

Characters keep digits separate, which is what lets tiny models learn exact numeric answers; the
post-processor prepends <s> and the decoder fuses characters back without spaces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3


def train_char_tokenizer(texts: Iterable[str]) -> Tokenizer:
    """A deterministic char vocabulary: special tokens first, then characters by frequency."""
    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    trainer = trainers.WordLevelTrainer(special_tokens=SPECIAL_TOKENS, min_frequency=1, show_progress=False)
    tokenizer.train_from_iterator(sorted(texts), trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", BOS_ID)])
    return tokenizer


def load_tokenizer(path: str | Path) -> Tokenizer:
    path = Path(path)
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.exists():
        raise FileNotFoundError(f"no tokenizer.json at {file}")
    return Tokenizer.from_file(str(file))


def encode_example(tokenizer: Tokenizer, prompt: str, answer: str) -> tuple[list[int], list[int]]:
    """<s> prompt answer </s>, with the loss only on the answer and </s>."""
    prompt_ids = tokenizer.encode(prompt).ids
    answer_ids = tokenizer.encode(answer, add_special_tokens=False).ids + [EOS_ID]
    return prompt_ids + answer_ids, [-100] * len(prompt_ids) + answer_ids
