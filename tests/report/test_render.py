"""The renderers on a small run made here: what the HTML page and the Markdown summary say."""
from __future__ import annotations

import struct

import pytest

from echocem.dag import Stage
from echocem.io import EchoCemError
from echocem.report.document import Details, Figure, Section, Table, Text, build_document, headline
from echocem.report.figures import curve_figure, runtime_figure
from echocem.report.html import render_html, render_figure, stylesheet
from echocem.report.load import CurveTable, Run, load_run
from echocem.report.markdown import render_markdown
from tests.report.helpers import PNG_SIGNATURE, image_bytes, read_page


def _rung(iou: float, c1: float, c2: float) -> dict:
    scores = {"iou": iou, "iou_class1": c1, "iou_class2": c2, "n_patches": 3}
    return {**scores, "per_well": {"4": dict(scores)}}


LADDER = {
    "val_wells": [4],
    "order": ["all_background", "rf", "unet", "unet_rules"],
    "rungs": {
        "all_background": _rung(0.0, 0.0, 0.0),
        "rf": _rung(0.61, 0.40, 0.82),
        "unet": _rung(0.75, 0.58, 0.92),
        "unet_rules": _rung(0.74, 0.56, 0.92),
    },
    "gains": {"rules": -0.01},
    # the labels evaluate writes beside the rungs (echocem.seg.ladder.RUNG_LABELS), and the intervals
    "labels": {"all_background": "all background", "rf": "Random Forest", "unet": "U-Net",
               "unet_rules": "U-Net + rules"},
    "intervals": [{"rung": r, "scope": "all", "low": v - 0.02, "high": v + 0.02}
                  for r, v in (("all_background", 0.0), ("rf", 0.61), ("unet", 0.75), ("unet_rules", 0.74))],
    "differences": [{"a": "unet_rules", "b": "unet", "scope": "all", "estimate": -0.01, "low": -0.03,
                     "high": 0.01, "excludes_zero": False},
                    {"a": "unet", "b": "rf", "scope": "all", "estimate": 0.14, "low": 0.1, "high": 0.18,
                     "excludes_zero": True}],
    "bootstrap": {"n_boot": 2000, "level": 0.95, "n_patches": 3, "resampling": "patches, within their well"},
}
BENCHMARKS = {"ingest": {"s": 1.25, "h:m:s": "0:00:01", "max_rss": 80.0, "cpu_time": 1.1},
              "unet": {"s": 42.5, "h:m:s": "0:00:42", "max_rss": 1100.0, "cpu_time": 40.0}}


@pytest.fixture(scope="module")
def small_run() -> tuple[Run, list[bytes], bytes]:
    curve = CurveTable("val_iou", "epoch", [1.0, 2.0, 3.0], {"val_iou": [0.2, 0.5, 0.75]})
    run = Run(
        ladder=LADDER,
        data_card={"splits": {"train": {"n_patches": 12}}, "note": "wells <1 & 2>"},
        curves=[curve],
        benchmarks=BENCHMARKS,
        stage_order=["ingest", "unet", "report"],
        stage_params={"ingest": [], "unet": ["seed", "unet"]},
        params={"seed": 7, "unet": {"epochs": 3}},
        code={"git_commit": "a" * 40, "git_dirty": True},
        packages={"numpy": "2.4.6"},
        hardware={"cpu cores": "2"},
    )
    return run, [curve_figure(curve)], runtime_figure(BENCHMARKS, run.stage_order)


@pytest.fixture(scope="module")
def page(small_run) -> str:
    run, curves, runtime = small_run
    return render_html(build_document(run, curves, runtime), headline(run), footer="built now")


def test_page_is_self_contained_and_every_image_is_an_embedded_png(page):
    reader = read_page(page)
    assert "<link" not in page and "http://" not in page and "https://" not in page
    assert stylesheet().splitlines()[1] in page, "the style sheet is inlined"
    assert len(reader.images) == 2  # the training curve and the run times
    for img in reader.images:
        png = image_bytes(img["src"])
        assert png.startswith(PNG_SIGNATURE)
        assert struct.unpack(">II", png[16:24]) == (int(img["width"]), int(img["height"]))
        assert img["alt"]


