"""GeoIP: a client's region, city, ISP and ASN from MaxMind-format databases.

``GeoIPDatabaseFilenames`` lists .mmdb files (City, ISP, ASN, in any mix); each lookup
asks them in order and keeps the first value found for each field. Lookups happen in
this process only and the address is never stored: only the resulting names are.
Unknown values are "None" and spaces become underscores, as in Psiphon's logs.

A missing or broken file is reported (an error log line and a ``geoip_database_error``
event) and contributes nothing, so the server runs with region "None"; a file that
changes is reopened (a broken replacement keeps the previous, working database).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable

import maxminddb

from .watched import WatchedFile

log = logging.getLogger(__name__)

UNKNOWN = "None"
_FIELDS = ("region", "city", "isp", "asn", "aso")


@dataclass(frozen=True)
class GeoIPData:
    region: str = UNKNOWN
    city: str = UNKNOWN
    isp: str = UNKNOWN
    asn: str = UNKNOWN
    aso: str = UNKNOWN

    def log_fields(self) -> dict[str, str]:
        return {"client_region": self.region, "client_city": self.city, "client_isp": self.isp,
                "client_asn": self.asn, "client_aso": self.aso}


NO_GEOIP = GeoIPData()


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value:
        return value.replace(" ", "_")
    return None


def record_fields(record: Any) -> dict[str, str]:
    """The GeoIP fields a database record carries (City, Country, ISP or ASN layout)."""
    if not isinstance(record, dict):
        return {}
    country = record.get("country")
    city = record.get("city")
    names = city.get("names") if isinstance(city, dict) else None
    found = {
        "region": _text(country.get("iso_code")) if isinstance(country, dict) else None,
        "city": _text(names.get("en")) if isinstance(names, dict) else None,
        "isp": _text(record.get("isp")),
        "asn": _text(record.get("autonomous_system_number")),
        "aso": _text(record.get("autonomous_system_organization")),
    }
    return {k: v for k, v in found.items() if v is not None}


class GeoIPDatabase:
    """One .mmdb file, reopened when it changes."""

    def __init__(self, path: str, on_error: Callable[[str, str], None]) -> None:
        self.path = path
        self._watch = WatchedFile(path)
        self._reader: Any = None
        self._on_error = on_error
        self.error: str | None = None
        self.reload_if_changed()

    def reload_if_changed(self) -> bool:
        if not self._watch.changed():
            return False
        try:
            reader = maxminddb.open_database(self.path)
        except (OSError, ValueError, RuntimeError) as exc:
            self.error = f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}"
            kept = " (keeping the previous version)" if self._reader is not None else ""
            log.error("GeoIP database %s unusable%s: %s; unknown fields read \"None\"",
                      self.path, kept, self.error)
            self._on_error(self.path, self.error)
            return False
        old, self._reader, self.error = self._reader, reader, None
        if old is not None:
            old.close()
        log.info("GeoIP database %s loaded (%s)", self.path, reader.metadata().database_type)
        return True

    def lookup(self, ip: str) -> dict[str, str]:
        if self._reader is None:
            return {}
        try:
            return record_fields(self._reader.get(ip))
        except (ValueError, RuntimeError, TypeError):
            return {}  # not an address, IPv6 in an IPv4 database, or a damaged record

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


class GeoIPService:
    """Every configured database; ``lookup`` never fails."""

    def __init__(self, paths: tuple[str, ...] | list[str] = (),
                 on_error: Callable[[str, str], None] | None = None) -> None:
        report = on_error or (lambda path, error: None)
        self.databases = [GeoIPDatabase(path, report) for path in paths]

    def lookup(self, ip: str) -> GeoIPData:
        if not self.databases:
            return NO_GEOIP
        found: dict[str, str] = {}
        for database in self.databases:
            for key, value in database.lookup(ip).items():
                found.setdefault(key, value)
            if len(found) == len(_FIELDS):
                break
        return GeoIPData(**found) if found else NO_GEOIP

    def reload_if_changed(self) -> None:
        for database in self.databases:
            database.reload_if_changed()

    def close(self) -> None:
        for database in self.databases:
            database.close()
