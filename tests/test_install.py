"""scripts/install-service.sh: a service that runs from /opt/voiced alone, and the platform check.

The script installs into a fake root (``--root``) here, so the tests need not write /opt or /etc;
the virtualenv is built for real (regular install from a copy of the source), then the checkout it
came from is moved away before the installed ``voiced`` is run.

The full install into a fresh Debian root (apt packages, the package index, the unit verified
there) is tests/test_install_debootstrap.py, run with ``--debootstrap``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "scripts/install-service.sh"

pytestmark = pytest.mark.timeout(300)


@dataclass
class Installed:
    root: Path
    first: subprocess.CompletedProcess[str]
    again: subprocess.CompletedProcess[str]
    moved_checkout: Path

    @property
    def voiced(self) -> Path:
        return self.root / "opt/voiced/.venv/bin/voiced"


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("VOICED_", "COZE_", "PYTHON", "VIRTUAL_ENV"))
    }
    env.update(extra)
    return env


def copy_checkout(dest: Path) -> None:
    """The checkout's files as a fresh clone would have them (tracked and new, nothing ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


def install(checkout: Path, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(checkout / SCRIPT), "--root", str(root), *args],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=root.parent,
        timeout=240,
        check=False,
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("install")
    checkout = base / "checkout"
    copy_checkout(checkout)
    root = base / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("pi:x:1000:1000::/home/pi:/bin/bash\n")
    first = install(checkout, root, "--user-session", "pi")
    assert first.returncode == 0, first.stderr
    # What a user does between two runs: edit the config, add a token others can read.
    config = root / "etc/voiced/voiced.toml"
    config.write_text(config.read_text().replace('bot_id = ""', 'bot_id = "7000000000000000001"'))
    (root / "etc/voiced/coze-token").write_text("pat_installtest\n")
    (root / "etc/voiced/coze-token").chmod(0o644)
    again = install(checkout, root)
    assert again.returncode == 0, again.stderr
    moved = base / "checkout-moved-away"
    checkout.rename(moved)
    return Installed(root, first, again, moved)


