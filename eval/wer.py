"""Word/character error counts with jiwer (the protocol's own aligner), per utterance and overall.

The protocol reports the mean of per-utterance WER x 100; the corpus-level WER (total errors over
total reference tokens) is given beside it because the mean over-weights short utterances.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorCounts:
    S: int
    D: int
    I: int  # noqa: E741 - the conventional name
    N: int  # reference tokens

    @property
    def errors(self) -> int:
        return self.S + self.D + self.I

    @property
    def wer(self) -> float:
        return self.errors / self.N

    def __add__(self, other: "ErrorCounts") -> "ErrorCounts":
        return ErrorCounts(self.S + other.S, self.D + other.D, self.I + other.I, self.N + other.N)


def _align(reference: list[str], hypothesis: list[str]):
    import jiwer  # the eval extra: a training run imports the evaluation callback without it

    return jiwer.process_words(" ".join(reference), " ".join(hypothesis))


def count_errors(reference: list[str], hypothesis: list[str]) -> ErrorCounts:
    """Substitutions, deletions and insertions aligning `hypothesis` tokens to `reference` tokens."""
    if not reference:
        raise ValueError("empty reference: WER is undefined")
    if not hypothesis:  # jiwer refuses some empty inputs; the answer is all deletions
        return ErrorCounts(0, len(reference), 0, len(reference))
    out = _align(reference, hypothesis)
    return ErrorCounts(out.substitutions, out.deletions, out.insertions, len(reference))


def total(counts: list[ErrorCounts]) -> ErrorCounts:
    acc = ErrorCounts(0, 0, 0, 0)
    for c in counts:
        acc = acc + c
    return acc


def mean_wer(counts: list[ErrorCounts]) -> float:
    """The protocol's number: mean of per-utterance WER, x 100."""
    if not counts:
        raise ValueError("no utterances to score")
    return 100.0 * sum(c.wer for c in counts) / len(counts)


def corpus_wer(counts: list[ErrorCounts]) -> float:
    """Total errors over total reference tokens, x 100."""
    acc = total(counts)
    if acc.N == 0:
        raise ValueError("no reference tokens to score")
    return 100.0 * acc.errors / acc.N


def longest_insertion_run(reference: list[str], hypothesis: list[str]) -> int:
    """The most hypothesis tokens inserted in a row by jiwer's alignment (0 when none)."""
    if not reference or not hypothesis:
        return 0
    out = _align(reference, hypothesis)
    return max((c.hyp_end_idx - c.hyp_start_idx for c in out.alignments[0] if c.type == "insert"), default=0)
