"""ASR backends: openai-whisper for English, funasr paraformer-zh for Chinese.

Each backend is loaded once and transcribes lists of 16 kHz float32 mono waveforms in batches:
`transcribe(wavs) -> list[str]`, `info() -> dict` (name, version, weights, settings).
"""
