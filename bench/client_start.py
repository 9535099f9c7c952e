"""Client start time: from process start to both local proxies listening (issue 20).

Side by side in one run, each started N times (default 5) with an empty HOME and a fresh
data directory, against one embedded server that does not answer (the proxies listen
before any tunnel): the standalone build (PyInstaller, ``env -i``), the zipapp
(``python3 -S -E FILE``; its first start unpacks into ``SHIV_ROOT`` and is reported apart),
and ``onehop client`` from this venv. Prints the median per kind, the standalone's size,
and the standalone's median last.

    python bench/client_start.py [--runs 5] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from onehop.network.builds import Builder, BuildSpec

LISTENING = {"ListeningSocksProxyPort", "ListeningHttpProxyPort"}


class NoKeys:
    """A build without network keys: nothing here is verified, only the start is timed."""

    def public_keys(self) -> dict[str, str]:
        return {name: "" for name in ("RemoteServerListSignaturePublicKey", "ServerEntrySignaturePublicKey",
                                      "FeedbackEncryptionPublicKey", "UpgradeSignaturePublicKey")}


def started(command: list[str], home: Path, env: dict[str, str]) -> float:
    data = Path(tempfile.mkdtemp(dir=home, prefix="data-"))
    begin = time.monotonic()
    process = subprocess.Popen([*command, "client", "--socks-port", "0", "--http-port", "0", "--data-dir",
                                str(data)], cwd=home, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    seen = set()
    try:
        for line in process.stdout:
            notice = json.loads(line)
            seen.add(notice.get("noticeType"))
            if seen >= LISTENING:
                return time.monotonic() - begin
        raise SystemExit(f"{command[0]} exited before listening")
    finally:
        process.terminate()
        process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "onehop" / "test-builds"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="onehop-bench-start-"))
    try:
        keys = NoKeys()
        spec = BuildSpec("0123456789ABCDEF", "0123456789ABCDEF", "1", ())
        with Builder(Path(args.cache)) as builder:
            exe = builder.build(spec, keys, work / "onehop-client", "standalone").path
            pyz = builder.build(spec, keys, work / "onehop-client.pyz", "zipapp").path
        home = work / "home"
        home.mkdir()
        venv_onehop = shutil.which("onehop") or sys.exit("no onehop on PATH")
        kinds = {
            "standalone (env -i)": (["env", "-i", f"HOME={home}", str(exe)], {}),
            "zipapp (python3 -S -E)": ([sys.executable, "-S", "-E", str(pyz)],
                                      {"HOME": str(home), "SHIV_ROOT": str(home / "shiv")}),
            "venv onehop client": ([venv_onehop], {**os.environ, "HOME": str(home)}),
        }
        medians = {}
        for name, (command, env) in kinds.items():
            if "zipapp" in name:
                first = started(command, home, env)
                print(f"{name}: first start (unpacks into SHIV_ROOT) {first:.3f} s")
            times = [started(command, home, env) for _ in range(args.runs)]
            medians[name] = statistics.median(times)
            print(f"{name}: median {medians[name]:.3f} s of {args.runs} ({', '.join(f'{t:.3f}' for t in times)})")
        print(f"standalone size: {exe.stat().st_size} bytes ({exe.stat().st_size / 1e6:.1f} MB)")
        print(f"standalone start to proxies listening, median of {args.runs}: "
              f"{medians['standalone (env -i)']:.3f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
