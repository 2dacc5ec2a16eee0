import shutil
import tempfile

import pytest

from latchnic.driver.control import ControlServer
from latchnic.driver.model_backend import ModelBackend

from driver_kit import cfg


@pytest.fixture
def short_dir():
    """A directory with a short path (Unix socket paths are limited to 107 bytes)."""
    d = tempfile.mkdtemp(prefix="ln-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def device(short_dir, monkeypatch):
    """The reference model (small tables: 4 SAs, 3 templates) served on a control
    socket in this process; LATCHNIC_DEVICE points at it."""
    backend = ModelBackend.from_config(cfg(), sa_capacity=4, template_capacity=3)
    path = f"{short_dir}/dev.sock"
    with ControlServer(backend, path):
        monkeypatch.setenv("LATCHNIC_DEVICE", path)
        yield backend
