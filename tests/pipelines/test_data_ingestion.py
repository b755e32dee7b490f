"""data_ingestion through a real KedroSession, as `kedro run --env atd12k --pipeline data_ingestion`
would run it, on a copy of the project whose data/01_raw/atd12k is a tiny ATD-12K-layout tree."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from kedro.io import DatasetError

from animvfi_pipeline.data.h5store import TripletStore
from animvfi_pipeline.datasets.atd12k_folder import ATD12KFolderDataset
from animvfi_pipeline.datasets.triplet_store import TripletStoreDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures_atd12k import frame_path, make_atd12k_tree, truncate  # noqa: E402

# Keeps conf/atd12k as it is except what would make a tiny run slow.
TINY = {"ingestion": {"size": [40, 24], "workers": 0, "progress": False}}


def _copy_project(project_root: Path, dest: Path) -> Path:
    shutil.copy(project_root / "pyproject.toml", dest)
    shutil.copy(project_root / ".telemetry", dest)
    shutil.copytree(project_root / "conf", dest / "conf", ignore=shutil.ignore_patterns("local"))
    (dest / "conf" / "local").mkdir()
    # Several KedroSessions run in this one process; kedro-mlflow keeps its run id across them
    # and would log a second run's parameters into the first run. MLflow logging is tested end
    # to end in tests/e2e (one process per `kedro run`), so it is switched off here, in every
    # run environment (`--env atd12k` / `--env video` replace conf/local).
    mlflow_conf = yaml.safe_load((project_root / "conf" / "base" / "mlflow.yml").read_text())
    mlflow_conf["tracking"]["disable_tracking"]["pipelines"] = ["data_ingestion"]
    for env in (p for p in (dest / "conf").iterdir() if p.is_dir() and p.name != "base"):
        (env / "mlflow.yml").write_text(yaml.safe_dump(mlflow_conf))
    (dest / "src").mkdir()  # bootstrap_project wants it; the package itself is installed
    return dest


def _end_mlflow_runs() -> None:
    """Close any MLflow run a session left open, while its tracking store is still the current one."""
    import mlflow

    while mlflow.active_run():
        mlflow.end_run()


def _h5_contents(path: Path) -> dict:
    """Every dataset's bytes and every attribute: what a reader sees (HDF5 file bytes may differ)."""
    import h5py

    contents = {}
    with h5py.File(path, "r") as f:
        contents["/"] = {k: str(v) for k, v in f.attrs.items()}

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                data = obj[()]
                values = data.tolist() if data.dtype.kind == "O" else data.tobytes()
                contents[name] = (obj.dtype.str, obj.shape, values,
                                  {k: str(v) for k, v in obj.attrs.items()})

        f.visititems(visit)
    return contents


