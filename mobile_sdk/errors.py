"""Errors the SDK raises on bad input. The CLI prints them as one line; anything else is a bug."""


class SDKError(Exception):
    """Base class: a problem with the user's input, files or environment, explained in the message."""


class ConfigError(SDKError):
    """A preset, config file or override is malformed."""


class PlanError(SDKError):
    """A temporal plan names an unknown slot or op, or does not fit the model."""


class WeightsError(SDKError):
    """A weights file is missing, unreadable, or does not match the model's config."""


class GenerationCancelled(SDKError):
    """The pipeline's callback asked to stop."""
