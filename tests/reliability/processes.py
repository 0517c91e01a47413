"""``voiced run`` as a real child process against an emulator, for tests that need its own RSS,
its own signals or its own output."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

from tests.agent.harness import BOT_ID, TOKEN, UTTERANCE


async def spawn_run(
    url: str, tmp_path: Path, *extra: str
) -> tuple[asyncio.subprocess.Process, socket.socket]:
    """Start ``voiced run`` (WAV devices, JSON logs on stdout) and its sd_notify socket."""
    notify_path = tmp_path / "notify"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.setblocking(False)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOICED_", "COZE_"))}
    env.update(COZE_API_TOKEN=TOKEN, NOTIFY_SOCKET=str(notify_path))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voiced", "run",
        "--set", f"coze.base_url={url}", "--set", f"coze.bot_id={BOT_ID}", "--log-format", "json",
        "--input-wav", str(UTTERANCE), "--output-wav", str(tmp_path / "out.wav"), *extra,
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    return proc, notify


async def wait_ready(notify: socket.socket, timeout_s: float = 30.0) -> None:
    """Return once the child sent READY=1."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout_s):
        while b"READY=1" not in await loop.sock_recv(notify, 4096):
            pass


def rss_mb(pid: int) -> float:
    """The resident set size of process ``pid`` in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")
