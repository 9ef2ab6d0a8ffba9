"""MCD with DTW: zero for identical audio, invariant to a time shift, larger for another voice."""
import numpy as np

from datamodules.corpus import render
from eval.metrics.mcd import mcd


def test_mcd_orders_same_and_different_voices():
    a = render("the little cat sleeps on the warm red chair.", "en", "en_v0")
    same = render("the little cat sleeps on the warm red chair.", "en", "en_v0")
    other_voice = render("the little cat sleeps on the warm red chair.", "en", "en_v1")
    other_text = render("seven green boats wait near the quiet harbour.", "en", "en_v0")
    shifted = np.concatenate([np.zeros(4000, np.float32), a])
    assert mcd(a, same) < 1e-6
    assert mcd(a, shifted) < 0.1  # DTW absorbs the leading silence
    assert 1.0 < mcd(a, other_voice) < 30.0
    assert 1.0 < mcd(a, other_text) < 30.0
