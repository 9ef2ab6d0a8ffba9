from models.weights import export_audiovae, load_audiovae  # noqa: F401  (AudioVAE API, docs/design.md section 2)
from models.tts_io import export, load, load_backbone  # noqa: F401,E402  (TTS API, docs/design.md section 2)
