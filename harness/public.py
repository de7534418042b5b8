"""The harness as `leaderboards/` and `dashboards/` see it; they import from here and nowhere else.

Settings and metric protocols (what a number means), the tracking URI (where runs are), the
params' dotted-key form, and the zoo's default configurations and parameter counts (cached, so
reading them needs no torch after the first time). Importing this module starts neither Ray nor MLflow.
"""
from harness.catalogue import default_config, default_parameter_count
from harness.claims import CLAIM_EXPERIMENT, CLAIM_ROLE
from harness.runs.store import flatten, missing_local_store, sqlite_file, tracking_uri
from harness.scoring.views import VIEWS, fits, twin, view_name, view_prefix
from harness.settings import PROTOCOLS, SETTINGS, MetricProtocol, Setting, get_protocol, get_setting

__all__ = ["CLAIM_EXPERIMENT", "CLAIM_ROLE", "PROTOCOLS", "SETTINGS", "VIEWS", "MetricProtocol", "Setting", "default_config", "default_parameter_count",
           "fits", "flatten", "get_protocol", "get_setting", "missing_local_store", "sqlite_file", "tracking_uri", "twin", "view_name", "view_prefix"]
