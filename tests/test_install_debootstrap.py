"""The README's service install in a fresh Debian root: the service then runs from /opt/voiced alone.

Opt-in (``--debootstrap``): it needs root, debootstrap and the network. The first run builds a
minimal Debian 12 root with debootstrap (about a minute) and keeps it in
``$VOICED_DEBOOTSTRAP_CACHE`` (default ``~/.cache/voiced-debootstrap``), with apt's .deb files and
pip's cache beside it: every run installs into a fresh copy of that root, and a rerun downloads
only what pip cannot cache.

In the copy, as root: the checkout is copied in, ``scripts/install-service.sh`` runs as the README
says (it installs the apt packages and builds /opt/voiced's own virtualenv from the package index),
the README's next steps follow (token file, ``coze.bot_id``), then the checkout is deleted. What
remains must work: the unit's ``ExecStart`` program answers ``--version``, ``voiced check
--skip-devices`` passes against the emulator it brings along, and ``systemd-analyze verify`` (the
root's own systemd) is clean on the installed unit.

The machine's way to the package indexes goes in with the checkout: its resolv.conf, its local CA
certificates, its pip configuration and ``PIP_*``/proxy variables; ``$VOICED_DEBIAN_MIRROR``
overrides the Debian mirror found in its apt sources.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.test_install import copy_checkout

pytestmark = [pytest.mark.debootstrap, pytest.mark.timeout(1800)]

SUITE = "bookworm"
# python3-venv: the virtualenv; systemd: systemd-analyze and what a device has; ca-certificates: pip.
BASE_PACKAGES = "python3,python3-venv,systemd,ca-certificates"
CHECKOUT_IN_ROOT = "/src/voiced"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def cache_dir() -> Path:
    configured = os.environ.get("VOICED_DEBOOTSTRAP_CACHE")
    if configured:
        return Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "voiced-debootstrap"


def apt_source_entries() -> Iterator[tuple[str, list[str]]]:
    """(URI, suites) of each ``deb`` source of this machine, one-line and deb822 formats."""
    apt = Path("/etc/apt")
    one_line = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]
    for path in one_line:
        if not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            words = [w for w in line.split("#", 1)[0].split() if not w.startswith("[")]
            if len(words) >= 3 and words[0] == "deb":
                yield words[1], [words[2]]
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        for stanza in path.read_text(errors="replace").split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if ":" in line and not line.startswith(("#", " ")):
                    key, value = line.split(":", 1)
                    fields[key.strip().lower()] = value.strip()
            if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
                for uri in fields.get("uris", "").split():
                    yield uri, fields.get("suites", "").split()


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses for the suite (the network may allow no other)."""
    configured = os.environ.get("VOICED_DEBIAN_MIRROR")
    if configured:
        return configured
    for uri, suites in apt_source_entries():
        if SUITE in suites and uri.rstrip("/").endswith("/debian"):
            return uri
    return "http://deb.debian.org/debian"


def mounted_below(path: Path) -> list[str]:
    prefix = str(path.resolve())
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return points


def remove_root(path: Path) -> None:
    """Delete a chroot directory, never through a mount that is still there (/dev, /proc…)."""
    if not path.exists():
        return
    still = mounted_below(path)
    assert not still, f"refusing to delete {path}: still mounted {still}"
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)


def pristine_root(cache: Path) -> Path:
    """The debootstrapped root, built once and kept; never installed into (copies are)."""
    root = cache / f"{SUITE}-root"
    done = cache / f"{SUITE}-root.complete"
    if done.exists() and root.is_dir():
        return root
    partial = cache / f"{SUITE}-root.partial"
    remove_root(partial)
    remove_root(root)
    cache.mkdir(parents=True, exist_ok=True)
    built = subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={BASE_PACKAGES}",
            SUITE,
            str(partial),
            debian_mirror(),
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert built.returncode == 0, f"debootstrap failed:\n{built.stdout[-3000:]}\n{built.stderr[-3000:]}"
    partial.rename(root)
    done.touch()
    return root


