from models.weights import export_audiovae, load_audiovae  # noqa: F401  (AudioVAE API, DESIGN section 2)
