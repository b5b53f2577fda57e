"""Render docs/quality.md from `shortlist-train evaluate` JSON reports (never typed by hand).

    python -m shortlist.training.quality_doc reports/ml-100k.json reports/ml-latest-small.json \
        --output docs/quality.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

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


def render(reports: list[dict]) -> str:
    out = [
        "# Recommendation quality",
        "",
        f"Produced by `{COMMAND}` (runs `shortlist-train evaluate` on each dataset, writes",
        "`reports/*.json`, then renders this page with",
        "`python -m shortlist.training.quality_doc`). Do not edit by hand.",
        "",
        "Protocol `leave-last-out`: duplicate (user, item) pairs collapse to the latest event;",
        "every user with at least 5 items holds out their latest item (timestamp ties: the item",
        "later in the catalog counts as later); each user's top 10 is ranked over every item",
        "not in their training history. Every hyperparameter is chosen on a validation split",
        "carved from the training part (each user's latest remaining item); test items are",
        "used only to score. ILD is the mean pairwise content distance (1 - cosine of the",
        "TF-IDF+SVD vectors) within a top 10; novelty is the mean -log2 of the share of users",
        "who had the item; coverage is the share of the catalog recommended to anyone;",
        "fit_s includes tuning for the tuned rows.",
    ]
    for rep in reports:
        out += ["", f"## {rep['dataset']}", "",
                f"{rep['users']} test users, {rep['items']} items, "
                f"{rep['train_interactions']} training interactions.", ""]
        out.append("| model | " + " | ".join(COLUMNS) + " | what |")
        out.append("|---" * (len(COLUMNS) + 2) + "|")
        for r in rep["rows"]:
            out.append(f"| {r['model']} | " + " | ".join(_fmt(r.get(c), c) for c in COLUMNS)
                       + f" | {r['description']} |")
        union = next(r for r in rep["rows"] if r["model"] == "candidates_union")
        out += ["", f"Candidate recall (union of generators, {union['candidates']} "
                    f"candidates): {union['recall@candidates']:.4f}."]
        for why in rep.get("skipped", {}).values():
            out += ["", why]
        out += ["", "**Targets**", "", "| target | measured | met |", "|---|---|---|"]
        for name, measured, met in targets(rep):
            out.append(f"| {name} | {measured} | {'yes' if met else '**no**'} |")
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
        mmr = rep["tuning"].get("mmr", [])
        if mmr:
            out += ["", "MMR on validation (relative to lambda 1 with the same pool):", "",
                    "| lambda | pool | ndcg@10 | ild | ndcg change | ild change |",
                    "|---|---|---|---|---|---|"]
            out += [f"| {r['mmr_lambda']} | {r['mmr_top_n']} | {r['ndcg@10']:.4f} | "
                    f"{r['ild']:.4f} | {r['ndcg_change']:+.1%} | {r['ild_change']:+.1%} |"
                    for r in mmr]
        if rep.get("ablation"):
            out += ["", "**Feature ablation** (validation NDCG@10 with the group removed and the "
                        "ranker retrained):", "", "| removed | ndcg@10 | change |", "|---|---|---|"]
            for r in rep["ablation"]:
                out.append(f"| {r['removed']} | {r['ndcg@10']:.4f} | {r['delta']:+.4f} |")
    return "\n".join(out) + "\n"


def plot(reports: list[dict], path: Path) -> None:
    """NDCG@10 per model and dataset as a horizontal bar chart (matplotlib, optional)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(reports), figsize=(5.5 * len(reports), 4.2), squeeze=False)
    for ax, rep in zip(axes[0], reports, strict=True):
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
        plot(reports, image)
        text = text.replace("\n## ", f"\n![NDCG@10 by model]({image.name})\n\n## ", 1)
    except ImportError:
        print("matplotlib not installed: no chart (pip install '.[report]')", file=sys.stderr)
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