def bring_in_the_network_settings(root: Path) -> None:
    """What this machine needs to reach the indexes: name servers, local CAs, pip's configuration."""
    shutil.copy2("/etc/resolv.conf", root / "etc/resolv.conf")
    local_cas = sorted(Path("/usr/local/share/ca-certificates").glob("**/*.crt"))
    for ca in local_cas:
        dest = root / "usr/local/share/ca-certificates" / ca.relative_to("/usr/local/share/ca-certificates")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ca, dest)
    if local_cas:
        in_root(root, ["update-ca-certificates"], timeout=120)
    if Path("/etc/pip.conf").is_file():
        shutil.copy2("/etc/pip.conf", root / "etc/pip.conf")
    if Path("/etc/xdg/pip").is_dir():
        shutil.copytree("/etc/xdg/pip", root / "etc/xdg/pip", dirs_exist_ok=True)


def root_env(root: Path, **extra: str) -> dict[str, str]:
    """A clean environment for the chroot: no checkout's venv, no VOICED_/COZE_ variables; the
    machine's proxy and PIP_* settings unless they name a path the root does not have."""
    env = {"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb"}
    for key, value in os.environ.items():
        if key.startswith("PIP_") or key.lower() in ("http_proxy", "https_proxy", "no_proxy"):
            local = value.removeprefix("file://")
            if local.startswith("/") and not all((root / p.lstrip("/")).exists() for p in local.split()):
                continue
            env[key] = value
    env.update(extra)
    return env


def in_root(
    root: Path,
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["chroot", str(root), *argv],
        input=stdin,
        capture_output=True,
        text=True,
        env=env if env is not None else root_env(root),
        timeout=timeout,
        check=False,
    )


@contextmanager
def mounted(root: Path, cache: Path) -> Iterator[None]:
    """/proc, /dev, /dev/pts, /sys, and the download caches, unmounted whatever happens."""
    mounts = [
        (["-t", "proc", "proc"], root / "proc"),
        (["--bind", "/dev"], root / "dev"),
        (["--bind", "/dev/pts"], root / "dev/pts"),
        (["-t", "sysfs", "sysfs"], root / "sys"),
        (["--bind", str(cache / "apt-archives")], root / "var/cache/apt/archives"),
        (["--bind", str(cache / "pip")], root / "root/.cache/pip"),
    ]
    (cache / "apt-archives/partial").mkdir(parents=True, exist_ok=True)
    (cache / "pip").mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        for args, point in mounts:
            point.mkdir(parents=True, exist_ok=True)
            subprocess.run(["mount", *args, str(point)], check=True)
            stack.callback(unmount, point)
        yield


def unmount(point: Path) -> None:
    if subprocess.run(["umount", str(point)], check=False).returncode != 0:
        subprocess.run(["umount", "--lazy", str(point)], check=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[str], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the emulator exited with {process.returncode}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"the emulator did not listen on {port} within {timeout_s} s")


@dataclass
class FreshInstall:
    root: Path
    install: subprocess.CompletedProcess[str]
    exec_start: list[str]


