"""What a benchmark is: named, versioned settings (tasks, degradations, data) and metric protocols.

The lowest layer of the harness: it imports only `zoo.registry`, and every other package may
import it. The settings are the YAML files in this folder; the protocols live in `protocols.py`.
"""
from harness.settings.protocols import PROTOCOLS, MetricProtocol, get_protocol, resolve_protocol
from harness.settings.setting import (SETTINGS, Degradation, Setting, TaskSpec, get_setting, level_task,
                                      level_task_name)

__all__ = ["PROTOCOLS", "SETTINGS", "Degradation", "MetricProtocol", "Setting", "TaskSpec", "get_protocol",
           "get_setting", "level_task", "level_task_name", "resolve_protocol"]
