"""Errors the evaluation raises on purpose, each with a message that says what to do."""


class EvalError(RuntimeError):
    """The evaluation cannot go on (missing wavs, bad transcripts, an existing result...)."""


class MissingWeightsError(EvalError):
    """A backend's weights are not where expected; the message names the path and how to provide them."""
