"""The benchmarks' arithmetic and options (bench/_stats.py, bench/_pinning.py, the argument
parsing and summaries of bench/throughput.py and bench/server_load_throughput.py), plus the
/proc readings they rest on: CPU seconds of a process tree, thread affinity, and the
concurrent transfer through several connectors. Nothing here times anything."""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
# The bench scripts import each other as top-level modules, so bench/ goes on the path
# before they are imported (by name, as the imports cannot sit above this line).
sys.path.insert(0, str(BENCH))
_common = importlib.import_module("_common")
_pinning = importlib.import_module("_pinning")
_stats = importlib.import_module("_stats")
slt = importlib.import_module("server_load_throughput")
throughput = importlib.import_module("throughput")

GIB = 1 << 30
MIB = 1 << 20


# -- medians, spreads, rounds --------------------------------------------------------------

def test_spread_is_median_lowest_and_highest():
    s = _stats.spread([300.0, 100.0, 200.0])
    assert (s.median, s.low, s.high, s.n) == (200.0, 100.0, 300.0, 3)
    assert s.fmt(1) == "200.0 [100.0-300.0]"
    assert s.relative == pytest.approx(1.0)
    assert s.as_dict() == {"median": 200.0, "min": 100.0, "max": 300.0, "n": 3}


def test_spread_of_an_even_count_takes_the_middle_pair():
    assert _stats.spread([1.0, 2.0, 3.0, 10.0]).median == 2.5


def test_spread_of_one_round_prints_only_its_value_and_of_none_refuses():
    assert _stats.spread([1.234]).fmt(2) == "1.23"
    with pytest.raises(ValueError):
        _stats.spread([])


def test_iqr_inclusive_quartiles():
    assert _stats.iqr([1.0, 2.0, 3.0]) == (1.5, 2.5)
    assert _stats.iqr([5.0, 1.0, 4.0, 2.0, 3.0]) == (2.0, 4.0)
    with pytest.raises(ValueError):
        _stats.iqr([1.0])


def test_interleaved_runs_every_system_once_per_round_and_rotates_the_start():
    order = list(_stats.interleaved(["a", "b", "c"], 3))
    assert order == [(0, "a"), (0, "b"), (0, "c"),
                     (1, "b"), (1, "c"), (1, "a"),
                     (2, "c"), (2, "a"), (2, "b")]
    for r in range(3):
        assert sorted(s for rnd, s in order if rnd == r) == ["a", "b", "c"]


# -- CPU and rate arithmetic -----------------------------------------------------------------

def test_cpu_seconds_per_gib():
    assert _stats.cpu_seconds_per_gib(2.0, 512 * MIB) == 4.0
    assert _stats.cpu_seconds_per_gib(0.5, 4 * 128 * MIB) == 1.0
    with pytest.raises(ValueError):
        _stats.cpu_seconds_per_gib(1.0, 0)


def test_cpu_per_wall_above_one_means_more_than_one_core():
    assert _stats.cpu_per_wall(3.0, 2.0) == 1.5
    with pytest.raises(ValueError):
        _stats.cpu_per_wall(1.0, 0.0)


def test_tick_resolution_and_mbps():
    assert _stats.tick_per_gib(16 * MIB, 100) == pytest.approx(0.64)
    assert _stats.mbps(5_000_000, 2.0) == 2.5


def test_ratio_and_its_format():
    assert _stats.ratio(3.0, 2.0) == 1.5
    assert _stats.ratio(None, 2.0) is None
    assert _stats.ratio(1.0, 0.0) is None
    assert _stats.fmt_ratio(1.234) == "1.23x"
    assert _stats.fmt_ratio(None) == "n/a"


