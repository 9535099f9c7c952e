"""Client builds bundle the pinned runtime, not whatever the operator's machine has.

Before: runtime dependencies had lower bounds only and no lock; ``network build-client``
copied whichever versions were installed (a downgraded cryptography, a modified aiohttp)
into the builds users run.
"""

from __future__ import annotations

import importlib.metadata as metadata
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from onehop.network.errors import BuildError
from onehop.network.staging import runtime_closure, stage_runtime

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = ROOT / "src" / "onehop" / "network" / "constraints" / "client-build.txt"


def blocks(text: str) -> list[str]:
    """The pin blocks (``name==version \\`` and its hash lines) of a constraints file."""
    out: list[str] = []
    for line in text.splitlines():
        if line.startswith("    --hash") and out:
            out[-1] += "\n" + line
        elif line and not line.startswith("#"):
            out.append(line)
    return out


def pins() -> dict:
    from onehop.network.pins import load_pins

    return load_pins(CONSTRAINTS)


def test_the_constraints_pin_every_runtime_dependency_of_the_client_with_hashes():
    pinned = pins()
    closure = runtime_closure()
    assert set(closure) <= set(pinned), sorted(set(closure) - set(pinned))
    for key, pin in pinned.items():
        assert pin.hashes and all(len(h) == 64 for h in pin.hashes), key
        assert "==" not in pin.version and pin.version[0].isdigit(), key


def test_the_build_refuses_an_environment_that_differs_from_the_pins(tmp_path):
    text = CONSTRAINTS.read_text()
    installed = metadata.version("aiohttp")
    other = tmp_path / "client-build.txt"
    other.write_text(text.replace(f"aiohttp=={installed} ", "aiohttp=3.0.0 ".replace("=", "==")))
    with pytest.raises(BuildError, match=rf"aiohttp {installed} is installed, 3.0.0 is pinned"):
        stage_runtime(tmp_path / "stage", constraints=other)
    unpinned = tmp_path / "unpinned.txt"
    unpinned.write_text("\n".join(block for block in blocks(text) if not block.startswith("rich==")) + "\n")
    with pytest.raises(BuildError, match="rich .* not pinned"):
        stage_runtime(tmp_path / "stage2", constraints=unpinned)


def test_the_build_refuses_an_installed_file_that_differs_from_its_record(tmp_path, monkeypatch):
    """A distribution modified after installation (its RECORD says otherwise) is not bundled."""
    dist = metadata.distribution("idna")
    copy = tmp_path / "site"
    for file in dist.files:
        source = Path(str(dist.locate_file(file)))
        if source.is_file():
            (copy / file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / file)
    target = next(f for f in dist.files if f.name == "core.py")
    (copy / target).write_text((copy / target).read_text() + "\n# planted\n")
    tampered = next(metadata.distributions(path=[str(copy)], name="idna"))
    real = runtime_closure()
    import onehop.network.staging as staging

    monkeypatch.setattr(staging, "runtime_closure", lambda: {**real, "idna": tampered})
    with pytest.raises(BuildError, match="idna .*core.py differs from its RECORD"):
        stage_runtime(tmp_path / "stage", constraints=CONSTRAINTS)


def test_the_installed_runtime_stages_when_it_matches(tmp_path):
    stage_runtime(tmp_path / "stage")
    assert (tmp_path / "stage" / "aiohttp").is_dir() and (tmp_path / "stage" / "onehop").is_dir()


@pytest.mark.slow
def test_pip_refuses_a_wheel_whose_hash_is_not_pinned(tmp_path):
    """--wheels pypi|DIR: pip --require-hashes; a wheel with another hash is refused."""
    wheels = tmp_path / "wheels"
    idna = f"idna=={metadata.version('idna')}"
    got = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                          "--dest", str(wheels), idna], capture_output=True, text=True, timeout=300)
    if got.returncode != 0:
        pytest.skip(f"no index reachable: {got.stderr.strip()[-200:]}")
    wrong = tmp_path / "wrong.txt"
    wrong.write_text(f"{idna} --hash=sha256:{'0' * 64}\n")
    with pytest.raises(BuildError, match="(?i)hash"):
        stage_runtime(tmp_path / "stage", wheels=str(wheels), constraints=wrong)
    right = tmp_path / "right.txt"
    right.write_text("\n".join(block for block in blocks(CONSTRAINTS.read_text()) if block.startswith("idna==")) + "\n")
    stage_runtime(tmp_path / "stage2", wheels=str(wheels), constraints=right)
    assert (tmp_path / "stage2" / "idna" / "core.py").is_file()


def test_deploy_pins_servers_to_the_project_pins_not_the_operators_versions(monkeypatch):
    """Sibling: ``network deploy`` wrote the operator's installed versions as the servers'
    pip constraints; now the servers get the project's pins too."""
    import onehop.network.deploy.wheel as wheel

    real = runtime_closure()

    class Drifted:
        version = "3.0.0"

    monkeypatch.setattr(wheel, "runtime_closure", lambda: {**real, "aiohttp": Drifted()})
    lines = wheel.constraints(True).splitlines()
    assert f"aiohttp=={pins()['aiohttp'].version}" in lines and "aiohttp==3.0.0" not in lines
    assert {line.split("==")[0] for line in lines} >= set(real)
