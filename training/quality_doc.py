"""Render docs/quality.md from `shortlist-train evaluate` JSON reports (never typed by hand).

    python -m shortlist.training.quality_doc reports/ml-100k.json reports/ml-latest-small.json \
        --output docs/quality.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from shortlist.training.fit import paired_margin

COMMAND = "make quality"
COLUMNS = ("recall@10", "ndcg@10", "map@10", "hr@10", "coverage", "ild", "novelty", "fit_s")


def _fmt(v, col: str) -> str:
    if v is None:
        return "–"
    return f"{v:.1f}" if col == "fit_s" else f"{v:.4f}"


PEERS = ("peer_als", "peer_ease", "itemknn")  # tuned ALS, EASE and ItemKNN
MOVIELENS = ("ml-100k", "ml-latest-small")


def targets(report: dict) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for the quality targets of the served pipeline."""
    rows = {r["model"]: r for r in report["rows"]}
    pipe = rows["pipeline"]["ndcg@10"]
    out = []
    peers = {m: rows[m]["ndcg@10"] for m in PEERS if m in rows}
    if peers:
        best = max(peers, key=peers.get)
        ratio = pipe / peers[best] if peers[best] else float("inf")
        out.append(("pipeline >= 1.05 x the best of tuned ALS, EASE and ItemKNN",
                    f"{pipe:.4f} vs {best} {peers[best]:.4f} ({ratio:.2f} x)", ratio >= 1.05))
        if report["dataset"] in MOVIELENS:
            out.append(("MovieLens: pipeline >= 1.40 x the best peer", f"{ratio:.2f} x",
                        ratio >= 1.40))
    gens = {g: rows[g]["ndcg@10"] for g in report.get("generators", []) if g in rows}
    if gens:
        best = max(gens, key=gens.get)
        out.append(("pipeline >= its own best generator",
                    f"{pipe:.4f} vs {best} {gens[best]:.4f}", pipe >= gens[best]))
    pop = rows["popularity"]["ndcg@10"]
    out.append(("pipeline >= 1.5 x popularity", f"{pipe / pop:.2f} x" if pop else "-",
                pipe >= 1.5 * pop))
    return out


def _served(rep: dict) -> str:
    decision = rep.get("tuning", {}).get("configuration", {})
    return decision.get("served", "?")


def summary(reports: list[dict]) -> list[str]:
    """One row per dataset: the served pipeline against its best generator and best peer."""
    out = ["| dataset | protocol | users | items | pipeline | served as | best generator | "
           "best peer | pipeline / best peer | targets met |", "|---" * 10 + "|"]
    for rep in reports:
        rows = {r["model"]: r for r in rep["rows"]}
        pipe = rows["pipeline"]["ndcg@10"]
        gens = {g: rows[g]["ndcg@10"] for g in rep.get("generators", []) if g in rows}
        peers = {m: rows[m]["ndcg@10"] for m in PEERS if m in rows}
        g = max(gens, key=gens.get) if gens else None
        q = max(peers, key=peers.get) if peers else None
        met = targets(rep)
        out.append(
            f"| {rep['dataset']} | {rep['protocol']} | {rep['users']} | {rep['items']} | "
            f"{pipe:.4f} | {_served(rep)} | "
            + (f"{g} {gens[g]:.4f}" if g else "–") + " | "
            + (f"{q} {peers[q]:.4f}" if q else "–") + " | "
            + (f"{pipe / peers[q]:.2f} x" if q and peers[q] else "–") + " | "
            + f"{sum(1 for _, _, ok in met if ok)} of {len(met)} |")
    return out


def generator_on_off(reports: list[dict]) -> list[str]:
    """For each report run without a generator (``evaluate --without``) and its twin with
    every generator, on the same split: the pipeline's NDCG@10 both ways and their paired
    per-user difference in standard errors (beyond noise at |z| >= 1.96)."""
    full = {(r["dataset"], r["protocol"]): r for r in reports if not r.get("generators_off")}
    out = []
    for rep in reports:
        off = rep.get("generators_off")
        twin = full.get((rep["dataset"], rep["protocol"]))
        if not off or twin is None or "per_user_ndcg" not in rep:
            continue
        with_, without = (np.asarray(r["per_user_ndcg"]["pipeline"]) for r in (twin, rep))
        if len(with_) != len(without):
            continue
        m = paired_margin(with_, without)
        z = m["z"]
        out.append(f"| {rep['dataset']} | {', '.join(off)} | {with_.mean():.4f} | "
                   f"{without.mean():.4f} | {m['diff']:+.4f} | "
                   + ("n/a" if z is None else f"{z:+.2f}") + " | "
                   + ("yes" if z is not None and abs(z) >= 1.96 else "no") + " |")
    if not out:
        return []
    return ["## Generators on and off", "",
            "The same split evaluated with every generator and without one (`shortlist-train "
            "evaluate --without NAME`; `events`: fitted blind to the data's event types, "
            "every event counting by its own weight): the served pipeline's test NDCG@10 both "
            "ways and the paired per-user difference in standard errors.", "",
            "| dataset | left out | ndcg@10 with | ndcg@10 without | difference | z | beyond "
            "noise |", "|---|---|---|---|---|---|---|", *out, ""]


