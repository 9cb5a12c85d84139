"""echocem.io's .npz writer: the same arrays give the same bytes, deflated at its level."""
from __future__ import annotations

import io
import zipfile
import zlib

import numpy as np

from echocem.io import NPZ_COMPRESSLEVEL, load_npz, save_npz


def test_save_npz_is_lossless_byte_stable_and_deflated_at_its_level(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"probs": rng.random((4, 3, 16, 24)).astype(np.float16),
              "labels": np.repeat(np.arange(3, dtype=np.int8), 2000).reshape(6, 1000),
              "ids": np.array(["a", "b"])}
    first, second = tmp_path / "a.npz", tmp_path / "b.npz"
    save_npz(first, **arrays)
    save_npz(second, **{k: arrays[k] for k in reversed(list(arrays))})
    assert first.read_bytes() == second.read_bytes()  # the order of the arguments does not matter
    back = load_npz(first)
    assert set(back) == set(arrays) and all(np.array_equal(back[k], arrays[k]) for k in arrays)
    with zipfile.ZipFile(first) as zf:
        info = zf.getinfo("labels.npy")
        assert info.compress_type == zipfile.ZIP_DEFLATED
        raw = io.BytesIO()
        np.lib.format.write_array(raw, arrays["labels"], allow_pickle=False)
        # a raw deflate stream of the labels at the module's level has exactly the stored size
        deflate = zlib.compressobj(NPZ_COMPRESSLEVEL, zlib.DEFLATED, -15)
        assert info.compress_size == len(deflate.compress(raw.getvalue()) + deflate.flush())
