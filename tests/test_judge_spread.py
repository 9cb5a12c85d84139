"""benchmarks/judge_spread.py: the ratios of one judgement, their spread and check counts over judge seeds."""
from __future__ import annotations

import pandas as pd
import pytest

from benchmarks.judge_spread import per_training_seed, summarise, verdict_row


def test_verdict_row_divides_by_the_floor_and_keeps_the_faithfulness_ratio():
    verdict = {"sinkhorn": {"real (training wells)": {"amplitude": 0.1, "encoder": 0.5, "combined": 0.4},
                            "gen": {"amplitude": 0.25, "encoder": 0.2, "combined": 0.8}},
               "faithfulness_ratio": {"gen": 0.93}}
    assert verdict_row(verdict, "gen") == pytest.approx(
        {"amplitude / floor": 2.5, "encoder / floor": 0.4, "combined / floor": 2.0, "faithfulness ratio": 0.93})


def test_summary_gives_mean_std_range_and_how_many_seeds_meet_each_check():
    rows = pd.DataFrame({"steps": 6, "guidance": 2.0, "seed": [0, 1, 2, 3],
                         "amplitude / floor": [1.5, 2.0, 2.5, 3.0],   # at most 2 x: seeds 0 and 1
                         "faithfulness ratio": [0.85, 0.9, 0.95, 1.0]})  # at least 0.9: seeds 1, 2, 3
    other = rows.assign(steps=12, **{"amplitude / floor": 1.0, "faithfulness ratio": 0.5})
    out = summarise(pd.concat([rows, other])).set_index(["steps", "ratio"])
    amp = out.loc[(6, "amplitude / floor")]
    assert amp["mean"] == pytest.approx(2.25) and amp["std"] == pytest.approx(0.6455, abs=1e-4)
    assert (amp["min"], amp["max"], amp["judgements"], amp["holds"]) == (1.5, 3.0, 4, 2)
    assert out.loc[(6, "faithfulness ratio"), "holds"] == 3  # 0.9 itself meets "at least 0.9"
    assert out.loc[(12, "amplitude / floor"), "holds"] == 4 and out.loc[(12, "faithfulness ratio"), "holds"] == 0
    assert out.loc[(12, "amplitude / floor"), "std"] == 0


def test_training_seeds_pool_into_the_summary_and_each_gets_its_own_means():
    rows = pd.DataFrame({"steps": 6, "guidance": 2.0, "train seed": [7, 7, 8, 8], "seed": [0, 1, 0, 1],
                         "amplitude / floor": [1.0, 2.0, 3.0, 5.0], "faithfulness ratio": [0.95, 0.85, 0.5, 0.3]})
    out = summarise(rows).set_index("ratio")
    # every (training seed, judge seed) pair is one judgement
    assert out.loc["amplitude / floor", "judgements"] == 4 and out.loc["amplitude / floor", "mean"] == pytest.approx(2.75)
    assert out.loc["amplitude / floor", "holds"] == 2 and out.loc["faithfulness ratio", "holds"] == 1
    means = per_training_seed(rows).set_index("train seed")
    assert means.loc[7, "amplitude / floor"] == pytest.approx(1.5) and means.loc[8, "amplitude / floor"] == pytest.approx(4.0)
    assert means.loc[7, "faithfulness ratio"] == pytest.approx(0.9) and means.loc[8, "faithfulness ratio"] == pytest.approx(0.4)
