"""mixlab: find, apply and keep adjusting the data mixture for language-model pre-training.

The light core types are importable at once; everything that pulls in torch lives in subpackages
(``mixlab.data``, ``mixlab.train``, ``mixlab.influence``, ...) and is imported on use.
"""

from mixlab.errors import ConfigError, DataError, MixlabError, TrainingError
from mixlab.mixture import (
    Mixture,
    MixtureConstraints,
    MixtureSpec,
    Schedule,
    Stage,
    load_mixture_or_schedule,
    save_mixture,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "MixlabError",
    "Mixture",
    "MixtureConstraints",
    "MixtureSpec",
    "Schedule",
    "Stage",
    "TrainingError",
    "__version__",
    "load_mixture_or_schedule",
    "save_mixture",
]
