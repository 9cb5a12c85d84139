"""Pseudo-labels: confidence filter, and the out-of-fold rules that keep self-training honest."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from echocem.io import EchoCemError
from echocem.seg.pseudo import (
    IGNORE,
    PseudoLabels,
    assign,
    check_plan,
    confident_labels,
    eligible_teachers,
    fold_students,
    make_pseudo_labels,
    student,
)

H, W = 8, 12  # small patches: the logic does not depend on the size


def sure(n: int, cls: int, p: float = 0.9) -> np.ndarray:
    """(n, 3, H, W) probabilities: class `cls` with probability p everywhere."""
    out = np.full((n, 3, H, W), (1 - p) / 2, dtype=np.float32)
    out[:, cls] = p
    return out


def test_confident_labels_drop_unsure_pixels_and_padding():
    probs = sure(2, 1, 0.9)
    probs[0, 0, 0, :], probs[0, 1, 0, :], probs[0, 2, 0, :] = 0.4, 0.35, 0.25  # row 0 of patch 0: max 0.4
    labels, frac = confident_labels(probs, [W, 6], threshold=0.8)
    assert labels.dtype == np.int8
    assert (labels[0, 0] == IGNORE).all() and (labels[0, 1:] == 1).all()
    assert (labels[1, :, :6] == 1).all() and (labels[1, :, 6:] == IGNORE).all()
    # fractions over real pixels only: 7 of 8 rows; all of the 6 real columns
    np.testing.assert_allclose(frac, [7 / 8, 1.0])
    with pytest.raises(EchoCemError, match="threshold"):
        confident_labels(probs, [W, W], threshold=0.0)


def test_pseudo_labels_never_come_from_a_model_that_trained_on_the_patch():
    ids = ["p0", "p1", "p2", "p3"]
    widths = [W] * 4
    teachers_train = {"A": {"p0", "p1", "x9"}, "B": set()}
    probs = {"A": sure(4, 2, 0.99), "B": sure(4, 1, 0.95)}
    pseudo = make_pseudo_labels(ids, widths, probs, teachers_train, threshold=0.8, min_fraction=0.5)
    table = pseudo.table.set_index("id")
    assert table.loc["p0", "producers"] == "B" and table.loc["p2", "producers"] == "A+B"
    # p0, p1: only B may label them; p2, p3: A and B disagree, nothing reaches 0.8
    assert pseudo.ids.tolist() == ["p0", "p1"]
    assert (pseudo.labels == 1).all()
    assert pseudo.producers == (("B",), ("B",))
    assert table.loc["p2", "reason"].startswith("fewer than 0.5")
    # whatever A says about the patches it trained on changes nothing there
    noisy = {"A": np.random.default_rng(0).dirichlet([1, 1, 1], size=(4, H, W)).transpose(0, 3, 1, 2),
             "B": probs["B"]}
    again = make_pseudo_labels(ids, widths, noisy, teachers_train, threshold=0.8, min_fraction=0.5)
    np.testing.assert_array_equal(again.labels[:2], pseudo.labels)
    check_plan(assign(pseudo, []), pseudo, [], teachers_train)


def test_a_patch_every_teacher_trained_on_gets_no_label():
    pseudo = make_pseudo_labels(["p0", "p1"], [W, W], {"A": sure(2, 1), "B": sure(2, 1)},
                                {"A": {"p0"}, "B": {"p0"}}, threshold=0.8, min_fraction=0.0)
    assert pseudo.ids.tolist() == ["p1"]
    row = pseudo.table.set_index("id").loc["p0"]
    assert row["n_producers"] == 0 and not row["kept"] and "every teacher" in row["reason"]


def test_check_plan_catches_a_label_from_a_teacher_that_trained_on_the_patch():
    pseudo = PseudoLabels(ids=np.array(["p0"]), labels=np.zeros((1, H, W), np.int8), producers=(("A",),),
                          table=pd.DataFrame())
    with pytest.raises(EchoCemError, match="teacher 'A' trained on this patch"):
        check_plan(assign(pseudo, []), pseudo, [], {"A": {"p0"}})


def test_no_model_is_trained_on_its_own_pseudo_labels():
    ids = [f"p{i}" for i in range(6)]
    teachers = {"fold_0": set(), "fold_1": set(), "fold_2": set()}
    probs = {name: sure(6, 1, 0.9) for name in teachers}
    # retraining the same three models: each one's labels come from the two others
    for name in teachers:
        st = student(name)  # its own lineage is itself
        pseudo = make_pseudo_labels(ids, [W] * 6, probs, teachers, 0.8, 0.5, exclude=[name])
        plan = assign(pseudo, [st])
        assert len(plan) == 6
        assert all(name not in pseudo.producers[pos] for pos in plan["position"])
        check_plan(plan, pseudo, [st], teachers)
    # labels every teacher produced: none may go back to any of them
    shared = make_pseudo_labels(ids, [W] * 6, probs, teachers, 0.8, 0.5)
    students = [student(name) for name in teachers]
    assert assign(shared, students).empty
    forged = pd.DataFrame({"student": ["fold_1"], "id": ["p3"], "position": [3]})
    with pytest.raises(EchoCemError, match=r"own lineage \['fold_1'\] produced the label"):
        check_plan(forged, shared, students, teachers)


def test_out_of_fold_students_never_learn_the_wells_they_predict():
    # test wells 7-9 are scored; unlabelled well 12 is not
    wells = np.array([7, 7, 8, 8, 9, 12, 12])
    ids = np.array([f"well_{w}_patch_{i}" for i, w in enumerate(wells)])
    teachers = {"main": {"t0", "t1"}, "oof_0": {"t0"}}
    probs = {"main": sure(7, 2, 0.95), "oof_0": sure(7, 2, 0.9)}
    pseudo = make_pseudo_labels(ids, [W] * 7, probs, teachers, 0.8, 0.5)
    studs = fold_students(ids, wells, [[7], [8, 9]], train_ids=["t0", "t1"])
    plan = assign(pseudo, studs)
    got = plan.groupby("student")["id"].apply(set).to_dict()
    assert got["student_0"] == set(ids[wells != 7])
    assert got["student_1"] == set(ids[~np.isin(wells, [8, 9])])
    for name, st in studs.items():
        assert not got[name] & st.scored_ids
    check_plan(plan, pseudo, studs, teachers)
    forged = pd.concat([plan, pd.DataFrame({"student": ["student_0"], "id": [ids[0]], "position": [0]})])
    with pytest.raises(EchoCemError, match="it predicts this patch"):
        check_plan(forged, pseudo, studs, teachers)
    with pytest.raises(EchoCemError, match="repeats a well"):
        fold_students(ids, wells, [[7], [7, 8]])


def test_random_plans_obey_every_rule():
    rng = np.random.default_rng(11)
    ids = np.array([f"p{i}" for i in range(40)])
    names = [f"t{k}" for k in range(4)]
    teachers = {t: set(ids[rng.random(40) < 0.3]) for t in names}
    probs = {t: rng.dirichlet([0.3, 0.3, 0.3], size=(40, H, W)).transpose(0, 3, 1, 2).astype(np.float32)
             for t in names}
    for t in names:  # make some teachers confident so that some patches pass
        probs[t][: 20, 1] += 3.0
        probs[t] /= probs[t].sum(axis=1, keepdims=True)
    studs = [student(f"t{k}", train_ids=ids[rng.random(40) < 0.2], scored_ids=ids[rng.random(40) < 0.3])
             for k in range(3)]
    for st in studs:
        pseudo = make_pseudo_labels(ids, rng.integers(4, W + 1, 40), probs, teachers, 0.7, 0.3,
                                    exclude=st.own_teachers)
        assert 0 < len(pseudo.ids) < 40
        plan = assign(pseudo, [st])
        for pid, pos in plan[["id", "position"]].itertuples(index=False):
            assert pid == pseudo.ids[pos]
            assert pid not in st.scored_ids and pid not in st.train_ids
            assert all(pid not in teachers[t] for t in pseudo.producers[pos])
            assert st.name not in pseudo.producers[pos]
        # and every allowed pair is in the plan (nothing dropped without a reason)
        allowed = {p for p in pseudo.ids if p not in st.scored_ids and p not in st.train_ids}
        assert set(plan["id"]) == allowed
        check_plan(plan, pseudo, [st], teachers)


def test_eligibility_and_bad_inputs():
    names, ok = eligible_teachers(["a", "b"], {"B": {"a"}, "A": set()}, exclude=["A"])
    assert names == ["A", "B"] and ok.tolist() == [[False, False], [False, True]]
    with pytest.raises(EchoCemError, match="excluded teachers"):
        eligible_teachers(["a"], {"A": set()}, exclude=["Z"])
    with pytest.raises(EchoCemError, match="differ from teachers"):
        make_pseudo_labels(["a"], [W], {"A": sure(1, 1)}, {"B": set()}, 0.8, 0.5)
    with pytest.raises(EchoCemError, match="not unique"):
        make_pseudo_labels(["a", "a"], [W, W], {"A": sure(2, 1)}, {"A": set()}, 0.8, 0.5)
    with pytest.raises(EchoCemError, match="shape"):
        make_pseudo_labels(["a", "b"], [W, W], {"A": sure(1, 1)}, {"A": set()}, 0.8, 0.5)
    with pytest.raises(EchoCemError, match="min_fraction"):
        make_pseudo_labels(["a"], [W], {"A": sure(1, 1)}, {"A": set()}, 0.8, 1.5)
