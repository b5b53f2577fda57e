"""Candidate generators: the protocol, the registry and the generators Shortlist ships.

To add one: write a module with a ``Generator`` subclass (a ``name``, a ``Config`` dataclass,
``fit``, ``propose``, ``save``/``load``; ``affinity``, ``item_vectors`` and ``tuning_grid``
when it has them) and add it to ``default_registry``. Fit, tuning, the artifact, the merge,
the ranker's features, evaluation and the bench all follow the registry.
"""

from __future__ import annotations

from shortlist.retrieval.generators.als import AlsGenerator
from shortlist.retrieval.generators.base import (
    FitData,
    Generator,
    GeneratorSkipped,
    HnswParams,
    Registry,
    UserState,
    config_of,
    fit_each_or_skip,
    fit_or_skip,
)
from shortlist.retrieval.generators.content import ContentGenerator
from shortlist.retrieval.generators.demographic import DemographicGenerator
from shortlist.retrieval.generators.itemitem import EaseGenerator, ItemKnnGenerator
from shortlist.retrieval.generators.sequence import SequenceGenerator
from shortlist.retrieval.generators.social import SocialGenerator
from shortlist.retrieval.generators.trending import TrendingGenerator


def default_registry() -> Registry:
    """The generators every fit and server uses unless told otherwise, in merge order."""
    return Registry((AlsGenerator, EaseGenerator, ItemKnnGenerator, ContentGenerator,
                     SequenceGenerator, SocialGenerator, DemographicGenerator,
                     TrendingGenerator))


__all__ = ["AlsGenerator", "ContentGenerator", "DemographicGenerator", "EaseGenerator",
           "FitData", "Generator", "GeneratorSkipped", "HnswParams", "ItemKnnGenerator",
           "Registry", "SequenceGenerator", "SocialGenerator", "TrendingGenerator", "UserState",
           "config_of", "default_registry", "fit_each_or_skip", "fit_or_skip"]
