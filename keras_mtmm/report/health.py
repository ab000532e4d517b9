"""The run report's "Training health" section: dead encoder units, task × modality contributions, label priors."""

from __future__ import annotations

from typing import TYPE_CHECKING

from keras_mtmm.report.html import Page, esc, number, section, table

if TYPE_CHECKING:
    from keras_mtmm.report.run import Run


def health_section(run: Run, page: Page) -> tuple[str, str, str]:
    """From `inspection.json`'s `health` (see `keras_mtmm.training.health`), with training's warnings on top."""
    title = "Training health"
    health = (run.inspection or {}).get("health")
    if not health:
        why = "inspection.json has no health section (training writes it when there is a validation split)"
        return section("health", title, page.skipped(why))
    body = "".join(f'<p class="warning">{esc(line)}</p>' for line in health.get("warnings", []))
    if not health.get("warnings"):
        body += "<p>No warnings: every encoder is alive and every task beat its label prior.</p>"
    dead = health.get("dead_units", {})
    if dead:
        rows = [
            [
                esc(m),
                number(u["dead"], f"health/dead_units/{m}/dead", "inspection"),
                number(u["units"]),
                number(u["dead_fraction"], f"health/dead_units/{m}/dead_fraction", "inspection"),
            ]
            for m, u in dead.items()
        ]
        body += "<h3>Dead encoder output units</h3>" + table(["modality", "dead", "units", "fraction"], rows)
    contributions = health.get("modality_contribution", {})
    if contributions:
        modalities = list(next(iter(contributions.values()))["drop"])
        rows = []
        for task, contribution in contributions.items():
            prior = health["label_prior"][task]
            metric = contribution["metric"]
            cells = [
                page.task(task),
                esc(metric),
                number(contribution["all"], f"health/modality_contribution/{task}/all", "inspection"),
                number(prior["prior"].get(metric)),
                esc({True: "yes", False: "no", None: "n/a"}[prior["learned"]]),
            ]
            cells += [
                number(
                    contribution["drop"][m], f"health/modality_contribution/{task}/drop/{m}", "inspection", signed=True
                )
                for m in modalities
            ]
            rows.append(cells)
        header = ["task", "metric", "all modalities", "label prior", "learned"] + [
            f"drop without {esc(m)}" for m in modalities
        ]
        body += "<h3>What each modality contributes to each task</h3>" + table(header, rows)
    intro = (
        f"On the {health['split']} split ({health['rows']} rows). A dead unit is constant on every row. A task"
        " learned when its loss is below 98% of its label prior's (the training labels' class frequencies or"
        " mean, predicted for every row) or its metric beats the prior's clearly. The drop is the task's metric"
        " with all modalities minus its metric with that modality removed, signed so that positive means the"
        " modality helps."
    )
    return section("health", title, body, esc(intro))
