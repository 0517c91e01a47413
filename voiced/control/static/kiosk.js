// The kiosk page: one WebSocket to /ws, the events drawn as they come, the controls sent as commands.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const LABELS = {
    sleeping: "Ready", woken: "Awake", listening: "Listening", thinking: "Thinking",
    speaking: "Speaking", muted: "Muted", reconnecting: "Reconnecting…", offline: "Offline", error: "Error",
  };
  const MAX_LINES = 60;
  const token = new URLSearchParams(location.search).get("token");
  let ws = null;
  let retryMs = 500;
  let nextId = 1;
  let talking = false;
  let muted = false;
  let userLine = null; // the caption of what the user is saying, until it is final
  const botLines = new Map(); // chat_id -> caption element

  function send(cmd) {
    if (!ws || ws.readyState !== WebSocket.OPEN) { notice("Not connected to the device"); return false; }
    cmd.v = 1;
    cmd.id = nextId++;
    ws.send(JSON.stringify(cmd));
    return true;
  }

  function notice(text) {
    const el = $("notice");
    el.textContent = text;
    el.hidden = !text;
    if (text) { clearTimeout(notice.timer); notice.timer = setTimeout(() => { el.hidden = true; }, 6000); }
  }

  function setState(state, hint) {
    document.body.dataset.state = state;
    $("state-label").textContent = LABELS[state] || state;
    $("hint").textContent = hint || "";
    $("hint").hidden = !hint;
  }

  function setLink(text, up) {
    const el = $("link");
    el.textContent = text;
    el.className = "link " + (up ? "up" : "down");
    document.body.dataset.link = up ? "up" : "down";
  }

  function setControls(isMuted, volumePct) {
    muted = isMuted;
    $("mute").setAttribute("aria-pressed", String(isMuted));
    $("mute").textContent = isMuted ? "Unmute" : "Mute";
    if (document.activeElement !== $("volume")) { $("volume").value = volumePct; }
    $("volume-value").textContent = String(volumePct);
  }

  function setLatency(turn) {
    const l = (turn && turn.latency_ms) || {};
    const ms = l.speech_end_to_first_sample_ms ?? l.speech_end_to_first_delta_ms;
    $("latency").textContent = ms == null ? "—" : "last reply after " + Math.round(ms) + " ms";
  }

  function addLine(kind, text) {
    $("placeholder")?.remove();
    const el = document.createElement("p");
    el.className = "line " + kind;
    el.textContent = text;
    const box = $("captions");
    box.appendChild(el);
    while (box.children.length > MAX_LINES) box.firstElementChild.remove();
    box.scrollTop = box.scrollHeight;
    return el;
  }

  function onUserText(ev) {
    if (!userLine) userLine = addLine("you interim", "");
    userLine.textContent = ev.text;
    userLine.scrollIntoView({ block: "end" });
    if (ev.final) { userLine.classList.remove("interim"); userLine = null; }
  }

  function onReplyText(ev) {
    const key = ev.chat_id || "";
    let el = botLines.get(key);
    if (!el) {
      if (!ev.delta) return;
      el = addLine("bot", "");
      botLines.set(key, el);
      if (botLines.size > 8) botLines.delete(botLines.keys().next().value);
    }
    if (ev.delta) el.textContent += ev.delta;
    el.scrollIntoView({ block: "end" });
    if (ev.final) botLines.delete(key);
  }

  function applyStatus(s) {
    setState(s.state, s.hint);
    setControls(s.muted, s.volume_pct);
    setLink(s.connected ? "Online" : "Server link down", s.connected);
    if (s.last_turn) setLatency(s.last_turn);
  }

  function onEvent(ev) {
    switch (ev.type) {
      case "snapshot": applyStatus(ev.status); break;
      case "state": setState(ev.state, ev.hint); break;
      case "controls": setControls(ev.muted, ev.volume_pct); break;
      case "user_text": onUserText(ev); break;
      case "reply_text": onReplyText(ev); break;
      case "turn":
        setLatency(ev.turn);
        if (userLine) { userLine.classList.remove("interim"); userLine = null; }
        break;
      case "interrupt": {
        const el = botLines.get(ev.chat_id || "");
        if (el) { el.classList.add("interrupted"); botLines.delete(ev.chat_id || ""); }
        break;
      }
      case "connection":
        if (ev.up) setLink("Online", true);
        else setLink(ev.retry_in_s != null ? "Reconnecting in " + ev.retry_in_s.toFixed(1) + " s" : "Reconnecting…", false);
        break;
      case "tool":
        if (ev.outcome !== "started") addLine("tool", "⚙ " + ev.name + ": " + ev.outcome);
        break;
      case "device":
        addLine("system", (ev.direction === "input" ? "Microphone " : "Speaker ") +
          (ev.present ? "connected" : "lost") + (ev.name ? " (" + ev.name + ")" : ""));
        break;
      case "server_error": notice("Server error " + ev.code + ": " + ev.message); break;
      case "reply": onReply(ev); break;
    }
  }

  function onReply(r) {
    if (!r.ok) { notice((r.error && r.error.message) || "command failed"); return; }
    if (r.cmd === "devices" && r.result) fillDevices(r.result);
  }

  function fillDevices(list) {
    for (const [dir, sel, chosen] of [["input", $("input-device"), list.selected_input],
                                       ["output", $("output-device"), list.selected_output]]) {
      sel.replaceChildren();
      const def = new Option("System default", "");
      sel.add(def);
      for (const d of list[dir] || []) {
        const opt = new Option(d.name + (d.default ? " (default)" : ""), d.index != null ? String(d.index) : d.name);
        if (chosen && d.name === chosen) opt.selected = true;
        sel.add(opt);
      }
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    ws = new WebSocket(scheme + location.host + "/ws" + (token ? "?token=" + encodeURIComponent(token) : ""));
    ws.onopen = () => { retryMs = 500; $("talk").disabled = false; };
    ws.onmessage = (m) => { try { onEvent(JSON.parse(m.data)); } catch (e) { console.error(e); } };
    ws.onclose = () => {
      $("talk").disabled = true;
      talking = false;
      $("talk").setAttribute("aria-pressed", "false");
      setLink("No link to the device", false);
      setState("offline", "retrying the connection to the device");
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 5000);
    };
  }

  // Hold to talk: pressed on pointer down, released on up, cancel or when the pointer leaves.
  function press(e) {
    if (e) {
      e.preventDefault();
      // Keep receiving the release even when the finger slides off the button.
      if (e.pointerId != null) { try { $("talk").setPointerCapture(e.pointerId); } catch (_) { /* synthetic */ } }
    }
    if (talking) return;
    if (send({ cmd: "talk", pressed: true })) {
      talking = true;
      $("talk").setAttribute("aria-pressed", "true");
      $("talk").textContent = "Listening… release to send";
    }
  }
  function release(e) {
    if (e) e.preventDefault();
    if (!talking) return;
    talking = false;
    $("talk").setAttribute("aria-pressed", "false");
    $("talk").textContent = "Hold to talk";
    send({ cmd: "talk", pressed: false });
  }
  const talk = $("talk");
  talk.addEventListener("pointerdown", press);
  talk.addEventListener("pointerup", release);
  talk.addEventListener("pointercancel", release);
  talk.addEventListener("lostpointercapture", release);
  talk.addEventListener("contextmenu", (e) => e.preventDefault());
  talk.addEventListener("keydown", (e) => { if ((e.key === " " || e.key === "Enter") && !e.repeat) press(e); });
  talk.addEventListener("keyup", (e) => { if (e.key === " " || e.key === "Enter") release(e); });
  window.addEventListener("blur", () => release(null));

  $("mute").addEventListener("click", () => send({ cmd: "mute", muted: !muted }));

  let volumeTimer = null;
  const volume = $("volume");
  volume.addEventListener("input", () => {
    $("volume-value").textContent = volume.value;
    clearTimeout(volumeTimer);
    volumeTimer = setTimeout(() => send({ cmd: "volume", volume_pct: Number(volume.value) }), 120);
  });
  volume.addEventListener("change", () => {
    clearTimeout(volumeTimer);
    send({ cmd: "volume", volume_pct: Number(volume.value) });
  });

  $("text-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("text").value.trim();
    if (text && send({ cmd: "text", text })) { addLine("you", text); $("text").value = ""; }
  });

  $("devices").addEventListener("toggle", () => { if ($("devices").open) send({ cmd: "devices" }); });
  for (const sel of [$("input-device"), $("output-device")]) {
    sel.addEventListener("change", () => send({ cmd: "select_device", direction: sel.dataset.direction, device: sel.value }));
  }

  $("talk").disabled = true;
  connect();
})();