def test_the_installed_voiced_runs_with_the_checkout_gone(installed: Installed) -> None:
    env = clean_env()
    version = subprocess.run(
        [installed.voiced, "--version"], capture_output=True, text=True, env=env, cwd="/", check=False
    )
    assert version.returncode == 0 and version.stdout.startswith("voiced "), version.stderr
    where = subprocess.run(
        [installed.root / "opt/voiced/.venv/bin/python", "-c", "import voiced; print(voiced.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(installed.root / "opt/voiced"), where
    check = subprocess.run(
        [installed.voiced, "check", "--skip-devices", "--config", installed.root / "etc/voiced/voiced.toml"],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        timeout=60,
        check=False,
    )
    assert "Traceback" not in check.stderr, check.stderr
    assert "config file" in check.stdout and str(installed.root / "etc/voiced/voiced.toml") in check.stdout


def test_it_is_a_regular_install_built_here_not_a_copied_or_editable_one(installed: Installed) -> None:
    venv = (installed.root / "opt/voiced/.venv").resolve()
    assert venv.parent == installed.root / "opt/voiced" and venv.name.startswith("venv-")
    assert installed.voiced.read_text().splitlines()[0] == f"#!{venv}/bin/python"
    site = next(venv.glob("lib/python3*/site-packages"))
    direct_url = json.loads(next(site.glob("voiced-*.dist-info/direct_url.json")).read_text())
    assert direct_url.get("dir_info", {}).get("editable") is not True
    for pth in site.glob("*.pth"):
        assert "checkout" not in pth.read_text(), pth


def test_config_and_token_files_get_their_owners_and_modes(installed: Installed) -> None:
    etc = installed.root / "etc/voiced"
    assert oct(etc.stat().st_mode & 0o777) == "0o755"
    assert oct((etc / "voiced.toml").stat().st_mode & 0o777) == "0o644"
    assert oct((etc / "coze-token").stat().st_mode & 0o777) == "0o600"
    if os.geteuid() == 0:
        assert (etc / "coze-token").stat().st_uid == 0
    # The second run kept the edited config.
    assert 'bot_id = "7000000000000000001"' in (etc / "voiced.toml").read_text()
    assert "no token yet" in installed.first.stderr and "no token yet" not in installed.again.stderr


def test_a_second_run_is_idempotent(installed: Installed) -> None:
    assert "up to date" in installed.again.stderr
    assert len(list((installed.root / "opt/voiced").glob("venv-*"))) == 1


def test_the_sound_session_drop_in_reaches_the_users_sound_server(installed: Installed) -> None:
    dropin = (installed.root / "etc/systemd/system/voiced.service.d/sound-session.conf").read_text()
    for line in (
        "User=pi",
        "DynamicUser=no",
        "RemoveIPC=no",
        "ProtectHome=tmpfs",
        "BindReadOnlyPaths=/run/user/1000",
        "Environment=XDG_RUNTIME_DIR=/run/user/1000",
        "Environment=PULSE_SERVER=unix:/run/user/1000/pulse/native",
    ):
        assert line in dropin.splitlines()
    assert "loginctl enable-linger pi" in installed.first.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_is_clean_on_the_installed_unit(installed: Installed) -> None:
    # verify resolves the unit's dependencies and commands inside the root: give it systemd's own
    # units and /bin/kill (ExecReload=), as any Debian root has them.
    root = installed.root
    (root / "usr/lib/systemd").mkdir(parents=True, exist_ok=True)
    if not (root / "usr/lib/systemd/system").exists():
        shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "usr/bin").mkdir(exist_ok=True)
    shutil.copy2("/usr/bin/kill", root / "usr/bin/kill")
    for link, target in (("bin", "usr/bin"), ("lib", "usr/lib")):
        if not (root / link).is_symlink():
            (root / link).symlink_to(target)
    done = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", "--man=no", "voiced.service"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_uninstall_keeps_the_config_and_purge_removes_it(tmp_path: Path, installed: Installed) -> None:
    root = tmp_path / "root"
    shutil.copytree(installed.root / "etc", root / "etc", symlinks=True)
    (root / "opt/voiced").mkdir(parents=True)
    done = install(ROOT, root, "--uninstall")
    assert done.returncode == 0, done.stderr
    assert not (root / "opt/voiced").exists()
    assert not (root / "etc/systemd/system/voiced.service").exists()
    assert not (root / "etc/systemd/system/voiced.service.d").exists()
    assert (root / "etc/voiced/voiced.toml").exists()
    assert install(ROOT, root, "--uninstall", "--purge").returncode == 0
    assert not (root / "etc/voiced").exists()


@pytest.mark.parametrize("machine", ["armv7l", "armhf", "i686"])
@pytest.mark.parametrize("script", ["scripts/setup.sh", SCRIPT])
def test_a_32_bit_system_is_refused_in_one_line(tmp_path: Path, machine: str, script: str) -> None:
    args = ["--root", str(tmp_path)] if script == SCRIPT else []
    done = subprocess.run(
        [ROOT / script, *args],
        capture_output=True,
        text=True,
        env=clean_env(VOICED_MACHINE=machine, VOICED_VENV=str(tmp_path / "venv")),
        check=False,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "32-bit" in lines[0] and "64-bit" in lines[0], done.stderr
    assert not (tmp_path / "venv").exists() and not (tmp_path / "opt").exists()


def test_the_unit_file_is_the_one_installed(installed: Installed) -> None:
    installed_unit = (installed.root / "etc/systemd/system/voiced.service").read_text()
    assert installed_unit == (ROOT / "systemd/voiced.service").read_text()
    assert "ExecStart=/opt/voiced/.venv/bin/voiced run" in installed_unit