def test_ladder_table_has_every_rung_with_the_best_emphasised(page):
    table = read_page(page).tables["ladder-table"]
    assert table["header"][:2] == ["model", "IoU (mean of classes 1, 2)"]
    rows = {r[0]: r for r in table["rows"]}
    assert list(rows) == ["all background", "Random Forest", "U-Net", "U-Net + rules"]
    assert rows["U-Net"][1:5] == ["0.7500", "[0.7300, 0.7700]", "0.5800", "0.9200"]
    assert [r[0] for r in table["best"]] == ["U-Net"]
    gains = {r[0]: r for r in read_page(page).tables["ladder-gains"]["rows"]}
    assert gains["U-Net + rules vs U-Net"][1:] == ["-0.0100", "[-0.0300, +0.0100]", "no difference within the interval"]
    assert gains["U-Net vs Random Forest"][3] == "gain"
    per_well = read_page(page).tables["ladder-per-well"]
    assert per_well["header"][1] == "well 4 IoU"


def test_runtime_table_and_headline(page):
    reader = read_page(page)
    rows = {r[0]: r for r in reader.tables["runtime-table"]["rows"]}
    assert rows["unet"][1] == "42.5" and rows["report"][1] == "–"
    assert rows["total"][1] == "43.8"
    text = "".join(reader.text)
    assert "0.7500 (U-Net)" in text and "aaaaaaaaaaaa (uncommitted changes)" in text


def test_text_from_data_is_escaped():
    evil = "<script>alert('x')</script> & co"
    sections = [Section("s<1>", "Title <b>bold</b>", [
        Text(evil), Text(evil, "note"), Table(["<th>"], [[evil]], caption=evil, id='x"y'),
        Details(evil, [Text(evil, "code")])])]
    html = render_html(sections, [("k<", evil)], footer=evil, css="")
    assert "<script>" not in html and "<b>bold" not in html and 'id="x"y"' not in html
    assert html.count("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co") >= 6
    cells = read_page(html).tables['x"y']
    assert cells["header"] == ["<th>"] and cells["rows"] == [[evil]]


def test_a_figure_that_is_no_png_is_named():
    with pytest.raises(EchoCemError, match="reports/figures/x.png"):
        render_figure(Figure("x", b"GIF89a not a png at all....", "reports/figures/x.png"))


def test_markdown_summary_has_headline_ladder_times_and_code_but_no_images(small_run):
    run, curves, runtime = small_run
    sections = build_document(run, curves, runtime)
    md = render_markdown(sections, headline(run), full_report="index.html")
    assert "data:image" not in md and "<img" not in md and "![" not in md
    assert "- **best validation IoU**: 0.7500 (U-Net)" in md
    assert "[index.html](index.html)" in md
    lines = md.splitlines()
    header = lines.index("| model | IoU (mean of classes 1, 2) | 95 % interval | IoU class 1 (TIE) "
                         "| IoU class 2 (casing) | patches |")
    assert lines[header + 1] == "|---|---:|---|---:|---:|---:|"
    assert "| **U-Net** | **0.7500** | **[0.7300, 0.7700]** | **0.5800** | **0.9200** | **3** |" in lines
    assert "| unet | 42.5 | 0:00:42 | 1100 | 40.0 |" in lines
    assert "| git commit | " + "a" * 40 + " |" in lines
    assert "## Code version" in md


def test_markdown_escapes_pipes_and_newlines():
    sections = [Section("ladder", "Ladder", [Table(["a|b", "c"], [["x|y", "line\nbreak"]], id="ladder-table")])]
    md = render_markdown(sections)
    assert r"| a\|b | c |" in md and r"| x\|y | line break |" in md


def test_an_empty_run_renders_and_says_what_is_missing():
    run = Run(missing=["reports/metrics/ladder.json (not produced yet)"])
    sections = build_document(run)
    html = render_html(sections, headline(run))
    reader = read_page(html)
    assert reader.images == [] and "ladder-table" not in reader.tables
    assert reader.tables["table-0"]["rows"] == [["reports/metrics/ladder.json (not produced yet)"]]
    md = render_markdown(sections, headline(run))
    assert "Partial run: 1 input(s) missing" in md
    assert "No Snakemake benchmark files" in md  # the run-time section's note, not a crash


