"""The traffic rules file (``TrafficRulesFilename``), hot-reloaded.

The rules themselves (model, validation, selection) are pure: ``core.trafficrules``.
At start an invalid file is a ConfigError like any other configuration problem; later
an invalid or unreadable replacement is reported (error log line listing every
problem, and a ``traffic_rules_error`` event) and the rules in force stay in force.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..configtools import read_json_file
from ..core.trafficrules import TrafficRulesSet, parse_traffic_rules
from ..errors import ConfigError
from .watched import WatchedFile

log = logging.getLogger(__name__)


def load_traffic_rules(path: str) -> TrafficRulesSet:
    """Read and validate the file; ConfigError listing every problem."""
    return parse_traffic_rules(read_json_file(path), path)


class TrafficRulesStore:
    def __init__(self, path: str | None,
                 on_error: Callable[[str, list[str]], None] | None = None) -> None:
        self.path = path
        self._watch = WatchedFile(path) if path else None
        self._on_error = on_error
        self.rules = TrafficRulesSet()
        self.last_error: str | None = None
        if self._watch is not None:
            self._watch.changed()
            self.rules = load_traffic_rules(path)  # type: ignore[arg-type]

    def reload_if_changed(self) -> bool:
        """True when new rules were loaded (the caller re-applies them to clients)."""
        if self._watch is None or not self._watch.changed():
            return False
        try:
            self.rules = load_traffic_rules(self.path)  # type: ignore[arg-type]
        except ConfigError as exc:
            problems = [str(p) for p in exc.problems]
            self.last_error = f"traffic rules not reloaded, keeping the rules in force: {exc}"
            log.error(self.last_error)
            if self._on_error is not None:
                self._on_error(str(self.path), problems)
            return False
        self.last_error = None
        log.info("traffic rules reloaded from %s", self.path)
        return True
