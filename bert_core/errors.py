"""Errors raised by bert_core.

Every error a user can cause (bad file, bad label, tampered model) derives from
`BertCoreError`, so the CLI can print it as one line instead of a traceback.
"""


class BertCoreError(Exception):
    """Base class for user-facing bert_core errors."""


class DataError(BertCoreError):
    """Input data cannot be read or does not have the expected shape."""


class ModelIntegrityError(BertCoreError):
    """A model directory is incomplete or its files do not match the manifest."""


class ModelConfigError(BertCoreError):
    """A model or base encoder cannot be built from the given configuration."""


class CompileError(BertCoreError):
    """The encoder pass could not be compiled (`bert_core.inference.compiled`): a fault of this machine
    (no compiler, a full disk, memory), not of the model, so a worker retries such a model
    instead of refusing it."""


class EncoderMissingError(ModelConfigError):
    """A named encoder cannot be used yet: a package it is assembled from is not installed, or
    it has not been assembled into the model store (`finsent encoders install NAME`)."""
