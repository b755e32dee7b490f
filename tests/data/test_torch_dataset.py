"""TripletDataset: samples a trainer can trust, whatever augmentation did to them."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from animvfi_pipeline.data.torch_dataset import TripletDataset, to_float
from animvfi_pipeline.errors import DataError
from animvfi_pipeline.models.flownet import FlowNet, FlowNetConfig
from animvfi_pipeline.models.warp import warp

H, W = 40, 56
SHIFT = (8, -4)  # frame1 -> frame3 displacement (x, y); multiples of 4 so t = 0.25 lands on pixels


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth random colours: bilinear warping of it is accurate to well under a grey level."""
    import cv2

    small = rng.integers(0, 256, size=(h // 8 + 2, w // 8 + 2, 3)).astype(np.float32)
    big = cv2.resize(small, (w + 64, h + 64), interpolation=cv2.INTER_CUBIC)
    return np.clip(big, 0, 255).astype(np.uint8)


class TranslationStore:
    """The TripletStore reading interface over frames that move by an exact translation."""

    extra_times = [0.25, 0.75]
    height, width = H, W
    path = "memory://translation"

    def __init__(self, n: int = 3, seed: int = 0):
        rng = np.random.default_rng(seed)
        dx, dy = SHIFT
        self._frames, self._extra = [], []
        for _ in range(n):
            tex = _texture(rng, H, W)

            def at(t: float, tex=tex) -> np.ndarray:
                # content at time t is the texture moved by t * SHIFT: frame(p) = tex(p - t*d)
                ox, oy = 32 - int(t * dx), 32 - int(t * dy)
                return tex[oy : oy + H, ox : ox + W]

            self._frames.append(np.stack([at(0.0), at(0.5), at(1.0)]))
            self._extra.append(np.stack([at(t) for t in self.extra_times]))
        self._flow = np.zeros((2, 2, H, W), np.float32)
        self._flow[0, 0], self._flow[0, 1] = dx, dy  # flow 1 -> 3
        self._flow[1] = -self._flow[0]  # flow 3 -> 1

    def __len__(self) -> int:
        return len(self._frames)

    def indices(self, split: str) -> np.ndarray:
        return np.arange(len(self)) if split == "train" else np.array([], dtype=np.int64)

    def frames(self, i: int, window=None) -> np.ndarray:
        return _crop(self._frames[i], window, axis=1)

    def flows(self, i: int, window=None, dtype=np.float32) -> np.ndarray:
        return _crop(self._flow, window, axis=2).copy()

    def extra(self, i: int, window=None) -> np.ndarray:
        return _crop(self._extra[i], window, axis=1)


def _crop(a: np.ndarray, window, axis: int) -> np.ndarray:
    """``a`` cut to ``window`` (top, left, height, width) along axes ``axis`` and ``axis + 1``."""
    if window is None:
        return a
    top, left, h, w = window
    index = [slice(None)] * a.ndim
    index[axis], index[axis + 1] = slice(top, top + h), slice(left, left + w)
    return a[tuple(index)]


def _interior_error(a: torch.Tensor, b: torch.Tensor, margin: int = 10) -> float:
    """Max abs difference away from the borders, where content leaves the frame."""
    return (a - b)[..., margin:-margin, margin:-margin].abs().max().item()


def test_samples_have_the_documented_shapes_and_ranges():
    ds = TripletDataset(TranslationStore(), "train", crop=(32, 48))
    s = ds[0]
    for key in ("img0", "img1", "target"):
        assert s[key].shape == (3, 32, 48) and s[key].dtype == torch.float32
        assert 0.0 <= s[key].min() and s[key].max() <= 1.0
    assert s["flow_01"].shape == s["flow_10"].shape == (2, 32, 48)
    assert s["t"].item() == 0.5 and s["index"].item() == 0


@pytest.mark.parametrize("colour", [False, True])
def test_every_augmentation_keeps_flow_frames_and_t_consistent(colour):
    # With colour augmentation the three frames must be recoloured alike, or the flow no longer
    # maps one onto the other and the target is no in-between of the ends.
    ds = TripletDataset(TranslationStore(), "train", crop=(32, 40), augment=True, times="all", seed=3, colour=colour)
    plain = TripletDataset(TranslationStore(), "train", crop=(32, 40), augment=True, times="all", seed=3)
    signs, times, recoloured = set(), set(), 0
    for epoch in range(6):
        ds.set_epoch(epoch)
        plain.set_epoch(epoch)
        for i in range(len(ds)):
            s = ds[i]
            recoloured += (s["img0"] - plain[i]["img0"]).abs().mean().item() > 0.02
            img0, img1, tgt = s["img0"][None], s["img1"][None], s["target"][None]
            f01, f10, t = s["flow_01"][None], s["flow_10"][None], s["t"].item()
            assert _interior_error(warp(img1, f01), img0) < 0.02
            assert _interior_error(warp(img0, f10), img1) < 0.02
            # linear motion: the target is frame0 pulled a fraction t along flow_10
            assert _interior_error(warp(img0, t * f10), tgt) < 0.02
            signs.add((np.sign(f01[0, 0, 0, 0].item()), np.sign(f01[0, 1, 0, 0].item())))
            times.add(t)
    # the check above must have seen every flip / reversal combination to mean anything
    assert len(signs) == 4
    assert times == {0.25, 0.5, 0.75}
    assert (recoloured > len(ds)) if colour else recoloured == 0


def test_times_all_adds_the_extra_frames_as_samples():
    store = TranslationStore(n=2)
    assert len(TripletDataset(store, "train")) == 2
    ds = TripletDataset(store, "train", times="all")
    assert len(ds) == 6
    assert sorted(ds[i]["t"].item() for i in range(3)) == [0.25, 0.5, 0.75]


def test_augmentation_is_reproducible_and_changes_with_the_epoch():
    ds = TripletDataset(TranslationStore(), "train", crop=(24, 24), augment=True, seed=7)
    ds.set_epoch(1)
    a, b = ds[1], ds[1]
    assert torch.equal(a["img0"], b["img0"])
    changed = False
    for epoch in range(2, 6):
        ds.set_epoch(epoch)
        changed |= not torch.equal(ds[1]["img0"], a["img0"])
    assert changed


def test_without_augment_the_crop_is_centred_and_fixed():
    store = TranslationStore()
    ds = TripletDataset(store, "train", crop=(20, 30))
    full = torch.from_numpy(store.frames(0)[0].copy()).permute(2, 0, 1).float() / 255
    assert torch.equal(ds[0]["img0"], full[:, 10:30, 13:43])


def test_a_store_without_flow_gives_samples_without_flow():
    store = TranslationStore()
    store.has_flows = False
    store.flows = None  # must not be called
    s = TripletDataset(store, "train", crop=(24, 24), augment=True)[0]
    assert "flow_01" not in s and "flow_10" not in s
    assert s["img0"].shape == s["target"].shape == (3, 24, 24)


def test_flows_can_be_left_unread():
    store = TranslationStore()
    store.flows = None  # must not be called
    s = TripletDataset(store, "train", flows=False)[0]
    assert "flow_01" not in s and s["img0"].shape == (3, H, W)


def test_crop_larger_than_the_frames_is_a_data_error_naming_the_store():
    with pytest.raises(DataError, match="memory://translation.*larger"):
        TripletDataset(TranslationStore(), "train", crop=(64, 64))


# --- with the real HDF5 store and DataLoader worker processes ---------------------------------


def _write_store(path, n: int = 6) -> None:
    """A tiny store in the documented schema (docs/architecture.md)."""
    h5py = pytest.importorskip("h5py")
    src = TranslationStore(n=n)
    with h5py.File(path, "w") as f:
        f.create_dataset("frames", data=np.stack([src.frames(i) for i in range(n)]), chunks=(1, 3, H, W, 3))
        f.create_dataset("flows", data=np.stack([src.flows(i) for i in range(n)]).astype(np.float16))
        f.create_dataset("extra_frames", data=np.stack([src.extra(i) for i in range(n)]))
        splits = ["train"] * (n - 2) + ["val", "test"]
        str_dt = h5py.string_dtype()
        meta = f.create_group("meta")
        meta.create_dataset("name", data=[f"Japan_v1_{i}_000001_s1" for i in range(n)], dtype=str_dt)
        meta.create_dataset("split", data=splits, dtype=str_dt)
        meta.create_dataset("clip", data=[f"Japan_v1_{i}" for i in range(n)], dtype=str_dt)
        meta.create_dataset("level", data=np.full(n, -1))
        meta.create_dataset("roi", data=np.full((n, 4), -1, np.int32))
        for col in ("motion_type", "behavior"):
            meta.create_dataset(col, data=["unknown"] * n, dtype=str_dt)
        meta.create_dataset("flow_source", data=["gt"] * n, dtype=str_dt)
        meta.create_dataset("orig_width", data=np.full(n, W))
        meta.create_dataset("orig_height", data=np.full(n, H))
        f.attrs.update(format_version=1, height=H, width=W, extra_times=[0.25, 0.75], source_root="memory",
                       skipped="[]")
        f.attrs["complete"] = True


def test_dataloader_workers_read_the_hdf5_store_like_the_main_process(tmp_path):
    h5store = pytest.importorskip("animvfi_pipeline.data.h5store")
    path = tmp_path / "triplets.h5"
    _write_store(path)
    store = h5store.TripletStore(path)
    ds = TripletDataset(store, "train", crop=(32, 32), augment=True, times="all")
    assert len(ds) == 4 * 3
    # the main process reads first, so a handle exists before the workers fork
    inline = [ds[i] for i in range(len(ds))]
    loader = DataLoader(ds, batch_size=4, num_workers=2, shuffle=False)
    batches = list(loader)
    for key in ("img0", "target", "flow_01", "t", "index"):
        assert torch.equal(torch.cat([b[key] for b in batches]), torch.stack([s[key] for s in inline]))
    assert set(torch.cat([b["index"] for b in batches]).tolist()) == set(store.indices("train").tolist())


def test_prior_is_the_dis_flow_the_model_would_compute_for_the_augmented_pair():
    # Computed in the worker, it must be exactly what FlowNet.prior gives for the same two frames
    # after crops, flips and reversal -- else training and inference would see different inputs.
    ds = TripletDataset(TranslationStore(), "train", crop=(32, 40), augment=True, seed=1, prior="medium")
    net = FlowNet(FlowNetConfig(channels=(8, 8, 8), depth=1, init="dis", dis_preset="medium"))
    for epoch in range(4):
        ds.set_epoch(epoch)
        s = ds[0]
        assert s["prior"].shape == (4, 32, 40) and s["prior"].dtype == torch.float32
        assert torch.equal(s["prior"], net.prior(s["img0"][None], s["img1"][None])[0])
    # and it is motion, not noise: on this translation it is close to the stored flow on average
    assert (s["prior"][:2] - s["flow_01"]).abs().mean() < 0.25 * s["flow_01"].abs().mean()


class PriorStore(TranslationStore):
    """A TranslationStore that also holds a precomputed prior, as `ingestion.dis_prior` stores it:
    FlowNet.prior of the whole frame1 / frame3, rounded to float16."""

    prior_preset = "fast"

    def __init__(self, n: int = 2):
        super().__init__(n)
        net = FlowNet(FlowNetConfig(channels=(8, 8, 8), depth=1, init="dis", dis_preset=self.prior_preset))
        self._prior = [_rounded(net.prior(_tensor(f[0]), _tensor(f[2]))[0]) for f in self._frames]

    def prior(self, i: int, window=None, dtype=np.float32) -> np.ndarray:
        return _crop(self._prior[i], window, axis=1)


def _tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255


def _rounded(prior: torch.Tensor) -> np.ndarray:
    return prior.numpy().astype(np.float16).astype(np.float32)


def _u8(img: torch.Tensor) -> np.ndarray:
    return (img * 255).round().byte().permute(1, 2, 0).numpy()


def _locate(frames: np.ndarray, sample: dict, crop: tuple[int, int]):
    """(top, left, flip_x, flip_y, reversed): the one window and transform of the whole frames
    that gives the sample's img0 and img1, found by search, not by replaying the dataset's draws."""
    img0, img1 = _u8(sample["img0"]), _u8(sample["img1"])
    h, w = crop
    found = []
    for fx, fy, rev in np.ndindex(2, 2, 2):
        a, b = (img1, img0) if rev else (img0, img1)  # frame1's and frame3's crops, transformed
        a, b = (x[:, ::-1] if fx else x for x in (a, b))
        a, b = (x[::-1] if fy else x for x in (a, b))
        for top in range(frames.shape[1] - h + 1):
            for left in range(frames.shape[2] - w + 1):
                if np.array_equal(frames[0, top:top + h, left:left + w], a) and np.array_equal(
                    frames[2, top:top + h, left:left + w], b
                ):
                    found.append((top, left, bool(fx), bool(fy), bool(rev)))
    assert len(found) == 1, found
    return found[0]


def test_a_stored_prior_is_the_whole_frame_prior_cropped_and_moved_with_the_frames():
    # With prior_from="store" the flow net trains on the crop of the prior it gets at inference on
    # whole frames of the stored size. Flips mirror the field and negate its x or y components,
    # reversal swaps its two directions; where DIS itself can be rerun to the same bits (no flip:
    # DIS of the swapped pair is the swapped pair), the sample must equal that rerun.
    store, crop = PriorStore(), (32, 40)
    ds = TripletDataset(store, "train", crop=crop, augment=True, seed=2, prior="fast", prior_from="store")
    net = FlowNet(FlowNetConfig(channels=(8, 8, 8), depth=1, init="dis", dis_preset="fast"))
    seen = set()
    for epoch in range(10):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            s, frames = ds[i], store.frames(i)
            top, left, fx, fy, rev = _locate(frames, s, crop)
            expected = store.prior(i)[:, top:top + crop[0], left:left + crop[1]]
            if fx:
                expected = expected[:, :, ::-1] * np.array([-1, 1, -1, 1], np.float32)[:, None, None]
            if fy:
                expected = expected[:, ::-1] * np.array([1, -1, 1, -1], np.float32)[:, None, None]
            if rev:
                expected = expected[[2, 3, 0, 1]]
            assert s["prior"].dtype == torch.float32
            assert torch.equal(s["prior"], torch.from_numpy(np.ascontiguousarray(expected)))
            if not (fx or fy):
                a, b = (frames[2], frames[0]) if rev else (frames[0], frames[2])
                rerun = _rounded(net.prior(_tensor(a), _tensor(b))[0])[:, top:top + crop[0], left:left + crop[1]]
                assert torch.equal(s["prior"], torch.from_numpy(np.ascontiguousarray(rerun)))
            seen.add((fx, fy, rev))
    assert len(seen) == 8  # every flip / reversal combination was checked


def test_a_stored_prior_of_another_preset_or_none_is_refused_naming_the_store():
    with pytest.raises(DataError, match="DIS 'fast'") as err:
        TripletDataset(PriorStore(), "train", prior="medium", prior_from="store")
    assert str(err.value).startswith("memory://translation")
    with pytest.raises(DataError, match="no DIS prior"):
        TripletDataset(TranslationStore(), "train", prior="fast", prior_from="store")


def test_compact_samples_are_a_third_of_the_bytes_and_the_same_floats(tmp_path):
    # What the training loop gets: uint8 frames and float16 stored flows / prior through the
    # DataLoader, made float32 on the device by to_float -- identical to the float samples.
    from torch.utils.data import default_collate

    from animvfi_pipeline.data.h5store import IngestionConfig, TripletStore, write_triplets_h5
    from animvfi_pipeline.data.atd12k import scan_atd12k
    from fixtures_atd12k import make_atd12k_tree

    make_atd12k_tree(tmp_path / "raw", n_train_clips=2, n_test=1, triplets_per_clip=2, size=(48, 32))
    write_triplets_h5(tmp_path / "s.h5", scan_atd12k(tmp_path / "raw"),
                      IngestionConfig(size=(48, 32), workers=0, val_fraction=0.0, chunk_tile=16, dis_prior="fast"),
                      progress=False)
    store = TripletStore(tmp_path / "s.h5")
    for prior_from in ("store", "frames"):
        args = dict(crop=(24, 40), augment=True, seed=5, prior="fast", prior_from=prior_from)
        full, compact = TripletDataset(store, "train", **args), TripletDataset(store, "train", compact=True, **args)
        for epoch in range(3):
            full.set_epoch(epoch), compact.set_epoch(epoch)
            a = default_collate([full[i] for i in range(len(full))])
            b = default_collate([compact[i] for i in range(len(compact))])
            assert b["img0"].dtype == torch.uint8 and b["flow_01"].dtype == torch.float16
            # a prior computed from the frames is never rounded; a stored one already is
            assert b["prior"].dtype == (torch.float16 if prior_from == "store" else torch.float32)
            assert sum(v.nbytes for v in b.values()) < 0.5 * sum(v.nbytes for v in a.values())
            assert to_float(b).keys() == a.keys()
            for key, value in to_float(b).items():
                assert value.dtype == a[key].dtype and torch.equal(value, a[key]), key
