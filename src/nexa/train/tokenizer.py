"""Tokenizers: the model's own (any Hugging Face tokenizer folder) and the golden demo's char tokenizer.

Every special id the lab uses (BOS to start, EOS to stop, PAD to fill blocks) is read from the
tokenizer itself, never assumed: a real tokenizer's EOS may be ``<|im_end|>`` at id 151645 and id 2
may mean anything. A tokenizer folder must declare its special tokens (``tokenizer_config.json``, what
``save_pretrained`` writes); one without an EOS is refused, and one without a PAD gets a new
``<|pad|>`` token appended after every existing id, so no existing id changes meaning.

The char tokenizer keeps digits separate, which is what lets tiny models learn exact numeric answers;
:func:`save_char_tokenizer` writes it with ``<s>``/``</s>``/``<pad>``/``<unk>`` declared so
``AutoTokenizer`` reads them like any other.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

CHAR_SPECIALS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]
ADDED_PAD = "<|pad|>"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "chat_template.json", "added_tokens.json", "tokenizer.model", "vocab.json", "merges.txt")


class TokenizerError(ValueError):
    """A tokenizer the lab cannot use safely (missing, or without an EOS); the message names the fix."""


@dataclass(frozen=True)
class SpecialIds:
    """The tokenizer's own special ids, as a model config wants them."""

    bos_token_id: int | None
    eos_token_id: int
    pad_token_id: int

    def as_config(self) -> dict[str, int | None]:
        return {"bos_token_id": self.bos_token_id, "eos_token_id": self.eos_token_id, "pad_token_id": self.pad_token_id}


def train_char_tokenizer(texts: Iterable[str]) -> Tokenizer:
    """A deterministic char vocabulary: special tokens first, then characters by frequency."""
    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    trainer = trainers.WordLevelTrainer(special_tokens=SPECIAL_TOKENS, min_frequency=1, show_progress=False)
    tokenizer.train_from_iterator(sorted(texts), trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tokenizer.token_to_id("<s>"))])
    return tokenizer


def save_char_tokenizer(tokenizer: Tokenizer, folder: str | Path) -> Path:
    """tokenizer.json + tokenizer_config.json declaring the char tokenizer's special tokens; returns tokenizer.json."""
    from transformers import PreTrainedTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, **CHAR_SPECIALS).save_pretrained(str(folder))
    return folder / "tokenizer.json"


def char_special_ids(tokenizer: Tokenizer) -> SpecialIds:
    """The ids the char tokenizer gave its declared special tokens."""
    ids = {name: tokenizer.token_to_id(token) for name, token in CHAR_SPECIALS.items()}
    return SpecialIds(bos_token_id=ids["bos_token"], eos_token_id=ids["eos_token"], pad_token_id=ids["pad_token"])


def load_tokenizer(path: str | Path) -> Tokenizer:
    """The raw ``tokenizers`` object of a tokenizer.json (file or folder)."""
    path = Path(path)
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.exists():
        raise FileNotFoundError(f"no tokenizer.json at {file}")
    return Tokenizer.from_file(str(file))


def tokenizer_folder(path: str | Path) -> Path:
    path = Path(path)
    return path if path.is_dir() else path.parent


def load_hf_tokenizer(path: str | Path) -> "PreTrainedTokenizerBase":
    """The model's own tokenizer through ``AutoTokenizer`` (local files only), with an EOS and a PAD.

    ``path`` is a tokenizer/model folder or a tokenizer.json inside one.
    """
    from transformers import AutoTokenizer

    folder = tokenizer_folder(path)
    if not any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer.model", "vocab.json")):
        raise TokenizerError(f"{folder} has no tokenizer (tokenizer.json); save the model's tokenizer beside it: "
                             "tokenizer.save_pretrained(folder)")
    if not (folder / "tokenizer_config.json").is_file():
        raise TokenizerError(f"{folder}: tokenizer.json without tokenizer_config.json declares no special tokens; save it with "
                             "PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=...).save_pretrained(folder) "
                             "(nexa.train.tokenizer.save_char_tokenizer for the char tokenizer)")
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    if tokenizer.eos_token_id is None:
        raise TokenizerError(f"{folder}: the tokenizer has no EOS token, so a model could never learn to stop; "
                             "set eos_token in tokenizer_config.json (tokenizer.eos_token = '...'; tokenizer.save_pretrained(folder))")
    ensure_pad(tokenizer)
    return tokenizer


def ensure_pad(tokenizer: "PreTrainedTokenizerBase") -> None:
    """Give a tokenizer without a PAD a new ``<|pad|>`` token after every existing id (meanings unchanged)."""
    if tokenizer.pad_token_id is None:
        tokenizer.add_special_tokens({"pad_token": ADDED_PAD})


def special_ids(tokenizer: "PreTrainedTokenizerBase") -> SpecialIds:
    return SpecialIds(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id)


def save_tokenizer_files(tokenizer: "PreTrainedTokenizerBase", folder: str | Path) -> Path:
    """Write the tokenizer (with any added PAD) so AutoTokenizer reads it back; returns tokenizer.json."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(folder))
    return folder / "tokenizer.json"


def copy_tokenizer_files(source: str | Path, target: str | Path) -> None:
    """Copy every tokenizer file of ``source`` (a folder or its tokenizer.json) into ``target``."""
    folder, target = tokenizer_folder(source), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (folder / name).is_file():
            shutil.copyfile(folder / name, target / name)


def encode_example(tokenizer: "PreTrainedTokenizerBase", prompt: str, answer: str) -> tuple[list[int], list[int]]:
    """prompt (with the tokenizer's own start tokens) answer EOS, with the loss only on the answer and EOS."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return prompt_ids + answer_ids, [-100] * len(prompt_ids) + answer_ids
