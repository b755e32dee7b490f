"""HDF5 store: schema, splits by clip, error policies, atomic writes, reruns, lazy reading."""
from __future__ import annotations

import json
import multiprocessing as mp
import pickle

import h5py
import hdf5plugin
import numpy as np
import pytest
import torch
from fixtures_atd12k import frame_path, make_atd12k_tree, truncate

from animvfi_pipeline.data import h5store
from animvfi_pipeline.data.atd12k import clip_key, load_triplet, scan_atd12k
from animvfi_pipeline.data.h5store import IngestionConfig, TripletStore, assign_splits, write_triplets_h5
from animvfi_pipeline.errors import DataError

SIZE = (40, 24)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "atd"
    specs = make_atd12k_tree(root, n_train_clips=5, n_test=3, triplets_per_clip=2, extra_times=(0.25,))
    return root, specs


def _write(root, path, **overrides):
    cfg = IngestionConfig(**{"size": SIZE, "workers": 0, "val_fraction": 0.2, **overrides})
    return write_triplets_h5(path, scan_atd12k(root), cfg, source_root=root, progress=False)


def test_store_follows_the_documented_schema(tree, tmp_path):
    root, specs = tree
    path = tmp_path / "triplets.h5"
    result = _write(root, path)
    n, (w, h) = len(specs), SIZE
    assert result.n_triplets == n and not result.skipped
    with h5py.File(path, "r") as f:
        for name, dtype, shape in [
            ("frames", np.uint8, (n, 3, h, w, 3)),
            ("flows", np.float16, (n, 2, 2, h, w)),
            ("extra_frames", np.uint8, (n, 1, h, w, 3)),
        ]:
            ds = f[name]
            assert ds.dtype == dtype and ds.shape == shape
            assert ds.chunks == (1, *shape[1:])  # one triplet per chunk
            assert str(hdf5plugin.BLOSC_ID) in ds._filters  # the default codec: Blosc LZ4, bit-shuffled
        assert f.attrs["complete"] and f.attrs["format_version"] == 1
        assert (f.attrs["width"], f.attrs["height"]) == SIZE
        assert list(f.attrs["extra_times"]) == [0.25]
        assert f.attrs["source_root"] == str(root)
        assert json.loads(f.attrs["skipped"]) == []
        assert f["meta/roi"].dtype == np.int32 and f["meta/roi"].shape == (n, 4)

    store = TripletStore(path)
    assert len(store) == n and (store.width, store.height) == SIZE and store.extra_times == (0.25,)
    meta = store.meta
    assert list(meta["name"]) == [s.name for s in specs]
    assert set(meta.columns) >= {
        "name", "split", "clip", "level", "roi_x", "roi_y", "roi_w", "roi_h",
        "motion_type", "behavior", "flow_source", "orig_width", "orig_height",
    }
    # What is stored is what load_triplet gives (flows within float16 precision).
    records = scan_atd12k(root)
    for i in (0, n - 1):
        ref = load_triplet(records[i], size=SIZE, extra_times=(0.25,))
        np.testing.assert_array_equal(store.frames(i), ref.frames)
        np.testing.assert_allclose(store.flows(i), ref.flows, atol=1e-2)
        assert store.flows(i).dtype == np.float32
        np.testing.assert_array_equal(store.extra(i), ref.extra_frames)
        assert meta.loc[i, "level"] == ref.meta["level"]
        assert tuple(meta.loc[i, ["roi_x", "roi_y", "roi_w", "roi_h"]]) == ref.meta["roi"]
    assert store.frames(-1).shape == (3, h, w, 3)
    with pytest.raises(IndexError):
        store.frames(n)


