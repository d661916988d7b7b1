"""The one error type mixlab raises for problems the user can fix.

Every user-facing failure (bad config, bad file, bad mixture, a run that cannot resume) raises
:class:`MixlabError` (or a subclass) with a message that names the file or field and says what to do.
The CLI prints these messages without a traceback; anything else is a bug in mixlab.
"""

from __future__ import annotations


class MixlabError(Exception):
    """A problem with the user's input or environment, explained in the message."""


class ConfigError(MixlabError):
    """A configuration value (YAML file, flag or argument) is invalid."""


class DataError(MixlabError):
    """A corpus, shard, CSV or other input file is missing, empty or corrupt."""


class NotFittedError(MixlabError):
    """An estimator (a mixing law, a predictor) was used before ``fit``."""


class TrainingError(MixlabError):
    """A training run cannot continue (NaN loss, missing checkpoint, incompatible resume)."""
