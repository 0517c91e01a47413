#!/usr/bin/env bash
# Installs voiced as a systemd service from this checkout, so that the service needs nothing of the
# checkout afterwards (delete it, or keep it in /home, which the unit hides):
#   /opt/voiced/venv-ID/          a virtualenv built here from /usr/bin/python3, with a regular
#                                 (not editable) install of a copy of the source; ID = its content
#   /opt/voiced/.venv             a symlink to the current one (the unit's ExecStart goes through it)
#   /etc/voiced/voiced.toml       the config (written only when absent; yours is never replaced)
#   /etc/voiced/coze-token        the token, root:root 0600 (never written: see the advice printed)
#   /etc/systemd/system/voiced.service  and, for a sound server in a user's session,
#   /etc/systemd/system/voiced.service.d/sound-session.conf
# Idempotent: run it again after `git pull` to update (a new virtualenv is built beside the running
# one, then swapped in and the service restarted).
#
# Usage: sudo scripts/install-service.sh [--user-session USER | --system-audio] [--no-start]
#        sudo scripts/install-service.sh --uninstall [--purge]
#   --user-session USER  play and record through USER's PipeWire/PulseAudio (detected when exactly
#                        one user runs one); --system-audio: use ALSA directly, remove the drop-in
#   --no-start           install and enable, but do not (re)start the service
#   --uninstall          remove the service and /opt/voiced; --purge also /etc/voiced and its state
#   --root DIR           install below DIR instead of / (packaging and tests: no apt, no systemctl)
#   --python PATH        the interpreter for the virtualenv (default /usr/bin/python3)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
me=install-service.sh
log() { printf '%s: %s\n' "$me" "$*" >&2; }
die() { log "$*"; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

root=/
user_session=""
system_audio=0
start=1
uninstall=0
purge=0
python=${VOICED_PYTHON:-/usr/bin/python3}
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root=${2:?--root needs a directory}; shift ;;
    --user-session) user_session=${2:?--user-session needs a user name}; shift ;;
    --system-audio) system_audio=1 ;;
    --no-start) start=0 ;;
    --uninstall) uninstall=1 ;;
    --purge) purge=1 ;;
    --python) python=${2:?--python needs a path}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) log "unknown option $1"; usage >&2; exit 2 ;;
  esac
  shift
done

root=${root%/}
live=0                      # 1: this machine's own root, where apt and systemctl act
[ -z "$root" ] && live=1
prefix=$root/opt/voiced
etc=$root/etc/voiced
unit_dir=$root/etc/systemd/system
dropin_dir=$unit_dir/voiced.service.d
dropin=$dropin_dir/sound-session.conf

if [ "$live" = 1 ] && [ "$(id -u)" != 0 ]; then
  die "run it as root: sudo $0 $*"
fi
owner=()
[ "$(id -u)" = 0 ] && owner=(-o root -g root)

