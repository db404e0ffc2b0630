"""Distillation across vocabularies: Universal Logit Distillation (ULD; Boizard et al., 2024).

When teacher and student tokenize differently, their next-token distributions live on different
supports, so KL is undefined. ULD compares them through optimal transport with a uniform cost: the
closed form is the L1 distance between the two probability vectors sorted in decreasing order (the
shorter one padded with zeros). Positions are aligned per sample on the supervised (answer) tokens:
the k-th answer prediction of the student against the k-th of the teacher, truncated to the shorter.

The teacher needs its own token ids of the same text: :func:`teacher_view` decodes every packed
sample's unsupervised and supervised runs with the student's tokenizer and re-encodes them with the
teacher's, in the same blocks and order, the student's EOS becoming the teacher's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nexa.train.pack import Packed


def same_vocabulary(student_tokenizer, teacher_tokenizer) -> bool:
    return student_tokenizer.get_vocab() == teacher_tokenizer.get_vocab()


def _runs(ids: list[int], labels: list[int]) -> list[tuple[bool, list[int]]]:
    """Consecutive (supervised?, ids) runs of one sample; the label of token t says whether t is trained."""
    runs: list[tuple[bool, list[int]]] = []
    for token, label in zip(ids, labels):
        supervised = label != -100
        if runs and runs[-1][0] == supervised:
            runs[-1][1].append(token)
        else:
            runs.append((supervised, [token]))
    return runs


def _samples(packed: Packed, row: int) -> list[tuple[list[int], list[int]]]:
    """The (ids, labels) samples of one block, in order, without the padding tail."""
    ids, labels, positions = (t[row].tolist() for t in (packed.input_ids, packed.labels, packed.position_ids))
    starts = [i for i, p in enumerate(positions) if p == 0] + [len(ids)]
    samples = [(ids[a:b], labels[a:b]) for a, b in zip(starts, starts[1:])]
    return [s for s in samples if any(label != -100 for label in s[1])]  # the padding tail trains nothing


def reencode(sample: tuple[list[int], list[int]], student_tok, teacher_tok) -> tuple[list[int], list[int]]:
    """One sample's text in the teacher's tokens, with the same parts supervised."""
    ids, labels = [], []
    for index, (supervised, run) in enumerate(_runs(*sample)):
        ends_with_eos = supervised and run[-1] == student_tok.eos_token_id
        text = student_tok.decode(run, skip_special_tokens=True)
        encoded = teacher_tok(text, add_special_tokens=index == 0)["input_ids"] + ([teacher_tok.eos_token_id] if ends_with_eos else [])
        ids += encoded
        labels += encoded if supervised else [-100] * len(encoded)
    return ids, labels


def teacher_view(packed: Packed, student_tok, teacher_tok) -> dict[str, torch.Tensor]:
    """Teacher-tokenized blocks holding the same samples in the same order (padded to the longest block)."""
    blocks = []
    for row in range(len(packed)):
        ids, labels, positions = [], [], []
        for sample in _samples(packed, row):
            t_ids, t_labels = reencode(sample, student_tok, teacher_tok)
            ids, labels, positions = ids + t_ids, labels + t_labels, positions + list(range(len(t_ids)))
        blocks.append((ids, labels, positions))
    length = max(len(b[0]) for b in blocks) + 1
    pad = teacher_tok.pad_token_id

    def fill(values, value, tail=None):
        return values + (tail if tail is not None else [value] * (length - len(values)))

    return {"teacher_input_ids": torch.tensor([fill(b[0], pad) for b in blocks]),
            "teacher_labels": torch.tensor([fill(b[1], -100) for b in blocks]),
            "teacher_position_ids": torch.tensor([fill(b[2], 0, list(range(length - len(b[2])))) for b in blocks])}


def _answer_predictions(logits: torch.Tensor, labels: torch.Tensor, positions: torch.Tensor) -> list[list[torch.Tensor]]:
    """Per block row, per sample: the logits that predict each supervised token, in order."""
    out = []
    for row in range(logits.shape[0]):
        segment = torch.cumsum(positions[row] == 0, 0)[1:]  # the sample each predicted token belongs to
        trained = labels[row, 1:] != -100
        preds = logits[row, :-1]
        out.append([preds[trained & (segment == s)] for s in segment[trained].unique(sorted=True).tolist()])
    return out


def uld_loss(student_logits, student_labels, student_positions, teacher_logits, teacher_labels, teacher_positions,
             temperature: float = 1.0) -> torch.Tensor:
    """Mean over aligned answer positions of || sort(p_student) - sort(p_teacher) ||_1 (Wasserstein-1, uniform cost)."""
    student = _answer_predictions(student_logits, student_labels, student_positions)
    teacher = _answer_predictions(teacher_logits, teacher_labels, teacher_positions)
    pairs_s, pairs_t = [], []
    for row_s, row_t in zip(student, teacher):
        for s, t in zip(row_s, row_t):
            n = min(len(s), len(t))
            pairs_s.append(s[:n])
            pairs_t.append(t[:n])
    s = torch.cat(pairs_s) if pairs_s else student_logits.new_zeros(0, student_logits.shape[-1])
    t = torch.cat(pairs_t) if pairs_t else teacher_logits.new_zeros(0, teacher_logits.shape[-1])
    if s.shape[0] == 0:
        return student_logits.sum() * 0.0
    return sorted_probability_distance(s, t.to(s.dtype), temperature)


def sorted_probability_distance(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """ULD's closed form for [n, V_s] vs [n, V_t] logits: L1 between descending-sorted probabilities, zero-padded."""
    p_s = F.softmax(student_logits / temperature, -1).sort(-1, descending=True).values
    p_t = F.softmax(teacher_logits / temperature, -1).sort(-1, descending=True).values
    width = max(p_s.shape[-1], p_t.shape[-1])
    p_s = F.pad(p_s, (0, width - p_s.shape[-1]))
    p_t = F.pad(p_t, (0, width - p_t.shape[-1]))
    return (p_s - p_t).abs().sum(-1).mean()
