"""GeoIP from MaxMind-format files the tests write themselves (tests/server/mmdb.py):
fields merged across City and ISP/ASN databases, spaces as underscores, "None" when
unknown, broken and missing files reported, changed files reloaded."""

from __future__ import annotations

import logging
import os

from onehop.server.geoip import NO_GEOIP, GeoIPData, GeoIPService, record_fields
from tests.server.mmdb import city_record, isp_record, write_mmdb


def city_db(path, country="DE", city="Berlin Mitte", ip_version=6):
    records = {"127.0.0.0/8": city_record(country, city)}
    if ip_version == 6:
        records["2001:db8::/32"] = city_record("FR", "Paris")
    write_mmdb(path, records, ip_version=ip_version)
    return str(path)


def isp_db(path):
    write_mmdb(path, {"127.0.0.0/8": isp_record("Example ISP", 64500, "Example Org")},
               database_type="GeoIP2-ISP")
    return str(path)


def test_city_and_isp_databases_are_merged(tmp_path):
    service = GeoIPService([city_db(tmp_path / "city.mmdb"), isp_db(tmp_path / "isp.mmdb")])
    assert service.lookup("127.0.0.77") == GeoIPData("DE", "Berlin_Mitte", "Example_ISP", "64500", "Example_Org")
    assert service.lookup("2001:db8::5") == GeoIPData(region="FR", city="Paris")
    assert service.lookup("198.51.100.1") is NO_GEOIP
    assert service.lookup("not an address") is NO_GEOIP
    assert service.lookup("127.0.0.77").log_fields() == {
        "client_region": "DE", "client_city": "Berlin_Mitte", "client_isp": "Example_ISP",
        "client_asn": "64500", "client_aso": "Example_Org"}


def test_ipv4_only_database_answers_none_for_ipv6(tmp_path):
    service = GeoIPService([city_db(tmp_path / "v4.mmdb", ip_version=4)])
    assert service.lookup("127.1.1.1").region == "DE"
    assert service.lookup("2001:db8::5") is NO_GEOIP


def test_no_databases_means_none_everywhere():
    assert GeoIPService().lookup("127.0.0.1") is NO_GEOIP


def test_broken_and_missing_files_are_reported_and_answer_none(tmp_path, caplog):
    broken = tmp_path / "broken.mmdb"
    broken.write_bytes(os.urandom(2000))
    errors = []
    with caplog.at_level(logging.ERROR, logger="onehop.server.geoip"):
        service = GeoIPService([str(broken), str(tmp_path / "missing.mmdb")], lambda p, e: errors.append((p, e)))
    assert service.lookup("127.0.0.1") is NO_GEOIP
    assert [p for p, _ in errors] == [str(broken), str(tmp_path / "missing.mmdb")]
    assert "No such file" in errors[1][1]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and all("unusable" in m and "None" in m for m in messages)
    service.reload_if_changed()  # unchanged files are not reported again
    assert len(errors) == 2


def test_a_changed_file_is_reloaded_and_a_broken_replacement_keeps_the_old(tmp_path):
    path = tmp_path / "city.mmdb"
    errors = []
    service = GeoIPService([city_db(path)], lambda p, e: errors.append(e))
    assert service.lookup("127.0.0.1").region == "DE"
    city_db(tmp_path / "new.mmdb", country="NL", city="Delft")
    os.replace(tmp_path / "new.mmdb", path)
    service.reload_if_changed()
    assert service.lookup("127.0.0.1") == GeoIPData(region="NL", city="Delft")
    (tmp_path / "bad.mmdb").write_bytes(b"garbage" * 100)
    os.replace(tmp_path / "bad.mmdb", path)
    service.reload_if_changed()
    assert errors and service.lookup("127.0.0.1").region == "NL"
    service.close()


def test_record_fields_tolerate_odd_records():
    assert record_fields(None) == {}
    assert record_fields({"country": "DE", "city": {"names": []}, "isp": 5}) == {"isp": "5"}
    assert record_fields({"autonomous_system_number": True, "isp": ""}) == {}
