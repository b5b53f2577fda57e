"""Explanations in words: why an item is where it is in a user's list, or why it is not.

Pure composition over what retrieval and ranking returned for an explained request: the
positions, the generators that proposed the item, the ranker's own ordering before diversity,
and the rules that touched it. Nothing here calls a server.
"""

from __future__ import annotations

from shortlist.v1 import common_pb2, gateway_pb2

Verdict = gateway_pb2.ItemExplanation
Status = common_pb2.ItemVerdict

# Retrieval's verdict for an item that never reached ranking, as the explanation's.
FROM_RETRIEVAL = {Status.SEEN: Verdict.SEEN, Status.FILTERED: Verdict.FILTERED,
                  Status.UNKNOWN_ITEM: Verdict.UNKNOWN_ITEM,
                  Status.NOT_RETRIEVED: Verdict.NOT_RETRIEVED}


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def sources_text(sources) -> str:
    return ", ".join(f"{s.generator} #{s.rank}" for s in sources) or "no generator"


def describe(item: gateway_pb2.RecommendedItem, candidates: int, k: int,
             full_ranking: bool = False) -> str:
    """How a ranked item got its position: retrieval's merge, the ranker's score order, what
    diversity and rules did, and the recent item it resembles."""
    where = (f"{ordinal(item.ranking_rank)} of {candidates} candidates"
             + (" when every candidate is ranked" if full_ranking else ""))
    parts = [where if item.ranking_rank else "served in retrieval's order"]
    if item.retrieval_rank:
        parts.append(f"retrieval merged it {ordinal(item.retrieval_rank)} "
                     f"({sources_text(item.sources)})")
    else:
        parts.append("no generator proposed it")
    if item.score_rank:
        moved = item.ranking_rank - item.score_rank
        text = f"the ranker scored it {ordinal(item.score_rank)}"
        if moved and not item.rules:
            text += (f", diversity moved it {'down' if moved > 0 else 'up'} "
                     f"{abs(moved)} place{'s' if abs(moved) != 1 else ''}")
        elif moved:
            text += f", diversity and pins moved it to {ordinal(item.ranking_rank)}"
        parts.append(text)
    if item.contributions:
        parts.append("top features: " + ", ".join(
            f"{c.description or c.feature} {c.contribution:+.2f}" for c in item.contributions))
    if item.because_of_item_id:
        parts.append(f"closest to the user's recent {item.because_of_item_id}")
    if item.rules:
        parts.append("rules: " + "; ".join(item.rules))
    return "; ".join(parts)


def retrieval_reason(verdict: common_pb2.ItemVerdict) -> str:
    """Retrieval's own reason, with the deeper search's finding for an item not retrieved."""
    if verdict.status != Status.NOT_RETRIEVED:
        return verdict.reason
    if verdict.rank:
        return (f"{verdict.reason}; asking every generator for ten times as many finds it "
                f"{ordinal(verdict.rank)} ({sources_text(verdict.sources)}), beyond the "
                f"{verdict.candidates} candidates retrieved")
    return (f"{verdict.reason}; no generator proposes it even when asked for ten times as "
            "many")