def render(reports: list[dict]) -> str:
    on_off = generator_on_off(reports)
    reports = [r for r in reports if not r.get("generators_off")]
    out = [
        "# Recommendation quality",
        "",
        f"Produced by `{COMMAND}` (runs `shortlist-train evaluate` on each dataset of the",
        "zoo, writes `reports/*.json`, then renders this page with",
        "`python -m shortlist.training.quality_doc`). Do not edit by hand.",
        "",
        "Protocols: `leave-last-out` holds out each user's latest item (timestamp ties broken",
        "by a fixed hash of user and item, never by catalog or file order); `random-holdout`",
        "holds out one item per",
        "user drawn at random (seeded), the default for data without timestamps. Users with",
        "at least 5 items are tested; each user's top 10 is ranked over every item not in",
        "their training history. Every hyperparameter is chosen on a validation split carved",
        "from the training part *the same way as the test* (latest or random item; the",
        "ranker's labels likewise); test items are used only to score. Peers (tuned ALS,",
        "dense EASE, and the ItemKNN generator alone) are tuned on the same validation items.",
        "`pipeline` is what `fit` publishes: the ranker with its diversity re-ranking when on",
        "validation it beats its own best generator by at least 1.645 standard errors of the",
        "paired per-user difference, else a simpler order (the guard rail; the table says",
        "what served). ILD is the mean pairwise distance (1 - cosine) within a top 10 in the",
        "diversity space (content vectors, else ALS factors); novelty is the mean -log2 of",
        "the share of users who had the item; coverage is the share of the catalog",
        "recommended to anyone; fit_s includes tuning for the tuned rows.",
        "",
        "## Summary",
        "",
        *summary(reports),
        "",
        *on_off,
    ]
    for rep in reports:
        out += ["", f"## {rep['dataset']}", "",
                f"Protocol `{rep['protocol']}`; {rep['users']} test users, {rep['items']} "
                f"items, {rep['train_interactions']} training interactions"
                f"{'' if rep.get('has_timestamps', True) else ', no timestamps'}. Served "
                f"configuration: `{_served(rep)}`.", ""]
        out.append("| model | " + " | ".join(COLUMNS) + " | what |")
        out.append("|---" * (len(COLUMNS) + 2) + "|")
        for r in rep["rows"]:
            out.append(f"| {r['model']} | " + " | ".join(_fmt(r.get(c), c) for c in COLUMNS)
                       + f" | {r['description']} |")
        union = next(r for r in rep["rows"] if r["model"] == "candidates_union")
        out += ["", f"Candidate recall (union of generators, {union['candidates']} "
                    f"candidates): {union['recall@candidates']:.4f}."]
        if len(rep.get("candidate_ablation", [])) > 1:
            out += ["", "**Candidate ablation** (test candidate recall at the same "
                        f"{union['candidates']} candidates without each generator; the others "
                        "are asked for proportionally more to fill its share):", "",
                    "| removed | candidate recall | change |", "|---|---|---|"]
            out += [f"| {r['removed']} | {r['recall']:.4f} | {r['delta']:+.4f} |"
                    for r in rep["candidate_ablation"]]
        cold = rep.get("cold_start")
        if cold:
            k = cold["k"]
            out += ["", f"**Cold start** ({cold['users']} users held out entirely, "
                        f"{cold['folds']} folds; each served as a new user giving only "
                        f"{', '.join(cold['attributes'])}; relevant: everything they went on "
                        "to interact with):", "", f"| model | ndcg@{k} | recall@{k} |",
                    "|---|---|---|"]
            out += [f"| {r['model']} | {r[f'ndcg@{k}']:.4f} | {r[f'recall@{k}']:.4f} |"
                    for r in cold["rows"]]
            m = cold.get("demographic_vs_trending")
            if m:
                z = "n/a" if m["z"] is None else f"{m['z']:.1f}"
                out += ["", f"demographic − trending, paired per user: {m['diff']:+.4f} "
                            f"({z} standard errors)."]
        for why in rep.get("skipped", {}).values():
            out += ["", why]
        out += ["", "**Targets**", "", "| target | measured | met |", "|---|---|---|"]
        for name, measured, met in targets(rep):
            out.append(f"| {name} | {measured} | {'yes' if met else '**no**'} |")
        decision = rep.get("tuning", {}).get("configuration")
        if decision:
            out += ["", "**Guard rail** (validation NDCG@10 of each configuration; "
                        f"{decision['reason']}):", "", "| configuration | ndcg@10 |",
                    "|---|---|"]
            out += [f"| {n}{' (served)' if n == decision['served'] else ''} | {v:.4f} |"
                    for n, v in sorted(decision["validation_ndcg@10"].items(),
                                       key=lambda kv: -kv[1])]
        out += ["", "**Chosen on validation**", "", "| parameter | value |", "|---|---|"]
        for key, value in rep["chosen"].items():
            if key == "generators":
                out += [f"| generator {name} | {', '.join(f'{k}={v}' for k, v in cfg.items())} |"
                        for name, cfg in value.items()]
            else:
                out.append(f"| {key} | {value} |")
        als = rep["peers_chosen"]["peer_als"]
        out.append(f"| peer ALS | {', '.join(f'{k}={v}' for k, v in als.items())} |")
        out.append(f"| peer EASE lambda | {rep['peers_chosen']['ease_lambda']} |")
        tried = rep["tuning"].get("event_weights") or []
        if tried:  # typed data: the weights of the types it uses, as chosen
            names = [n for n in tried[0] if n not in ("changed", "recall")]
            out.append("| event weights | " + ", ".join(
                f"{n}={rep['event_weights'][n]:g}" for n in names) + " |")
        frontier = rep["tuning"].get("diversity", [])
        if frontier:
            out += ["", "Diversity on validation: each method's accuracy/diversity frontier "
                        "(relative to no re-ranking with the same pool; the rule takes the "
                        "cheapest setting with +10% ILD within a 2% NDCG loss, else the most "
                        "diverse affordable one):", "",
                    "| method | relevance weight | pool | ndcg@10 | ild | ndcg change | "
                    "ild change |", "|---|---|---|---|---|---|---|"]
            out += [f"| {r['method']} | {r['mmr_lambda']} | {r['mmr_top_n']} | "
                    f"{r['ndcg@10']:.4f} | {r['ild']:.4f} | {r['ndcg_change']:+.1%} | "
                    f"{r['ild_change']:+.1%} |" for r in frontier]
        if rep.get("ablation"):
            out += ["", "**Feature ablation** (validation NDCG@10 with the group removed and the "
                        "ranker retrained):", "", "| removed | ndcg@10 | change |", "|---|---|---|"]
            for r in rep["ablation"]:
                out.append(f"| {r['removed']} | {r['ndcg@10']:.4f} | {r['delta']:+.4f} |")
    return "\n".join(out) + "\n"