def test_gzip_compression_and_no_flow(tree, tmp_path):
    root, _ = tree
    path = tmp_path / "gz.h5"
    _write(root, path, compression="gzip", flow_source="none", extra_times=())
    with h5py.File(path, "r") as f:
        assert f["frames"].compression == "gzip" and f["frames"].compression_opts == 1
        assert "flows" not in f and "extra_frames" not in f
    store = TripletStore(path)
    assert not store.has_flows and store.extra(0).shape == (0, SIZE[1], SIZE[0], 3)
    with pytest.raises(DataError, match="no flows"):
        store.flows(0)
    assert set(store.meta["flow_source"]) == {"none"}


def test_validation_is_carved_from_training_by_whole_clips(tree, tmp_path):
    root, specs = tree
    _write(root, tmp_path / "a.h5", seed=3)
    meta = TripletStore(tmp_path / "a.h5").meta
    by_split = {s: set(meta.loc[meta["split"] == s, "clip"]) for s in ("train", "val", "test")}
    assert by_split["val"] and by_split["train"]
    assert not by_split["train"] & by_split["val"]  # no shot on both sides
    assert list(meta.loc[meta["split"] == "test", "name"]) == [s.name for s in specs if s.split == "test"]
    assert (meta["clip"] == meta["name"].map(clip_key)).all()

    records = scan_atd12k(root)
    assert assign_splits(records, 0.2, seed=3) == list(meta["split"])  # deterministic from the seed
    draws = {tuple(assign_splits(records, 0.2, seed=s)) for s in range(10)}  # 5 clips to draw from
    assert len(draws) > 1
    assert "val" not in assign_splits(records, 0.0, seed=0)


def test_on_error_fail_raises_and_leaves_no_file(tree, tmp_path):
    root, specs = tree
    bad = frame_path(root, specs[3], 2)
    truncate(bad)
    path = tmp_path / "out.h5"
    with pytest.raises(DataError) as err:
        _write(root, path, on_error="fail")
    assert err.value.path == str(bad)
    assert list(tmp_path.glob("out.h5*")) == []  # neither the store nor a temporary


def test_on_error_skip_leaves_bad_triplets_out_and_reports_them(tree, tmp_path):
    root, specs = tree
    truncate(frame_path(root, specs[3], 2))
    (root / "test_2k_annotations" / specs[-1].name / f"{specs[-1].name}.json").write_text("{oops")
    result = _write(root, tmp_path / "out.h5", on_error="skip")
    store = TripletStore(tmp_path / "out.h5")
    assert len(store) == len(specs) - 2 == result.n_triplets
    assert specs[3].name not in set(store.meta["name"]) and specs[-1].name not in set(store.meta["name"])
    assert [s["name"] for s in store.skipped] == [specs[3].name, specs[-1].name]
    assert store.skipped[0]["path"] == str(frame_path(root, specs[3], 2))
    assert "truncated" in store.skipped[0]["reason"] and "JSON" in store.skipped[1]["reason"]
    with h5py.File(tmp_path / "out.h5", "r") as f:
        assert f["frames"].shape[0] == f["flows"].shape[0] == f["meta/name"].shape[0] == len(store)


