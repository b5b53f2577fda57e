"""How much each event type counts, chosen on validation when the data has types.

The signs are configuration (a dislike is negative whatever the data); the magnitudes are
not knowable in advance: in one shop a purchase says four times what a view does, in another
views are few and deliberate. Each type the data uses, except its most frequent (the unit the
others are measured in), is tried at a quarter and at four times its weight, one type after
the other, keeping a change only when it raises the candidate recall of every generator
together on the validation items: that recall is what the types feed (the ranker then orders
the candidates, and sees the counts per type as features).
"""

from __future__ import annotations

import logging

import numpy as np
from tqdm import tqdm

from shortlist.common.attributes import UserData
from shortlist.common.catalog import ItemCatalog
from shortlist.common.events import EventTypes
from shortlist.common.vocab import Vocabulary
from shortlist.retrieval.generators import Registry
from shortlist.training.evaluation import candidate_recall
from shortlist.training.models import fit_models
from shortlist.training.params import FitParams
from shortlist.training.split import Events

logger = logging.getLogger(__name__)

FACTORS = (0.25, 4.0)


def types_in_use(ev: Events) -> list[str]:
    """Named types of ``ev``, most frequent first (none for untyped data)."""
    if ev.kinds is None or ev.types is None:
        return []
    counts = np.bincount(ev.kinds.astype(np.int64), minlength=len(ev.types.names))
    return [ev.types.names[k] for k in np.argsort(-counts, kind="stable").tolist()
            if counts[k] > 0]


def tune_event_weights(f_ev: Events, v_ev: Events, users: Vocabulary, catalog: ItemCatalog,
                       p: FitParams, registry: Registry, progress: bool = False,
                       user_data: UserData | None = None,
                       eval_users: np.ndarray | None = None) -> tuple[EventTypes, list[dict]]:
    """The table to serve and the rows tried (each with its candidate recall).

    ``f_ev`` are the events models are fitted on and ``v_ev`` the validation items, as for
    the generators' own tuning; the table of ``f_ev`` is where the search starts.
    """
    table = f_ev.types
    names = types_in_use(f_ev)
    if table is None or len(names) < 2:
        return table or EventTypes.standard(), []
    valid = v_ev if eval_users is None else v_ev.take(np.isin(v_ev.users, eval_users))

    def score(candidate: EventTypes) -> float:
        models, _ = fit_models(f_ev.reweighted(candidate), users, catalog, p, registry,
                               build_index=False, user_data=user_data)
        return candidate_recall(models, valid)

    trials = [(name, factor) for name in names[1:] for factor in FACTORS]
    bar = tqdm(total=1 + len(trials), desc="tune event weights", unit="fit",
               disable=not progress, leave=False)
    best = score(table)
    bar.update()
    rows = [{"changed": "", **{n: table.weight(n) for n in names}, "recall": best}]
    for name, factor in trials:
        candidate = table.replace(**{name: table.weight(name) * factor})
        recall = score(candidate)
        bar.update()
        rows.append({"changed": f"{name} x{factor:g}", **{n: candidate.weight(n) for n in names},
                     "recall": recall})
        if recall > best:
            best, table = recall, candidate
    bar.close()
    logger.info("event weights chosen on validation: %s (candidate recall %.4f)",
                {n: table.weight(n) for n in names}, best)
    return table, rows