have_systemd() { [ "$live" = 1 ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; }

# --- uninstall ---------------------------------------------------------------------------------------
if [ "$uninstall" = 1 ]; then
  if have_systemd; then systemctl disable --now voiced.service 2>/dev/null || true; fi
  rm -f "$unit_dir/voiced.service"
  rm -rf "$dropin_dir" "$prefix"
  if [ "$purge" = 1 ]; then
    rm -rf "$etc" "$root/var/lib/voiced" "$root/var/lib/private/voiced" \
      "$root/var/cache/voiced" "$root/var/cache/private/voiced"
    log "removed the service, $prefix, $etc and the service's state"
  else
    log "removed the service and $prefix; kept $etc (--purge removes it too)"
  fi
  if have_systemd; then systemctl daemon-reload; fi
  exit 0
fi

# shellcheck source=scripts/platform.sh
. "$here/scripts/platform.sh"
voiced_check_platform || exit 1
[ -x "$python" ] || die "no interpreter $python: install python3 (or pass --python PATH)"
[ -f "$here/pyproject.toml" ] && [ -d "$here/voiced" ] || die "run it from a voiced checkout"

# --- system packages (the live root only) --------------------------------------------------------------
if [ "$live" = 1 ] && command -v dpkg-query >/dev/null 2>&1; then
  # procps: /bin/kill, the unit's ExecReload= (a minimal Debian root has none; verify refuses the unit).
  want=(libopus0 libportaudio2 espeak-ng procps)
  "$python" -c 'import venv, ensurepip' >/dev/null 2>&1 || want+=(python3-venv)
  missing=()
  for pkg in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
      { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
  fi
fi

# --- the virtualenv: built fresh from a copy of the source, never copied --------------------------------
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src=$work/src
mkdir -p "$src"
# Only what the package is built from: no .venv, no build leftovers of the checkout.
(cd "$here" && tar --exclude='__pycache__' --exclude='*.pyc' -cf - pyproject.toml README.md voiced) |
  tar -xf - -C "$src"
py_version=$("$python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
id=$( (cd "$src" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum; echo "$py_version") |
  sha256sum | cut -c1-12)
venv=$prefix/venv-$id
install -d -m 755 "${owner[@]}" "$prefix"
if [ -f "$venv/.complete" ] && "$venv/bin/voiced" --version >/dev/null 2>&1; then
  log "voiced is up to date in $venv"
else
  rm -rf "$venv"
  log "building $venv with Python $py_version ($python); log: $prefix/pip.log"
  "$python" -m venv "$venv"
  if ! "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-warn-script-location \
       "$src" >"$prefix/pip.log" 2>&1; then
    tail -n 20 "$prefix/pip.log" >&2
    rm -rf "$venv"
    die "installing voiced into $venv failed; the whole log is $prefix/pip.log"
  fi
  "$venv/bin/voiced" --version >/dev/null || die "$venv/bin/voiced does not start"
  touch "$venv/.complete"
fi
previous=$(readlink "$prefix/.venv" 2>/dev/null || true)
ln -sfn "venv-$id" "$prefix/.venv.new" && mv -T "$prefix/.venv.new" "$prefix/.venv"
# Keep the current and the one before (a running service still uses it until its restart).
for old in "$prefix"/venv-*; do
  [ -e "$old" ] || continue
  name=${old##*/}
  [ "$name" = "venv-$id" ] || [ "$name" = "$previous" ] || rm -rf "$old"
done
install -m 644 "${owner[@]}" "$here/README.md" "$prefix/README.md"
install -m 644 "${owner[@]}" "$here/config/voiced.toml" "$prefix/voiced.toml.example"

# --- config and token ---------------------------------------------------------------------------------
install -d -m 755 "${owner[@]}" "$etc"
if [ ! -e "$etc/voiced.toml" ]; then
  install -m 644 "${owner[@]}" "$here/config/voiced.toml" "$etc/voiced.toml"
  log "wrote $etc/voiced.toml: set coze.bot_id in it"
fi
token_missing=0
if [ -e "$etc/coze-token" ]; then
  # systemd reads it as root and hands it over as a credential: nobody else needs to read it.
  [ "$(id -u)" = 0 ] && chown root:root "$etc/coze-token"
  chmod 600 "$etc/coze-token"
else
  token_missing=1
fi

# --- the unit and the sound-session drop-in -------------------------------------------------------------
install -d -m 755 "${owner[@]}" "$unit_dir"
install -m 644 "${owner[@]}" "$here/systemd/voiced.service" "$unit_dir/voiced.service"

passwd_entry() {  # the passwd line of user $1 (the target root's own file when there is one)
  if [ "$live" = 0 ] && [ -f "$root/etc/passwd" ]; then
    awk -F: -v u="$1" '$1 == u' "$root/etc/passwd"
  else
    getent passwd "$1" || true
  fi
}

if [ "$system_audio" = 1 ]; then
  rm -rf "$dropin_dir"
elif [ -z "$user_session" ] && [ "$live" = 1 ]; then
  # A sound server in exactly one user's session (Raspberry Pi OS desktop: PipeWire): use it.
  found=()
  for dir in /run/user/[0-9]*; do
    uid=${dir##*/}
    [ "$uid" != 0 ] || continue
    if [ -S "$dir/pulse/native" ] || [ -S "$dir/pipewire-0" ]; then
      name=$(getent passwd "$uid" | cut -d: -f1)
      [ -n "$name" ] && found+=("$name")
    fi
  done
  if [ ${#found[@]} = 1 ]; then
    user_session=${found[0]}
    log "found a sound server in $user_session's session: the service will use it (--system-audio: not)"
  elif [ ${#found[@]} -gt 1 ]; then
    log "sound servers run in several sessions (${found[*]}): pass --user-session USER to pick one"
  fi
fi

if [ -n "$user_session" ]; then
  entry=$(passwd_entry "$user_session")
  [ -n "$entry" ] || die "no user $user_session (--user-session names the user whose sound server to use)"
  uid=$(printf '%s' "$entry" | cut -d: -f3)
  run_dir=/run/user/$uid
  install -d -m 755 "${owner[@]}" "$dropin_dir"
  cat >"$dropin.new" <<EOF
# Written by scripts/install-service.sh --user-session $user_session: record and play through the
# PipeWire/PulseAudio server of $user_session's session instead of the sound card directly.
[Unit]
After=user@$uid.service

[Service]
DynamicUser=no
User=$user_session
# The user's own desktop shares IPC objects with its sound server: never remove them on stop.
RemoveIPC=no
# The sound server's socket is in $run_dir, which ProtectHome= hides: keep the homes hidden, show
# only that directory, read-only (connecting to a socket needs no write access to the mount).
ProtectHome=tmpfs
BindReadOnlyPaths=$run_dir
Environment=XDG_RUNTIME_DIR=$run_dir
Environment=PULSE_SERVER=unix:$run_dir/pulse/native
EOF
  chmod 644 "$dropin.new"
  mv "$dropin.new" "$dropin"
  if [ ! -e "$root/var/lib/systemd/linger/$user_session" ]; then
    log "$user_session's sound server runs only while $user_session is logged in; on a headless device run: loginctl enable-linger $user_session"
  fi
fi

# --- systemd --------------------------------------------------------------------------------------------
if have_systemd; then
  systemctl daemon-reload
  systemctl enable --quiet voiced.service
  if [ "$token_missing" = 1 ]; then
    log "no token yet: sudo install -m 600 /dev/stdin $etc/coze-token <<<'pat_your_token', then: sudo systemctl restart voiced"
  elif [ "$start" = 1 ]; then
    systemctl restart voiced.service
    log "voiced (re)started: journalctl -u voiced -f"
  fi
elif [ "$token_missing" = 1 ]; then
  log "no token yet: install -m 600 /dev/stdin $etc/coze-token <<<'pat_your_token'"
fi
log "installed $(readlink -f "$prefix/.venv")/bin/voiced ($("$prefix/.venv/bin/voiced" --version))"