@pytest.mark.parametrize(("value", "target", "better", "expected"), [
    (0.9, 0.9, "higher", "met"), (0.89, 0.9, "higher", "missed"),
    (1.3, 1.3, "lower", "met"), (1.31, 1.3, "lower", "missed"),
    (1.0, 1.0, "above", "missed"), (1.01, 1.0, "above", "met"),
    (None, 1.0, "lower", "not measured"),
])
def test_verdict(value, target, better, expected):
    assert _stats.verdict(value, target, better) == expected


def test_busy_processes_counts_those_that_did_the_work():
    before = {1: 10.0, 2: 5.0, 3: 0.0}
    after = {1: 11.0, 2: 6.0, 3: 0.05, 4: 0.5}  # 3 idle helper, 4 started in between
    assert _stats.busy_processes(before, after) == 3
    assert _stats.busy_processes(before, after, share=0.3) == 2
    assert _stats.busy_processes({1: 1.0}, {1: 1.0}) == 0


# -- options ------------------------------------------------------------------------------

@pytest.fixture
def two_cpus(monkeypatch):
    monkeypatch.setattr(_pinning.os, "sched_getaffinity", lambda pid: {0, 1})


def test_throughput_rounds_default_to_three_and_refuse_fewer(two_cpus):
    assert throughput.parse_args([]).rounds == 3
    assert throughput.parse_args(["--repeat", "5"]).rounds == 5
    assert throughput.parse_args(["--rounds", "4"]).rounds == 4
    for bad in ("2", "x"):
        with pytest.raises(SystemExit):
            throughput.parse_args(["--rounds", bad])


def test_throughput_pin_option(two_cpus):
    assert throughput.parse_args([]).pin is None
    bare = throughput.parse_args(["--pin", "--mib", "16"])
    assert bare.pin == _pinning.Pinning(frozenset({0}), frozenset({1}))
    assert bare.mib == 16
    both = throughput.parse_args(["--pin", "0-1:1"]).pin
    assert both.clients == {0, 1} and both.servers == {1}
    for bad in ("0", "0:2", "1-0:1"):
        with pytest.raises(SystemExit):
            throughput.parse_args(["--pin", bad])


def test_parse_cpus():
    assert _pinning.parse_cpus("0,2-3") == {0, 2, 3}
    assert _pinning.parse_cpus("1") == {1}
    for bad in ("", "a", "3-1", "1,", "-1"):
        with pytest.raises(ValueError):
            _pinning.parse_cpus(bad)


def test_parse_pin_names_the_unavailable_cpu():
    assert _pinning.parse_pin("1:0", {0, 1}).describe() == "clients on CPU 1, servers on CPU 0"
    with pytest.raises(ValueError, match="CPU 2 is not available"):
        _pinning.parse_pin("0:2", {0, 1})
    with pytest.raises(ValueError, match="CLIENT:SERVER"):
        _pinning.parse_pin("0", {0, 1})


def test_loaded_defaults(two_cpus):
    args = slt.parse_args([])
    assert (args.mib, args.clients, args.direction, args.rounds) == (128, 4, "upload", 3)
    assert args.workers == [1, None]
    assert args.pin is None


def test_parse_workers():
    assert slt.parse_workers("1,default") == [1, None]
    assert slt.parse_workers("default") == [None]
    assert slt.parse_workers("2, 1") == [2, 1]
    for bad in ("0", "1,1", "two", "", "default,default"):
        with pytest.raises(ValueError):
            slt.parse_workers(bad)
    with pytest.raises(SystemExit):
        slt.parse_args(["--workers", "0"])


def test_workers_support_is_read_off_the_help_text():
    assert slt.workers_supported("  --config CONFIG  the server.json\n  --workers N  processes (default: CPUs)")
    assert slt.workers_supported("usage: onehop server run [-h] --config CONFIG [--workers WORKERS]")
    assert not slt.workers_supported("usage: onehop server run [-h] --config CONFIG [--quiet]")
    assert not slt.workers_supported("  --workers-dir D  elsewhere")


