"""The control API of the real daemon against the emulator, over a real loopback socket."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.agent.harness import TOKEN, rms, utterance_pcm
from tests.control.http_get import http_get
from tests.control.live import client, of_type, running_device, silent_source
from voiced.emulator import EmulatorSettings, load_scenario, serve_emulator
from voiced.protocol import events as ev

pytestmark = pytest.mark.timeout(120)


def appends(emu: object) -> int:
    return sum(isinstance(r.event, ev.InputAudioBufferAppend) for r in emu.received)  # type: ignore[attr-defined]


async def test_snapshot_then_a_spoken_turn_in_order() -> None:
    async with serve_emulator(EmulatorSettings(port=0, scenario=load_scenario("echo"))) as emu:
        source = silent_source()
        async with running_device(emu, source) as device, client(device) as api:
            snapshot = await api.event(lambda e: e["type"] == "snapshot")
            source.append(utterance_pcm())
            turn = await api.event(lambda e: e["type"] == "turn")
            await asyncio.sleep(0.2)
            events = list(api.events)
            status = await api.command("status")
    assert api.events[0]["type"] == "snapshot"
    assert snapshot["status"]["state"] == "sleeping"  # always listening: ready
    assert snapshot["status"]["connected"] is True
    assert snapshot["status"]["volume_pct"] == 100
    assert snapshot["status"]["input_device"] == "default"

    def first(predicate: object) -> int:
        return next(i for i, e in enumerate(events) if predicate(e))  # type: ignore[operator]

    listening = first(lambda e: e == {"v": 1, "type": "state", "state": "listening"})
    heard = first(lambda e: e["type"] == "user_text" and e.get("final"))
    thinking = first(lambda e: e.get("state") == "thinking")
    first_delta = first(lambda e: e["type"] == "reply_text" and e.get("delta"))
    speaking = first(lambda e: e.get("state") == "speaking")
    reply_done = first(lambda e: e["type"] == "reply_text" and e.get("final"))
    ended = first(lambda e: e["type"] == "turn")
    assert listening < thinking < speaking < ended
    assert listening < heard < first_delta < reply_done < ended
    assert events[heard]["text"] == "Testing, one, two, three."
    reply = "".join(e.get("delta", "") for e in of_type(events, "reply_text"))
    assert reply == turn["turn"]["reply"] == "Testing, one, two, three."
    assert turn["turn"]["heard"] == "Testing, one, two, three."
    latency = turn["turn"]["latency_ms"]
    assert 0 < latency["speech_end_to_first_sample_ms"] < 5000
    assert status["result"]["last_turn"]["reply"] == reply


async def test_every_command_lands_where_it_should() -> None:
    async with serve_emulator(EmulatorSettings(port=0, scenario=load_scenario("echo"))) as emu:
        source = silent_source()
        async with running_device(emu, source) as device, client(device) as api:
            h = device.harness
            await api.event(lambda e: e["type"] == "snapshot")

            # A typed message is answered aloud, at full volume.
            assert (await api.command("text", text="The quick brown fox jumps over the lazy dog."))["ok"]
            loud_turn = await api.event(lambda e: e["type"] == "turn")
            loud = h.sink.audio().copy()
            assert loud_turn["turn"]["reply"] == "The quick brown fox jumps over the lazy dog."

            # The volume: the next reply is quieter where it is played.
            assert (await api.command("volume", volume_pct=25))["ok"]
            await api.event(lambda e: e == {"v": 1, "type": "controls", "muted": False, "volume_pct": 25})
            before = len(h.sink.blocks)
            seen = len(api.events)
            await api.command("text", text="The quick brown fox jumps over the lazy dog.")
            await api.event(lambda e: e["type"] == "turn", start=seen)
            quiet = np.concatenate([b for _, b in list(h.sink.blocks)[before:]])
            await api.command("volume", volume_pct=100)

            # Mute: speech is not sent while muted.
            assert (await api.command("mute", muted=True))["ok"]
            await api.event(lambda e: e.get("state") == "muted")
            sent = appends(emu)
            source.append(utterance_pcm())
            await asyncio.sleep(2.5)
            muted_appends = appends(emu) - sent
            assert (await api.command("mute", muted=False))["ok"]

            # Push-to-talk: a press streams every frame, the release ends the turn.
            sent = appends(emu)
            assert (await api.command("talk", pressed=True))["ok"]
            await asyncio.sleep(0.6)
            assert (await api.command("talk", pressed=False))["ok"]
            await emu.wait_for(lambda e: isinstance(e, ev.InputAudioBufferComplete), 5)
            talk_appends = appends(emu) - sent

            # Interrupt a long reply: the server is told to cancel.
            seen = len(api.events)
            await api.command("text", text=" ".join(["A long answer that goes on and on."] * 12))
            await api.event(lambda e: e.get("state") == "speaking", start=seen)
            await asyncio.sleep(0.4)  # some of the reply is heard before it is cut
            assert (await api.command("interrupt"))["ok"]
            await emu.wait_for(lambda e: isinstance(e, ev.ConversationChatCancel), 5)
            interrupted = await api.event(lambda e: e["type"] == "interrupt", start=seen)
            cut = await api.event(lambda e: e["type"] == "turn", start=seen)

            # An announcement is heard without asking the bot.
            await asyncio.sleep(0.5)
            before = len(h.sink.blocks)
            assert (await api.command("announce", text="The kitchen timer is done."))["ok"]
            await emu.wait_for(lambda e: isinstance(e, ev.InputTextGenerateAudio), 5)
            async with asyncio.timeout(10):
                while True:
                    blocks = [b for _, b in list(h.sink.blocks)[before:]]
                    if blocks and rms(np.concatenate(blocks)) > 100:
                        break
                    await asyncio.sleep(0.05)

            # Reload without a config file, devices that cannot be switched, the device list.
            assert (await api.command("reload"))["ok"]
            switch = await api.command("select_device", direction="output", device="USB")
            devices = await api.command("devices")
    assert rms(quiet) < 0.45 * rms(loud)
    assert muted_appends == 0
    assert talk_appends >= 15  # about 0.6 s of 20 ms frames
    assert interrupted["reason"] == "command"
    # What was heard of the reply before the flush: it had been playing for a while.
    assert interrupted["played_ms"] is not None and interrupted["played_ms"] > 0
    assert cut["turn"]["interrupted"] is True
    assert switch["ok"] is False and switch["error"]["code"] == "rejected"
    assert "restart" in switch["error"]["message"]
    assert devices["ok"] is True or devices["error"]["code"] == "rejected"


async def test_bad_commands_get_an_error_and_the_device_runs_on() -> None:
    async with (
        serve_emulator(EmulatorSettings(port=0, scenario=load_scenario("echo"))) as emu,
        running_device(emu, silent_source()) as device,
        client(device) as api,
    ):
        await api.event(lambda e: e["type"] == "snapshot")
        not_json = await api.send_raw("{nope")
        unknown = await api.command("launch")
        loud = await api.command("volume", volume_pct=150)
        empty = await api.command("text", text="")
        version = await api.send_raw('{"v": 2, "cmd": "status"}')
        status = await api.command("status")
    assert not_json["error"]["code"] == "bad_json"
    assert unknown["error"]["code"] == "bad_command" and "expected one of" in unknown["error"]["message"]
    assert loud["error"]["code"] == "bad_command" and "volume_pct" in loud["error"]["message"]
    assert empty["error"]["code"] == "bad_command"
    assert version["error"]["code"] == "unsupported_version"
    assert status["ok"] is True and status["result"]["connected"] is True


async def test_a_client_that_never_reads_does_not_delay_the_audio() -> None:
    async with serve_emulator(EmulatorSettings(port=0, scenario=load_scenario("echo"))) as emu:
        source = silent_source()
        async with running_device(emu, source, **{"control.client_queue_events": 8}) as device:
            server = device.server
            # A raw WebSocket handshake, then nothing is ever read.
            stalled = socket.create_connection(("127.0.0.1", server.port or 0))
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stalled.sendall(
                b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            try:
                async with client(device) as api:
                    await api.event(lambda e: e["type"] == "snapshot")
                    agent = device.harness.daemon.agent
                    assert agent is not None
                    for _ in range(3):
                        # Hundreds of text events stream ahead of the audio; then the reply is cut.
                        seen = len(api.events)
                        await api.command("text", text=" ".join(["Many words to stream as text."] * 20))
                        await api.event(
                            lambda e: e.get("final") is True and e["type"] == "reply_text", start=seen
                        )
                        await api.command("interrupt")
                        await api.event(lambda e: e["type"] == "turn", start=seen)
                    source.append(utterance_pcm())
                    turn = await device.harness.next_turn()
                    mic_to_wire_p95 = agent.latency.percentile("mic_to_wire", 95)
                    subscribers = device.server.publisher.subscriber_count
            finally:
                stalled.close()
    assert mic_to_wire_p95 is not None and mic_to_wire_p95 < 200
    speech_end_to_first_sample = turn.summary()["speech_end_to_first_sample_ms"]
    assert isinstance(speech_end_to_first_sample, float) and speech_end_to_first_sample < 5000
    # The stalled client was dropped once its queue filled (or never held more than it may).
    assert subscribers <= 2


async def test_metrics_count_what_happened() -> None:
    async with serve_emulator(EmulatorSettings(port=0, scenario=load_scenario("echo"))) as emu:
        source = silent_source()
        async with running_device(emu, source) as device, client(device) as api:
            await api.event(lambda e: e["type"] == "snapshot")
            source.append(utterance_pcm())
            await api.event(lambda e: e["type"] == "turn")
            seen = len(api.events)
            await api.command("text", text=" ".join(["A long answer that goes on and on."] * 12))
            await api.event(lambda e: e.get("state") == "speaking", start=seen)
            await api.command("interrupt")
            await api.event(lambda e: e["type"] == "turn", start=seen)
            reply = await http_get(device.server.url + "metrics")
    assert reply.status == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(reply.body.decode())
        for s in family.samples
    }
    assert samples[("voiced_turns_total", ())] >= 2
    assert samples[("voiced_interrupts_total", (("reason", "command"),))] == 1
    assert samples[("voiced_connected", ())] == 1
    assert samples[("voiced_reconnects_total", ())] == 0
    assert samples[("voiced_mic_to_wire_seconds_count", ())] > 20
    assert samples[("voiced_speech_end_to_first_audio_seconds_count", ())] >= 1
    assert samples[("voiced_resident_memory_bytes", ())] > 10_000_000
    assert ("voiced_jitter_target_seconds", ()) in samples


async def test_hooks_run_with_the_daemons_events(tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"
    record = f'printf "%s %s\\n" "$VOICED_HOOK" "$VOICED_STATE" >> {log}'
    overrides = {
        "hooks.on_listening": record,
        "hooks.on_thinking": record,
        "hooks.on_speaking": record,
        "hooks.on_turn": f'env > {tmp_path}/turn.env; printf "%s" "$VOICED_EVENT" > {tmp_path}/turn.json',
    }
    async with serve_emulator(EmulatorSettings(port=0, scenario=load_scenario("echo"))) as emu:
        source = silent_source()
        async with running_device(emu, source, **overrides) as device, client(device) as api:
            await api.event(lambda e: e["type"] == "snapshot")
            source.append(utterance_pcm())
            await api.event(lambda e: e["type"] == "turn")
            async with asyncio.timeout(10):
                while not (tmp_path / "turn.json").exists() or "speaking" not in log.read_text():
                    await asyncio.sleep(0.05)
    lines = log.read_text().splitlines()
    assert lines.index("on_listening listening") < lines.index("on_thinking thinking")
    assert lines.index("on_thinking thinking") < lines.index("on_speaking speaking")
    assert '"heard":"Testing, one, two, three."' in (tmp_path / "turn.json").read_text()
    environment = (tmp_path / "turn.env").read_text()
    assert "VOICED_EVENT_TYPE=turn" in environment
    assert TOKEN not in environment
