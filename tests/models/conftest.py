"""Model tests run one torch thread each (the shared ``one_thread`` fixture in tests/conftest.py)."""
import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_thread_per_module(one_thread):
    yield