def test_workers_option_is_passed_only_for_a_count():
    default = slt.onehop_run_argv("/d/server.json", None)
    assert "--workers" not in default
    assert default[-4:] == ["server", "run", "--config", "/d/server.json"]
    assert slt.onehop_run_argv("/d/server.json", 2)[-2:] == ["--workers", "2"]


def test_unsupported_worker_counts_are_dropped_with_a_note():
    kept, notes = slt.choose_workers([1, None], supported=False)
    assert kept == [None]
    assert len(notes) == 1 and "onehop --workers 1: not supported by this build" in notes[0]
    assert slt.choose_workers([2], supported=False)[0] == []
    assert slt.choose_workers([1, None], supported=True) == ([1, None], [])


# -- the loaded summary and its headline ------------------------------------------------------

def sample(wall, server_cpu, client_cpu=1.0, busy=1):
    return slt.Sample(wall, server_cpu, client_cpu, server_processes=3, busy_server_processes=busy)


def test_summarize_takes_medians_per_figure():
    s = slt.summarize("x", [sample(1.0, 1.0), sample(2.0, 2.0), sample(4.0, 3.0)], GIB)
    assert s.mbps.median == pytest.approx(GIB / 2 / 1e6)
    assert (s.mbps.low, s.mbps.high) == (pytest.approx(GIB / 4 / 1e6), pytest.approx(GIB / 1e6))
    assert s.server_cpu_per_gib.median == 2.0
    assert s.server_cpu_per_wall.median == 1.0  # 1.0, 1.0, 0.75
    assert s.client_cpu_per_gib.median == 1.0
    assert s.fmt_processes() == "3 (1 busy)"


def loaded(wall_ratio: float, cpu_ratio: float, per_wall: float) -> dict:
    """sshd: 1 s and 1 CPU-s per GiB; onehop: the given ratios and CPU-s per wall-s."""
    base = slt.summarize("sshd", [sample(1.0, 1.0)] * 3, GIB)
    wall = 1.0 / wall_ratio
    mine = slt.summarize("onehop", [sample(wall, per_wall * wall)] * 3, GIB)
    assert mine.server_cpu_per_gib.median == pytest.approx(cpu_ratio)
    return {"sshd": base, "onehop": mine}


def systems(workers):
    return [slt.System("sshd", "sshd", 1, [], [], onehop=False),
            slt.System("onehop", "onehop", 2, [], [], workers=workers)]


def test_headline_for_the_default_workers_judges_every_target():
    summaries = loaded(wall_ratio=0.8, cpu_ratio=1.2, per_wall=1.2 * 0.8)
    [line] = slt.headline_lines(summaries, systems(None), build_has_workers=True)
    assert "server CPU/GiB 1.20x sshd (target <= 1.3x: met)" in line
    assert "aggregate 0.80x sshd (target >= 0.9x with default workers: missed)" in line
    assert "0.96 server CPU-s per wall-s" in line and "with 2 workers: missed" in line


def test_headline_of_one_worker_leaves_out_the_multicore_target():
    summaries = loaded(wall_ratio=1.0, cpu_ratio=1.4, per_wall=1.4)
    [line] = slt.headline_lines(summaries, systems(1), build_has_workers=True)
    assert "(target <= 1.3x: missed)" in line
    assert "with default workers" not in line
    assert "the 2-worker target does not apply" in line


@pytest.mark.parametrize(("workers", "build_has_workers", "applies"), [
    (2, True, True), (1, True, False), (None, True, True), (None, False, False), (3, True, True),
])
def test_multicore_target_applies_to_two_or_more_workers(workers, build_has_workers, applies):
    assert slt.multicore_applies(workers, build_has_workers) is applies


# -- /proc readings -----------------------------------------------------------------------

BURNER = textwrap.dedent("""
    import subprocess, sys, time
    if sys.argv[1] == "parent":
        child = subprocess.Popen([sys.executable, __file__, "child"], stdout=subprocess.PIPE)
        print(child.stdout.readline().decode().strip(), flush=True)
        sys.stdin.read()
    else:
        while time.process_time() < 0.3:
            pass
        print("burned", flush=True)
        sys.stdin.read()
""")


