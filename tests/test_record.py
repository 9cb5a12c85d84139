"""Keeping output times across `dvc commit` (echocem.record), on files the test makes."""
from __future__ import annotations

import os

from echocem.record import output_mtimes, restore_mtimes


def test_times_replaced_by_a_link_to_an_older_file_are_put_back(tmp_path):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    for name in ("a.npz", "sub/b.png"):
        (out / name).write_bytes(b"result")
    single = tmp_path / "model.pt"
    single.write_bytes(b"weights")
    times = output_mtimes([out, single, tmp_path / "absent"])
    assert set(times) == {out, out / "sub", out / "a.npz", out / "sub" / "b.png", single}

    # what DVC's relinking does: replace the file by a link to an older cache object
    old = tmp_path / "cache_object"
    old.write_bytes(b"result")
    os.utime(old, ns=(1_000_000_000, 1_000_000_000))
    (out / "a.npz").unlink()
    os.link(old, out / "a.npz")
    os.utime(out, ns=(2_000_000_000, 2_000_000_000))

    reset = restore_mtimes(times)

    assert set(reset) == {out / "a.npz", out}
    assert {p: p.stat().st_mtime_ns for p in times} == times
    assert (out / "a.npz").read_bytes() == b"result"


def test_nothing_is_touched_when_no_time_changed(tmp_path):
    f = tmp_path / "x.json"
    f.write_text("{}")
    times = output_mtimes([f])
    assert restore_mtimes(times) == []