def test_crash_mid_write_keeps_the_previous_store(tree, tmp_path, monkeypatch):
    root, _ = tree
    path = tmp_path / "triplets.h5"
    _write(root, path)
    before = path.read_bytes()

    calls = {"n": 0}
    real = h5store.load_triplet

    def dies_on_the_fourth(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # the user pressing Ctrl-C halfway
        return real(*args, **kwargs)

    monkeypatch.setattr(h5store, "load_triplet", dies_on_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        _write(root, path, seed=99)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("triplets.h5")] == ["triplets.h5"]


def test_rerun_gives_identical_store_with_or_without_workers(tree, tmp_path):
    root, _ = tree
    _write(root, tmp_path / "one.h5")
    _write(root, tmp_path / "two.h5")
    assert (tmp_path / "one.h5").read_bytes() == (tmp_path / "two.h5").read_bytes()

    _write(root, tmp_path / "pool.h5", workers=2)
    a, b = TripletStore(tmp_path / "one.h5"), TripletStore(tmp_path / "pool.h5")
    assert a.meta.equals(b.meta)
    for i in range(len(a)):
        np.testing.assert_array_equal(a.frames(i), b.frames(i))
        np.testing.assert_array_equal(a.flows(i), b.flows(i))


def test_incomplete_or_missing_store_is_refused(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        TripletStore(tmp_path / "missing.h5")
    with h5py.File(tmp_path / "half.h5", "w") as f:
        f.create_dataset("frames", shape=(1, 3, 2, 2, 3), dtype=np.uint8)
        f.attrs["format_version"] = 1
    with pytest.raises(DataError, match="incomplete") as err:
        TripletStore(tmp_path / "half.h5")
    assert str(err.value).startswith(str(tmp_path / "half.h5"))
    (tmp_path / "junk.h5").write_bytes(b"junk")
    with pytest.raises(DataError, match="not a readable HDF5"):
        TripletStore(tmp_path / "junk.h5")


def _read_sum(args):
    store, i = args
    return int(store.frames(i).astype(np.int64).sum()), store.meta.loc[i, "name"]


def _read_in_child(store, i, queue):
    queue.put(_read_sum((store, i)))


def test_store_is_lazy_and_works_in_worker_processes(tree, tmp_path):
    root, _ = tree
    path = tmp_path / "triplets.h5"
    _write(root, path)
    store = TripletStore(path)
    expected = [(int(store.frames(i).astype(np.int64).sum()), store.meta.loc[i, "name"]) for i in range(3)]
    assert store._file is not None  # the parent has the file open now ...
    clone = pickle.loads(pickle.dumps(store))
    assert clone._file is None  # ... but a pickled copy does not carry the handle
    assert _read_sum((clone, 1)) == expected[1]
    # As in a DataLoader with fork: the child inherits the open handle and must not use it.
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_read_in_child, args=(store, 2, queue))
    child.start()
    assert queue.get(timeout=60) == expected[2]
    child.join(timeout=60)
    assert child.exitcode == 0
    # And as with spawn / forkserver workers: the store travels pickled.
    with mp.get_context("spawn").Pool(1) as pool:
        assert pool.map(_read_sum, [(store, i) for i in range(3)]) == expected


@pytest.mark.parametrize("codec", ["blosc-lz4", "blosc-zstd", "lzf"])
def test_every_codec_stores_the_same_pixels_and_flows(tree, tmp_path, codec):
    # Lossless: whatever the codec, training reads back exactly what an uncompressed store holds.
    root, _ = tree
    _write(root, tmp_path / "plain.h5", compression="none")
    _write(root, tmp_path / f"{codec}.h5", compression=codec)
    plain, packed = TripletStore(tmp_path / "plain.h5"), TripletStore(tmp_path / f"{codec}.h5")
    assert len(plain) == len(packed) > 0
    for i in range(len(plain)):
        assert np.array_equal(plain.frames(i), packed.frames(i))
        assert np.array_equal(plain.flows(i), packed.flows(i))
    assert (tmp_path / f"{codec}.h5").stat().st_size < (tmp_path / "plain.h5").stat().st_size


def test_unknown_codec_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="blosc-lz4"):
        h5store.IngestionConfig(size=SIZE, compression="zip")