def plot_frontier(reports: list[dict], path: Path) -> None:
    """Validation NDCG change against ILD change per diversity method and dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in reports if r["tuning"].get("diversity")]
    if not shown:
        return
    cols = min(3, len(shown))
    rows = (len(shown) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.8 * rows), squeeze=False)
    for ax, rep in zip(axes.ravel(), shown, strict=False):
        points = rep["tuning"]["diversity"]
        for method in dict.fromkeys(r["method"] for r in points if r["method"] != "none"):
            pts = sorted((r["ild_change"], r["ndcg_change"]) for r in points
                         if r["method"] == method)
            ax.plot([100 * x for x, _ in pts], [100 * y for _, y in pts], "o-", ms=3,
                    label=method)
        ax.axhline(-2, color="grey", lw=0.8, ls="--")
        ax.axvline(10, color="grey", lw=0.8, ls="--")
        ax.set_title(rep["dataset"], fontsize=9)
        ax.set_xlabel("ILD change (%)")
        ax.set_ylabel("NDCG@10 change (%)")
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(shown):]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot(reports: list[dict], path: Path) -> None:
    """NDCG@10 per model and dataset as a horizontal bar chart (matplotlib, optional)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(reports))
    n_rows = (len(reports) + cols - 1) // cols
    fig, axes = plt.subplots(n_rows, cols, figsize=(5.5 * cols, 4.2 * n_rows), squeeze=False)
    for ax, rep in zip(axes.ravel(), reports, strict=False):
        rows = [r for r in rep["rows"] if r["model"] != "candidates_union"]
        names = [r["model"] for r in rows]
        values = [r["ndcg@10"] for r in rows]
        colors = ["#d62728" if n.startswith("pipeline") else "#7f7f7f"
                  if n in PEERS else "#1f77b4" for n in names]
        ax.barh(names, values, color=colors)
        ax.invert_yaxis()
        ax.set_title(f"{rep['dataset']} ({rep['protocol']})")
        ax.set_xlabel("NDCG@10")
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:.4f}", va="center", fontsize=8)
        ax.set_xlim(0, max(values) * 1.25)
    for ax in axes.ravel()[len(reports):]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("reports", nargs="+", type=Path)
    parser.add_argument("--output", type=Path, default=Path("docs/quality.md"))
    args = parser.parse_args(argv)
    reports = [json.loads(p.read_text()) for p in args.reports]
    text = render(reports)
    try:
        image = args.output.with_name(args.output.stem + "-ndcg.png")
        plot([r for r in reports if not r.get("generators_off")], image)
        frontier = args.output.with_name(args.output.stem + "-diversity.png")
        plot_frontier([r for r in reports if not r.get("generators_off")], frontier)
        text = text.replace("\n## Summary", f"\n![NDCG@10 by model]({image.name})\n\n"
                            f"![Diversity frontier on validation]({frontier.name})\n\n"
                            "## Summary", 1)
    except ImportError:
        print("matplotlib not installed: no chart (pip install '.[report]')", file=sys.stderr)
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
