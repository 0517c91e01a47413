#!/usr/bin/env bash
# Brings a fresh Debian / Raspberry Pi OS machine to the point where voiced runs:
# system libraries through apt (only the missing ones), a virtualenv in .venv, and the Python
# packages. Idempotent and quick when nothing changed. Usage: scripts/setup.sh [--test]
# --test also builds .venv-sdk: the official Coze Python SDK (cozepy) in a virtualenv of its own, for
# the conformance tests and the benchmark baseline. cozepy pins an older websockets than voiced runs
# on; kept apart, it cannot change what the daemon is tested on. It also installs the official Node SDK
# (@coze/api, pinned by tests/emulator/node/package-lock.json) into tests/emulator/node/node_modules when
# node and npm are on the machine or come from apt (nodejs, npm); without them that test is skipped.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"

with_test=0
[ "${1:-}" = "--test" ] && with_test=1

# libopus0: opuslib loads it with ctypes. libportaudio2: sounddevice. espeak-ng: the emulator's
# offline voice (it falls back to a synthetic voice without it).
apt_runtime=(libopus0 libportaudio2 espeak-ng)
# A private headless PulseAudio with virtual devices lets the tests drive real PortAudio
# through ALSA's pulse plugin. chromium: the kiosk page is tested in a real browser (playwright
# drives the system's Chromium; it never downloads one). valgrind: the benchmark counts
# instructions with callgrind.
apt_test=(pulseaudio pulseaudio-utils libasound2-plugins chromium valgrind)

log() { printf 'setup: %s\n' "$*" >&2; }

# shellcheck source=scripts/platform.sh
. "$here/scripts/platform.sh"
voiced_check_platform || exit 1

# The service runs on the distribution's own interpreter (a Pi runs /usr/bin/python3), so the
# virtualenv is built from it too; VOICED_PYTHON names another (e.g. python3.13 for a second lane).
python=${VOICED_PYTHON:-}
if [ -z "$python" ]; then
  if [ -x /usr/bin/python3 ]; then python=/usr/bin/python3; else python=python3; fi
fi
if ! command -v "$python" >/dev/null 2>&1; then
  log "no Python interpreter '$python': install python3 (or set VOICED_PYTHON), then rerun"
  exit 1
fi

missing=()
want=("${apt_runtime[@]}")
[ "$with_test" = 1 ] && want+=("${apt_test[@]}")
if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  want+=(python3-venv)
fi
if command -v dpkg-query >/dev/null 2>&1; then
  for pkg in "${want[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$pkg")
    fi
  done
fi

if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    log "missing system packages: ${missing[*]} — install them with your package manager, then rerun"
    exit 1
  fi
  sudo=()
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo=(sudo); else
      log "missing system packages: ${missing[*]} — run as root or install sudo"; exit 1
    fi
  fi
  log "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

