"""The harness as `leaderboards/` and `dashboards/` see it; they import from here and nowhere else.

Settings and metric protocols (what a number means), the tracking URI (where runs are) and the
params' dotted-key form. Importing this module starts neither Ray nor MLflow.
"""
from harness.runs.store import flatten, tracking_uri
from harness.settings import PROTOCOLS, SETTINGS, MetricProtocol, Setting, get_protocol, get_setting

__all__ = ["PROTOCOLS", "SETTINGS", "MetricProtocol", "Setting", "flatten", "get_protocol", "get_setting",
           "tracking_uri"]
