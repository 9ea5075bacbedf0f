#!/usr/bin/env bash
# Checks systemd/recschedd.service with systemd-analyze verify. The unit names
# /usr/bin/recschedd, which a build tree does not have, so a copy whose ExecStart names the
# built binary (argument 1) is verified. Exit 77 (ctest: skipped) without systemd-analyze.
# Also prints the unit's exposure score (systemd-analyze security --offline, systemd >= 250).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
daemon="$(realpath "${1:?usage: verify-unit.sh PATH/TO/recschedd}")"
if ! command -v systemd-analyze >/dev/null; then
  echo "verify-unit: skipped: systemd-analyze not found (Debian package systemd)"
  exit 77
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
sed "s|^ExecStart=/usr/bin/recschedd |ExecStart=$daemon |" "$here/systemd/recschedd.service" \
  > "$tmp/recschedd.service"
grep -q "^ExecStart=$daemon " "$tmp/recschedd.service" ||
  { echo "verify-unit: ExecStart=/usr/bin/recschedd not found in the unit" >&2; exit 1; }
# verify prints problems and exits non-zero on errors; warnings are errors here too.
out="$(systemd-analyze verify "$tmp/recschedd.service" 2>&1)" || { echo "$out"; exit 1; }
if [ -n "$out" ]; then
  echo "$out"
  echo "verify-unit: systemd-analyze verify printed warnings" >&2
  exit 1
fi
echo "verify-unit: systemd-analyze verify: OK ($(systemd-analyze --version | head -1))"
version="$(systemd-analyze --version | awk 'NR == 1 { print $2 }')"
if [ "${version:-0}" -lt 250 ] 2>/dev/null; then
  echo "verify-unit: systemd $version: systemd-analyze security --offline needs 250, not run"
elif systemd-analyze security --offline=true "$tmp/recschedd.service" > "$tmp/security.txt" 2>&1; then
  tail -1 "$tmp/security.txt"
else
  cat "$tmp/security.txt"
  echo "verify-unit: systemd-analyze security --offline failed (systemd $version)" >&2
  exit 1
fi