venv=${VOICED_VENV:-$here/.venv}
want_version=$("$python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
if [ -x "$venv/bin/python" ]; then
  have_version=$("$venv/bin/python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null || true)
  if [ "$have_version" != "$want_version" ]; then
    log "the virtualenv runs Python ${have_version:-?}, not $want_version ($python): rebuilding it"
    rm -rf "$venv"
  fi
fi
if [ ! -x "$venv/bin/python" ]; then
  log "creating virtualenv $venv with Python $want_version ($python)"
  "$python" -m venv "$venv"
fi

extras=""
[ "$with_test" = 1 ] && extras="[test]"
stamp="$venv/.voiced-installed"
want_stamp="$(sha256sum pyproject.toml | cut -d' ' -f1)$extras"
have_stamp=$(cat "$stamp" 2>/dev/null || true)
# A test install also satisfies a plain one.
if [ "$have_stamp" != "$want_stamp" ] && [ "$have_stamp" != "${want_stamp}[test]" ]; then
  log "installing Python packages into $venv (log: $venv/pip.log)"
  # pip and the build backend are chatty; keep their output for when something fails.
  if ! { "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip &&
         "$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".$extras"; } \
       >"$venv/pip.log" 2>&1; then
    tail -n 30 "$venv/pip.log" >&2
    log "installing the Python packages failed; the whole log is $venv/pip.log"
    exit 1
  fi
  printf '%s' "$want_stamp" >"$stamp"
fi

if [ "$with_test" = 1 ]; then
  # The reference client lives in its own virtualenv (see the top of this file).
  sdk_venv=${VOICED_SDK_VENV:-$here/.venv-sdk}
  sdk_packages=("cozepy>=0.20,<0.21")
  if "$venv/bin/python" -c 'import cozepy' >/dev/null 2>&1; then
    # Left over from when the SDK shared this virtualenv: remove it and restore the newest websockets
    # the project allows (the SDK had pinned an older one).
    log "moving cozepy out of $venv into $sdk_venv"
    "$venv/bin/python" -m pip uninstall -q -y cozepy >>"$venv/pip.log" 2>&1
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade --upgrade-strategy eager \
      -e ".$extras" >>"$venv/pip.log" 2>&1
  fi
  if [ -x "$sdk_venv/bin/python" ]; then
    sdk_have=$("$sdk_venv/bin/python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null || true)
    [ "$sdk_have" = "$want_version" ] || rm -rf "$sdk_venv"
  fi
  [ -x "$sdk_venv/bin/python" ] || "$python" -m venv "$sdk_venv"
  sdk_stamp="$sdk_venv/.voiced-sdk-installed"
  if [ "$(cat "$sdk_stamp" 2>/dev/null || true)" != "${sdk_packages[*]}" ]; then
    log "installing the reference SDK into $sdk_venv (log: $sdk_venv/pip.log)"
    if ! "$sdk_venv/bin/python" -m pip install -q --disable-pip-version-check "${sdk_packages[@]}" \
         >"$sdk_venv/pip.log" 2>&1; then
      tail -n 30 "$sdk_venv/pip.log" >&2
      log "installing the reference SDK failed; the whole log is $sdk_venv/pip.log"
      exit 1
    fi
    printf '%s' "${sdk_packages[*]}" >"$sdk_stamp"
  fi
fi

if [ "$with_test" = 1 ]; then
  # The Node reference client: optional (its test skips without node), so a machine that cannot get
  # node only gets a notice; one that has it gets exactly the locked packages, reinstalled only when
  # the lock file or node changes.
  node_dir="$here/tests/emulator/node"
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    node_sudo=()
    [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1 && node_sudo=(sudo)
    node_want=()
    command -v node >/dev/null 2>&1 || node_want+=(nodejs)
    command -v npm >/dev/null 2>&1 || node_want+=(npm)
    if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || [ ${#node_sudo[@]} -gt 0 ]; }; then
      log "installing ${node_want[*]} for the Node SDK conformance test"
      node_apt=("${node_sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get)
      if ! "${node_apt[@]}" install -y -qq --no-install-recommends "${node_want[@]}" >/dev/null 2>&1; then
        "${node_apt[@]}" update -qq >/dev/null 2>&1 || true
        "${node_apt[@]}" install -y -qq --no-install-recommends "${node_want[@]}" >/dev/null 2>&1 ||
          log "could not install ${node_want[*]} with apt"
      fi
    fi
  fi
  if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    node_stamp="$node_dir/node_modules/.voiced-installed"
    node_want_stamp="$(sha256sum "$node_dir/package-lock.json" | cut -d' ' -f1) node $(node --version)"
    if [ "$(cat "$node_stamp" 2>/dev/null || true)" != "$node_want_stamp" ]; then
      log "installing the Node SDK into $node_dir/node_modules (log: $node_dir/npm.log)"
      if ! (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error) >"$node_dir/npm.log" 2>&1; then
        tail -n 30 "$node_dir/npm.log" >&2
        log "installing the Node SDK failed; the whole log is $node_dir/npm.log"
        exit 1
      fi
      printf '%s' "$node_want_stamp" >"$node_stamp"
    fi
  else
    log "no node/npm (install nodejs and npm): the Node SDK conformance test will be skipped"
  fi
fi