def test_tiled_chunks_hold_the_same_triplets_and_serve_any_crop(tree, tmp_path):
    # chunk_tile only changes how the bytes are cut up: every read, whole or windowed, is the same.
    root, _ = tree
    _write(root, tmp_path / "whole.h5", chunk_tile=None, compression="none")
    _write(root, tmp_path / "tiled.h5", chunk_tile=16, workers=2)
    _write(root, tmp_path / "again.h5", chunk_tile=16, workers=2)
    assert (tmp_path / "tiled.h5").read_bytes() == (tmp_path / "again.h5").read_bytes()
    w, h = SIZE
    with h5py.File(tmp_path / "tiled.h5", "r") as f:
        assert f["frames"].chunks == (1, 3, 16, 16, 3)
        assert f["flows"].chunks == (1, 2, 2, 16, 16)
        assert f["extra_frames"].chunks == (1, 1, 16, 16, 3)
    whole, tiled = TripletStore(tmp_path / "whole.h5"), TripletStore(tmp_path / "tiled.h5")
    # Windows inside one tile, across tile borders, at the bottom-right edge (partial tiles), whole.
    windows = [(0, 0, 8, 8), (5, 9, 16, 20), (h - 11, w - 17, 11, 17), (0, 0, h, w)]
    for i in range(len(whole)):
        assert np.array_equal(tiled.frames(i), whole.frames(i))
        assert np.array_equal(tiled.flows(i), whole.flows(i))
        assert np.array_equal(tiled.extra(i), whole.extra(i))
        for top, left, hh, ww in windows:
            win = (top, left, hh, ww)
            ys, xs = slice(top, top + hh), slice(left, left + ww)
            assert np.array_equal(tiled.frames(i, win), whole.frames(i)[:, ys, xs])
            assert np.array_equal(tiled.flows(i, win), whole.flows(i)[..., ys, xs])
            assert np.array_equal(tiled.extra(i, win), whole.extra(i)[:, ys, xs])
    with pytest.raises(ValueError, match="not inside"):
        tiled.frames(0, (h - 4, 0, 8, 8))


def test_a_stored_dis_prior_is_the_flow_nets_prior_of_the_whole_frames(tree, tmp_path):
    # Precomputed at ingestion on the whole stored frame1 / frame3: what FlowNet.prior computes
    # for those frames (at inference on frames of the stored size), rounded to float16.
    from animvfi_pipeline.models.flownet import FlowNet, FlowNetConfig

    root, _ = tree
    _write(root, tmp_path / "prior.h5", chunk_tile=16, dis_prior="fast")
    store = TripletStore(tmp_path / "prior.h5")
    assert store.has_prior and store.prior_preset == "fast"
    net = FlowNet(FlowNetConfig(init="dis", dis_preset="fast"))
    for i in (0, len(store) - 1):
        frames = torch.from_numpy(store.frames(i)).permute(0, 3, 1, 2).float() / 255
        expected = net.prior(frames[0:1], frames[2:3])[0].numpy()
        assert np.array_equal(store.prior(i), expected.astype(np.float16).astype(np.float32))
        assert np.array_equal(store.prior(i, (3, 5, 12, 20)), store.prior(i)[:, 3:15, 5:25])
    plain = TripletStore(_write(root, tmp_path / "plain.h5").path)
    assert not plain.has_prior and plain.prior_preset is None
    with pytest.raises(DataError, match="no DIS prior"):
        plain.prior(0)
    with pytest.raises(ValueError, match="dis_prior"):
        IngestionConfig(size=SIZE, dis_prior="slow")
    with pytest.raises(ValueError, match="chunk_tile"):
        IngestionConfig(size=SIZE, chunk_tile=4)


def test_the_fast_float16_conversion_gives_numpys_bits():
    # Stored flows go through h5store.to_float16 (OpenCV); it must round exactly like NumPy,
    # signed zeros, subnormals and overflow to inf included.
    rng = np.random.default_rng(0)
    patterns = rng.integers(0, 2**32, 400_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    edges = np.array([0.0, -0.0, 65504, 65519.99, 65520, -1e6, 1e-45, -1e-45, 2**-25, -(2**-25), 3 * 2**-26],
                     np.float32)
    flows_like = rng.uniform(-500, 500, (2, 2, 24, 40)).astype(np.float32)
    for a in (patterns[np.isfinite(patterns)], edges, flows_like):
        with np.errstate(over="ignore"):
            expected = a.astype(np.float16)
        got = h5store.to_float16(a)
        assert got.dtype == np.float16 and got.shape == a.shape
        assert np.array_equal(got.view(np.uint16), expected.view(np.uint16))
