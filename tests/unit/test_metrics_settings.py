"""VERITAS_METRICS_LISTEN and where the processes' metric files go."""

import pytest

from veritas_grpc.config import ConfigError, load_settings

BASE = {"VERITAS_ENV": "test", "VERITAS_JWT_SECRET": "x" * 8 + "abcdefghijklmnopqrstuvwxyz012345"}


def test_no_endpoint_by_default_and_no_files():
    settings = load_settings(BASE)
    assert settings.metrics_listen == ""
    assert settings.metrics_dir is None


def test_files_only_for_several_processes_with_an_endpoint(tmp_path):
    env = {**BASE, "VERITAS_DATA_DIR": str(tmp_path), "VERITAS_METRICS_LISTEN": "0.0.0.0:9464"}
    assert load_settings(env).metrics_dir is None
    assert load_settings({**env, "VERITAS_PROCESSES": "2"}).metrics_dir == tmp_path / "metrics"


@pytest.mark.parametrize("value", ["9464", "host:", ":9464", "host:port", "h:70000"])
def test_a_listen_address_that_is_not_host_port_is_refused(value):
    with pytest.raises(ConfigError, match="VERITAS_METRICS_LISTEN"):
        load_settings({**BASE, "VERITAS_METRICS_LISTEN": value})