@pytest.fixture(scope="module")
def fresh() -> Iterator[FreshInstall]:
    if os.geteuid() != 0:
        pytest.skip("debootstrap and chroot need root")
    for tool in ("debootstrap", "chroot", "mount"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (apt-get install debootstrap)")
    cache = cache_dir()
    pristine = pristine_root(cache)
    run = cache / "run"
    remove_root(run)
    subprocess.run(["cp", "-a", "--reflink=auto", str(pristine), str(run)], check=True)
    try:
        with mounted(run, cache):
            bring_in_the_network_settings(run)
            copy_checkout(run / CHECKOUT_IN_ROOT.lstrip("/"))
            # The README's steps, as root in the checkout.
            install = in_root(
                run,
                ["/bin/sh", "-c", f"cd {CHECKOUT_IN_ROOT} && scripts/install-service.sh"],
                timeout=1200,
            )
            assert install.returncode == 0, install.stdout + install.stderr
            token = in_root(
                run,
                ["/bin/sh", "-c", "install -m 600 /dev/stdin /etc/voiced/coze-token"],
                stdin="pat_fresh\n",
            )
            assert token.returncode == 0, token.stderr
            shutil.rmtree(run / CHECKOUT_IN_ROOT.lstrip("/"))
            unit = (run / "etc/systemd/system/voiced.service").read_text()
            exec_start = next(
                shlex.split(line.split("=", 1)[1])
                for line in unit.splitlines()
                if line.startswith("ExecStart=")
            )
            yield FreshInstall(run, install, exec_start)
    finally:
        remove_root(run)


def test_the_install_steps_succeed_and_leave_the_token_root_only(fresh: FreshInstall) -> None:
    assert "installed /opt/voiced/venv-" in fresh.install.stderr, fresh.install.stderr
    assert "Traceback" not in fresh.install.stderr
    token = (fresh.root / "etc/voiced/coze-token").stat()
    assert oct(token.st_mode & 0o777) == "0o600" and token.st_uid == 0
    assert not (fresh.root / CHECKOUT_IN_ROOT.lstrip("/")).exists()


def test_exec_start_runs_from_opt_voiced_with_the_checkout_deleted(fresh: FreshInstall) -> None:
    program = fresh.exec_start[0]
    assert program.startswith("/opt/voiced/"), fresh.exec_start
    version = in_root(fresh.root, [program, "--version"])
    assert version.returncode == 0 and version.stdout.startswith("voiced "), version.stderr
    where = in_root(
        fresh.root, ["/opt/voiced/.venv/bin/python", "-c", "import voiced; print(voiced.__file__)"]
    )
    assert where.stdout.startswith("/opt/voiced/"), where.stdout + where.stderr
    leftovers = subprocess.run(
        ["grep", "-rlF", "--exclude=pip.log", CHECKOUT_IN_ROOT, str(fresh.root / "opt/voiced")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert leftovers.stdout == "", f"files under /opt/voiced name the checkout: {leftovers.stdout}"


def test_check_passes_against_the_installed_emulator(fresh: FreshInstall) -> None:
    program = fresh.exec_start[0]
    port = free_port()
    config = fresh.root / "etc/voiced/voiced.toml"
    text = config.read_text()
    assert 'bot_id = ""' in text and 'base_url = "wss://ws.coze.cn"' in text
    config.write_text(
        text.replace('bot_id = ""', 'bot_id = "7000000000000000001"').replace(
            'base_url = "wss://ws.coze.cn"', f'base_url = "ws://127.0.0.1:{port}"'
        )
    )
    log = fresh.root / "tmp/emulator.log"
    with log.open("w") as log_file:
        emulator = subprocess.Popen(
            ["chroot", str(fresh.root), program, "emulator", "--port", str(port), "--voice", "synthetic"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            text=True,
            env=root_env(fresh.root),
        )
    try:
        wait_for_port(port, emulator)
        # The unit hands the token over as the credential coze-token (LoadCredential=): do the same.
        check = in_root(
            fresh.root,
            [program, "check", "--skip-devices", "--config", "/etc/voiced/voiced.toml"],
            env=root_env(fresh.root, CREDENTIALS_DIRECTORY="/etc/voiced"),
            timeout=120,
        )
    finally:
        emulator.terminate()
        try:
            emulator.wait(timeout=20)
        except subprocess.TimeoutExpired:
            emulator.kill()
            emulator.wait()
    assert check.returncode == 0, check.stdout + check.stderr
    rows = {
        cells[0]: cells[1:] for cells in (re.split(r"\s{2,}", line) for line in check.stdout.splitlines())
    }
    assert rows["server reachable, chat.updated received"][0] == "ok", check.stdout
    assert rows["config file"] == ["ok", "/etc/voiced/voiced.toml"], check.stdout
    assert "pat_fresh" not in check.stdout + check.stderr


def test_systemd_analyze_verify_is_clean_in_the_root(fresh: FreshInstall) -> None:
    verify = in_root(fresh.root, ["systemd-analyze", "verify", "--man=no", "voiced.service"])
    assert verify.returncode == 0 and verify.stderr == "", verify.stderr
