"""A damaged store is never read silently: a flipped byte anywhere, a damaged chunk or a truncated
file is a DataError naming the store and how to rebuild it; an undamaged byte reads as before."""
from __future__ import annotations

import logging

import h5py
import pytest
from fixtures_atd12k import make_atd12k_tree

from animvfi_pipeline.data.atd12k import scan_atd12k
from animvfi_pipeline.data.h5store import IngestionConfig, TripletStore, write_triplets_h5
from animvfi_pipeline.errors import DataError

HINT = "kedro run --pipelines data_ingestion"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("integrity")
    root = tmp / "atd"
    make_atd12k_tree(root, n_train_clips=3, n_test=2, triplets_per_clip=2, extra_times=(0.25,))
    path = tmp / "triplets.h5"
    write_triplets_h5(path, scan_atd12k(root), IngestionConfig(size=(40, 24), workers=0), source_root=root,
                      progress=False)
    return path


def read_everything(path) -> list:
    with TripletStore(path) as s:
        out = [s.meta.to_json(), s.height, s.width, s.extra_times, s.source_root, s.skipped, s.ingestion_config]
        for i in range(len(s)):
            out += [s.frames(i).tobytes(), s.flows(i).tobytes(), s.extra(i).tobytes()]
    return out


def damaged_copy(path, tmp_path, offset: int, xor: int = 0x5A):
    data = bytearray(path.read_bytes())
    data[offset] ^= xor
    bad = tmp_path / "triplets.h5"
    bad.write_bytes(bytes(data))
    return bad


def test_a_flipped_byte_anywhere_is_an_error_or_harmless(store, tmp_path, caplog):
    reference = read_everything(store)
    size = store.stat().st_size
    outcomes = {"refused": 0, "unchanged": 0}
    with caplog.at_level(logging.ERROR):
        for offset in range(0, size, max(1, size // 120)):  # ~120 places spread over the whole file
            bad = damaged_copy(store, tmp_path, offset)
            try:
                content = read_everything(bad)
            except DataError as exc:
                assert str(exc).startswith(str(bad)) and HINT in str(exc), str(exc)
                outcomes["refused"] += 1
                continue
            # Padding and free space: nothing that is read changed.
            assert content == reference, f"byte {offset} of {size} changed what the store returns, silently"
            outcomes["unchanged"] += 1
    assert outcomes["refused"] > outcomes["unchanged"] > 0


def test_a_damaged_frame_chunk_is_reported_when_that_triplet_is_read(store, tmp_path):
    with h5py.File(store, "r") as f:
        chunk = f["frames"].id.get_chunk_info(3)
    bad = damaged_copy(store, tmp_path, chunk.byte_offset + chunk.size // 2)
    s = TripletStore(bad)  # the chunk is only checked when it is read
    s.frames(2)
    with pytest.raises(DataError, match=r"frames of triplet 3.*" + HINT) as err:
        s.frames(3)
    assert str(err.value).startswith(str(bad))


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_a_truncated_store_is_refused_on_open(store, tmp_path, keep):
    bad = tmp_path / "triplets.h5"
    data = store.read_bytes()
    bad.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(DataError, match="truncated.*" + HINT) as err:
        TripletStore(bad)
    assert str(err.value).startswith(str(bad))
