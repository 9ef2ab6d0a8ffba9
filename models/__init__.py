from models.weights import export_audiovae, load_audiovae  # noqa: F401  (AudioVAE API, DESIGN section 2)
from models.tts_io import export, load  # noqa: F401,E402  (TTS API, DESIGN section 2)
