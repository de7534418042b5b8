"""How the harness starts or joins Ray (harness/runs/submit.py ClusterOptions.init_ray)."""
import os

import pytest
import ray

from harness.runs.submit import ClusterOptions


@pytest.fixture
def ray_init_calls(monkeypatch):
    """ray.init recorded (its arguments and the two environment settings the raylet reads), not run."""
    calls = []

    def record(**kwargs):
        calls.append((kwargs, {key: os.environ.get(key) for key in ("RAY_prestart_worker_first_driver",
                                                                      "RAY_USAGE_STATS_ENABLED")}))

    monkeypatch.setattr(ray, "init", record)
    for key in ("RAY_prestart_worker_first_driver", "RAY_USAGE_STATS_ENABLED"):
        monkeypatch.delenv(key, raising=False)
    return calls


def test_a_local_ray_prestarts_no_idle_workers_and_is_sized_by_the_options(ray_init_calls):
    ClusterOptions(cpus=3, gpus=0).init_ray({"py_modules": ["/x/plugin.py"]})
    ((kwargs, env),) = ray_init_calls
    assert env == {"RAY_prestart_worker_first_driver": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    assert kwargs["address"] == "local" and kwargs["num_cpus"] == 3 and kwargs["num_gpus"] == 0
    assert kwargs["runtime_env"] == {"py_modules": ["/x/plugin.py"]} and kwargs["include_dashboard"] is False


def test_a_given_cluster_keeps_its_own_settings_and_the_users_environment_wins(ray_init_calls, monkeypatch):
    ClusterOptions(address="10.0.0.1:6379").init_ray()  # its raylets started long ago, with their own settings
    monkeypatch.setenv("RAY_prestart_worker_first_driver", "1")
    ClusterOptions().init_ray()
    (remote, remote_env), (local, local_env) = ray_init_calls
    assert remote == {"address": "10.0.0.1:6379", "runtime_env": None}
    assert remote_env["RAY_prestart_worker_first_driver"] is None
    assert local["address"] == "local" and local_env["RAY_prestart_worker_first_driver"] == "1"