def _listing(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def atd12k_run(project_root, tmp_path_factory):
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    project = _copy_project(project_root, tmp_path_factory.mktemp("project"))
    raw = project / "data" / "01_raw" / "atd12k"
    specs = make_atd12k_tree(raw, n_train_clips=4, n_test=2, triplets_per_clip=2, sgm_flow=True)
    bad = next(s for s in specs if s.split == "train")
    truncate(frame_path(raw, bad, 3))  # conf/atd12k skips bad triplets and reports them
    before = _listing(raw)

    mp = pytest.MonkeyPatch()
    mp.chdir(project)
    try:
        bootstrap_project(project)
        with KedroSession.create(project_path=project, env="atd12k", runtime_params=TINY) as session:
            session.run(pipeline_names=["data_ingestion"])
            catalog = session.load_context().catalog
            store = catalog.load("triplet_store")
        _end_mlflow_runs()
    finally:
        mp.undo()
    return {"project": project, "raw": raw, "specs": specs, "bad": bad, "before": before, "store": store}


def test_the_run_stores_every_good_triplet_and_loads_lazily(atd12k_run):
    store = atd12k_run["store"]
    specs = atd12k_run["specs"]
    assert isinstance(store, TripletStore)  # a lazy reader, not arrays
    assert store.path == atd12k_run["project"] / "data" / "02_intermediate" / "atd12k_triplets.h5"
    assert (store.width, store.height) == (40, 24)
    assert len(store) == len(specs) - 1
    assert store.frames(0).shape == (3, 24, 40, 3)
    meta = store.meta
    assert set(meta.loc[meta["split"] == "test", "flow_source"]) == {"gt"}  # gt beats sgm under auto
    assert set(meta["split"]) == {"train", "val", "test"}


def test_the_report_lists_the_skipped_triplet_and_the_counts(atd12k_run):
    project, bad = atd12k_run["project"], atd12k_run["bad"]
    report = json.loads((project / "data" / "08_reporting" / "ingestion_report.json").read_text())
    assert report["n_triplets"] == len(atd12k_run["specs"]) - 1
    assert report["n_skipped"] == 1
    assert report["skipped"][0]["name"] == bad.name
    assert report["skipped"][0]["path"] == str(frame_path(atd12k_run["raw"], bad, 3))
    assert "truncated" in report["skipped"][0]["reason"]
    assert sum(report["splits"].values()) == report["n_triplets"]
    assert report["splits"]["test"] == 2


def test_metadata_tables_match_the_store(atd12k_run):
    project, store = atd12k_run["project"], atd12k_run["store"]
    csv = pd.read_csv(project / "data" / "02_intermediate" / "triplet_metadata.csv")
    parquet = pd.read_parquet(project / "data" / "02_intermediate" / "triplet_metadata.parquet")
    assert list(csv["name"]) == list(store.meta["name"]) == list(parquet["name"])
    pd.testing.assert_frame_equal(parquet.reset_index(drop=True), store.meta, check_dtype=False)


def test_real_data_is_never_written_to(atd12k_run):
    assert _listing(atd12k_run["raw"]) == atd12k_run["before"]


def test_folder_dataset_refuses_a_missing_real_dataset(tmp_path):
    ds = ATD12KFolderDataset(path=str(tmp_path / "atd12k"))
    assert not ds.exists()
    with pytest.raises(DatasetError, match="atd12k: ATD-12K folder does not exist"):
        ds.save("existing")
    with pytest.raises(DatasetError, match="root folder does not exist"):
        ds.load()


def test_store_dataset_exists_only_for_a_complete_store(tmp_path):
    ds = TripletStoreDataset(filepath=str(tmp_path / "triplets.h5"))
    assert not ds.exists()
    (tmp_path / "triplets.h5").write_bytes(b"half-written")
    assert not ds.exists()
    with pytest.raises(DatasetError, match="not a readable HDF5"):
        ds.load()


# --------------------------------------------------------------------------- embedded default

SYNTHETIC_TINY = {
    "raw_data": {
        "source": "synthetic",
        "synthetic": {"width": 64, "height": 48, "n_train": 8, "n_test": 4, "triplets_per_clip": 2,
                      "extra_times": [0.25], "workers": 1, "n_unseen_val": 2},
    },
    "ingestion": {"size": [64, 48], "workers": 0, "progress": False},
}


@pytest.fixture(scope="module")
def synthetic_runs(project_root, tmp_path_factory):
    """`kedro run --pipeline data_ingestion` with the base config (tiny), twice."""
    synthetic = pytest.importorskip("animvfi_pipeline.data.synthetic")
    if not hasattr(synthetic, "write_synthetic_atd12k"):
        pytest.skip("the synthetic generator has not landed yet")
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    project = _copy_project(project_root, tmp_path_factory.mktemp("project_synthetic"))
    store_path = project / "data" / "02_intermediate" / "triplets.h5"
    raw = project / "data" / "01_raw" / "atd12k_synthetic"
    snapshots = []
    mp = pytest.MonkeyPatch()
    mp.chdir(project)
    try:
        for _ in range(2):
            bootstrap_project(project)
            with KedroSession.create(project_path=project, runtime_params=SYNTHETIC_TINY) as session:
                session.run(pipeline_names=["data_ingestion"])
            _end_mlflow_runs()
            snapshots.append((_h5_contents(store_path), _listing(raw)))
    finally:
        mp.undo()
    return {"store": TripletStore(store_path), "snapshots": snapshots, "raw": raw}


def test_default_run_generates_and_ingests_the_synthetic_set(synthetic_runs):
    store = synthetic_runs["store"]
    assert (synthetic_runs["raw"] / "synthetic_spec.json").is_file()
    meta = store.meta
    assert (store.width, store.height) == (64, 48)
    assert len(store.indices("test")) == 4 and len(store.indices("train")) + len(store.indices("val")) == 8 + 2
    # conf/base holds the unseen style family out of training: all of it goes to val and test.
    unseen = meta["style"] == "watercolor"
    assert set(meta.loc[unseen, "split"]) == {"val", "test"}
    assert set(meta.loc[meta["split"] == "train", "style"]) <= {"cel", "paper", "cg"}
    assert set(meta["flow_source"]) == {"gt"}  # exact flow, never pseudo-flow, for synthetic data
    assert store.extra_times == (0.25,) and store.extra(0).shape == (1, 48, 64, 3)
    assert set(meta.loc[meta["split"] == "test", "level"]) <= {0, 1, 2}


def test_default_run_is_idempotent(synthetic_runs):
    (store1, raw1), (store2, raw2) = synthetic_runs["snapshots"]
    assert raw1 == raw2  # the generator did not rewrite its folder
    assert store1 == store2  # and the store holds exactly the same data and attributes
