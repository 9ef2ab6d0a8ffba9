"""F0 error: zero for the same audio, the octave for a voice rendered an octave apart, None for silence."""
import numpy as np

from eval.metrics.pitch import f0_error


def _tone(f0: float, seconds: float = 1.0, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6))).astype(np.float32)


def test_f0_error_measures_the_pitch_difference():
    low, high = _tone(110.0), _tone(220.0)
    same = f0_error(low, low)
    assert same["abs_error_hz"] < 1.0 and abs(same["real_hz"] - 110.0) < 3.0
    apart = f0_error(high, low)
    assert abs(apart["abs_error_hz"] - 110.0) < 5.0
    assert abs(apart["fake_hz"] - 220.0) < 5.0


def test_f0_error_is_none_without_voiced_frames():
    assert f0_error(_tone(110.0), np.zeros(16000, np.float32)) is None
