# Sourced by scripts/setup.sh and scripts/install-service.sh: refuse, in one line, a machine the
# Python wheels voiced needs do not exist for (numpy, cffi, soxr and webrtcvad-wheels publish none
# for 32-bit ARM or x86, and building them from source needs a compiler and an hour on a Pi).
# The userland decides, not the kernel: 32-bit Raspberry Pi OS on a Pi 4 boots a 64-bit kernel
# (`uname -m` says aarch64) but dpkg says armhf. VOICED_MACHINE overrides both (for tests).
voiced_check_platform() {
  local machine=${VOICED_MACHINE:-}
  if [ -z "$machine" ]; then
    machine=$(dpkg --print-architecture 2>/dev/null || uname -m)
  fi
  case "$machine" in
    x86_64|amd64|aarch64|arm64) return 0 ;;
    armv6l|armv7l|armhf|armel|i386|i486|i586|i686)
      printf '%s: this is a 32-bit system (%s); voiced supports 64-bit Raspberry Pi OS and Debian 12-13 on aarch64 or x86_64 only: install the 64-bit OS\n' \
        "${0##*/}" "$machine" >&2
      return 1 ;;
    *)
      printf '%s: untested machine type %s (supported: aarch64, x86_64); continuing\n' "${0##*/}" "$machine" >&2
      return 0 ;;
  esac
}