def test_load_run_reports_absent_and_broken_benchmarks_as_missing(tmp_path):
    """Benchmarks are no deps of the report: absent (dvc repro) or broken, the report still builds."""
    stages = {n: Stage(n, f"python stages/{n}.py", (), (), (), (), (), ()) for n in ("ingest", "unet")}
    ladder = ("reports/metrics/ladder.json",)
    stages["evaluate"] = Stage("evaluate", "python stages/evaluate.py", (), (), ladder, ladder, (), ladder)
    bench = tmp_path / "logs" / "benchmarks"
    bench.mkdir(parents=True)
    (bench / "ingest.tsv").write_text("s\th:m:s\tmax_rss\tcpu_time\n1.5\t0:00:01\t80\t1.2\n")
    (bench / "unet.tsv").write_text("s\th:m:s\nNA\t-\n")
    run = load_run(tmp_path, stages, {"seed": 1}, ["seed"], self_stage=None)
    assert set(run.benchmarks) == {"ingest"} and run.benchmarks["ingest"]["s"] == 1.5
    assert any("unet.tsv" in m and "not a number" in m for m in run.missing)
    assert any("ladder.json" in m for m in run.missing)
    rows = {r[0]: r for r in read_page(render_html(build_document(run), css="")).tables["runtime-table"]["rows"]}
    assert rows["ingest"][1] == "1.5" and rows["unet"][1] == rows["evaluate"][1] == "–"


def test_a_job_that_found_its_stage_up_to_date_shows_no_run_time(tmp_path):
    """The job ran `run-stage`, DVC found the stage as recorded: its benchmark timed that check (2 s),
    not the stage, so the table shows a dash rather than a run time the stage never had."""
    from echocem.stage_job import UP_TO_DATE

    stages = {n: Stage(n, f"python stages/{n}.py", (), (), (), (), (), ()) for n in ("ingest", "unet")}
    bench = tmp_path / "logs" / "benchmarks"
    bench.mkdir(parents=True)
    for name in stages:
        (bench / f"{name}.tsv").write_text("s\th:m:s\tmax_rss\tcpu_time\n2.1\t0:00:02\t73\t2.0\n")
    (tmp_path / "logs" / "ingest.log").write_text("[run-stage] ingest: $ python stages/ingest.py\n"
                                                  "[run-stage] ingest: recorded\n")
    (tmp_path / "logs" / "unet.log").write_text(f"[run-stage] unet: {UP_TO_DATE}\n")
    run = load_run(tmp_path, stages, {"seed": 1}, ["seed"], self_stage=None)
    assert set(run.benchmarks) == {"ingest"}
    rows = {r[0]: r for r in read_page(render_html(build_document(run), css="")).tables["runtime-table"]["rows"]}
    assert rows["ingest"][1] == "2.1" and rows["unet"][1] == "–"


def test_data_card_splits_are_compared_side_by_side():
    card = {"splits": {"train": {"n_patches": 14, "per_well": {"2": 6, "12": 8}},
                       "test": {"n_patches": 2, "per_well": {"7": 2}}}}
    run = Run(data_card=card)
    table = read_page(render_html(build_document(run), css="")).tables["table-0"]
    assert table["header"] == ["key", "train", "test"]
    assert table["rows"] == [["n_patches", "14", "2"], ["per_well.2", "6", "–"], ["per_well.7", "–", "2"],
                             ["per_well.12", "8", "–"]]


def test_generator_section_with_a_one_draw_floor_says_it_has_no_spread():
    """The default size takes one floor draw (std None): the table says so rather than fail."""
    from types import SimpleNamespace

    from echocem.report.document import generated_patches_section

    scores = {"amplitude": 0.4, "encoder": 0.38, "combined": 0.43}
    iou = {"iou": 0.39, "iou_class1": 0.09, "iou_class2": 0.7, "n_patches": 64}
    g = {"sinkhorn": {"real (training wells)": scores, "generated: same masks": scores},
         "floor_draws": {"amplitude": {"mean": 0.15, "n": 1, "std": None},
                         "encoder": {"mean": 0.62, "n": 3, "std": 0.01}},
         "unet_real_heldout": iou, "faithfulness": {"generated: same masks": iou},
         "faithfulness_ratio": {"generated: same masks": 0.53}, "checks": {"faithfulness >= 0.9 x real IoU": False}}
    section = generated_patches_section(SimpleNamespace(gen_patches=g, gen_patches_figures={}, study=None,
                                                        study_figure=None))
    table = next(b for b in section.blocks if isinstance(b, Table) and b.id == "gen-sinkhorn")
    assert table.rows[-1] == ["floor spread over draws (mean ± std)", "0.150 (1 draw: no spread)",
                              "0.620 ± 0.010 (3)", "–"]
