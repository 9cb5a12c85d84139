"""Stage report: one self-contained HTML page of the whole run, and a short Markdown summary.

Reads every stage's metrics, figures and curves, the submission manifest and,
besides its declared deps, what the tools leave behind: Snakemake's benchmark
files (absent under `dvc repro`: the page then says so), DVC's record and
status of every other stage, and git.
Both files are written only once both are rendered.
"""
from __future__ import annotations

import argparse
import os
from datetime import datetime, timezone

from echocem.dag import load_pipeline
from echocem.io import save_text
from echocem.report.document import build_document, headline
from echocem.report.figures import curve_figure, png_bytes, runtime_figure
from echocem.report.html import render_html
from echocem.report.load import load_run
from echocem.report.markdown import render_markdown
from echocem.runtime import stage_main, start_stage

STAGE = "report"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--out", required=True, help="output: the HTML report")
    p.add_argument("--summary", required=True, help="output: the Markdown summary")
    return p.parse_args()


@stage_main
def main() -> None:
    args = parse_args()
    params = start_stage(args.params, STAGE)
    stages = load_pipeline(".")
    # the params shown are the keys this stage declares, so a change of any of them reruns it
    shown = list(stages[STAGE].params) if STAGE in stages else sorted({k for s in stages.values() for k in s.params})
    run = load_run(".", stages, params, shown, self_stage=STAGE)
    curve_pngs = [curve_figure(c) for c in run.curves]
    runtime_png = runtime_figure(run.benchmarks, run.stage_order) if run.benchmarks else None
    drawn = {}
    if run.transport:
        from echocem.transport.figures import uvp_vs_dim_figure

        drawn["transport"] = png_bytes(uvp_vs_dim_figure(run.transport), close=True)
    sections = build_document(run, curve_pngs, runtime_png, drawn)
    heads = headline(run)
    built = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    others = [s for s in stages if s != STAGE]
    footer = f"Built {built} by stages/report.py from the outputs of {len(others)} stages."
    page = render_html(sections, heads, footer=footer)
    link = os.path.relpath(args.out, os.path.dirname(args.summary) or ".")
    summary = render_markdown(sections, heads, full_report=link)
    save_text(args.out, page)
    save_text(args.summary, summary)
    missing = f", {len(run.missing)} inputs missing" if run.missing else ""
    print(f"report: {args.out} ({len(page) / 1e6:.1f} MB), {args.summary}{missing}")


if __name__ == "__main__":
    main()
