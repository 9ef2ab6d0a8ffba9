"""Research probes on a trained model's hidden states (the paper's analysis section)."""