def test_tree_cpu_seconds_counts_a_grandchilds_cpu(tmp_path):
    script = tmp_path / "burner.py"
    script.write_text(BURNER)
    proc = subprocess.Popen([sys.executable, str(script), "parent"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"burned"
        by_process = _common.process_cpu_seconds(proc.pid)
        assert len(by_process) == 2
        assert max(by_process.values()) >= 0.28  # the grandchild; clock ticks round down
        assert _common.tree_cpu_seconds(proc.pid) >= 0.28
        assert _common.tree_cpu_seconds(proc.pid) == pytest.approx(sum(by_process.values()), abs=0.05)
    finally:
        proc.stdin.close()
        proc.wait(30)


def test_pin_tree_sets_every_threads_affinity():
    cpu = min(os.sched_getaffinity(0))
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys, threading
        threading.Thread(target=sys.stdin.read, daemon=True).start()
        print("ready", flush=True)
        sys.stdin.read()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"ready"
        tids = [int(t) for t in os.listdir(f"/proc/{proc.pid}/task")]
        assert len(tids) >= 2
        assert _pinning.pin_tree(proc.pid, frozenset({cpu})) >= 2
        assert all(_pinning.allowed_cpus(t) == {cpu} for t in tids)
    finally:
        proc.stdin.close()
        proc.wait(30)


# -- several streams at once --------------------------------------------------------------------

@pytest.fixture
def sink():
    """A listening socket served by _common's sink logic, one thread per connection."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    payload = memoryview(os.urandom(MIB))
    accepted = []

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(conn)
            threading.Thread(target=_common._sink_connection, args=(conn, payload), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1], accepted
    server.close()


@pytest.mark.parametrize("direction", ["upload", "download"])
def test_transfer_each_moves_one_stream_per_connector(sink, direction):
    port, accepted = sink
    seconds = _common.transfer_each([_common.direct("127.0.0.1", port)] * 3, direction, 2 * MIB)
    assert seconds > 0
    assert len(accepted) == 3


def test_transfer_each_reports_a_failed_stream():
    with socket.socket() as closer:
        closer.bind(("127.0.0.1", 0))
        closer.listen(4)
        port = closer.getsockname()[1]

        def close_them():
            for _ in range(2):
                conn, _ = closer.accept()
                conn.close()

        t = threading.Thread(target=close_them, daemon=True)
        t.start()
        with pytest.raises(_common.BenchError, match="upload stream . of 2 failed"):
            _common.transfer_each([_common.direct("127.0.0.1", port)] * 2, "upload", 64 * MIB)
        t.join(30)


def test_a_profile_summary_leaves_waiting_threads_out(tmp_path):
    raw = tmp_path / "server.txt"
    raw.write_text(
        "process 1:\"python -m onehop.cli\";main (onehop/cli.py:84);recv (libc.so.6) 30\n"
        "process 1:\"python -m onehop.cli\";main (onehop/cli.py:84);decrypt (_rust.abi3.so) 10\n"
        "process 1:\"python -m onehop.cli\";select (selectors.py:468);epoll_wait (libc.so.6) 50\n"
        "process 1:\"python -m onehop.cli\";Thread.run (threading.py:982);wait4 (libc.so.6) 200\n"
        "process 1:\"python -m onehop.cli\";run_forever (asyncio/base_events.py:607);"
        "EpollSelector.select (selectors.py:468) 7\n",
        encoding="utf-8")
    summary = _common.summarize_collapsed(str(raw))
    assert "40 busy samples (257 more waiting, left out)" in summary
    assert " 75.0%  recv (libc.so.6)" in summary and " 25.0%  decrypt (_rust.abi3.so)" in summary
    assert "wait4" not in summary and "epoll_wait" not in summary
