"""Audio distances outside the Seed-TTS-Eval protocol: mel cepstral distortion, pitch error."""
