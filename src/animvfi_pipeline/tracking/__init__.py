"""MLflow around a run: lineage (git, data, DVC), stale-run cleanup, the model registry and its
promotion gate, and the servable pyfunc model. Plain MLflow, no Kedro (hooks.py is the glue)."""
