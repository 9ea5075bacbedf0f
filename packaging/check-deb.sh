#!/usr/bin/env bash
# Builds the Debian package of the build tree in argument 1 (cpack -G DEB), lists it, and
# checks it: the binaries, unit, config (a conffile), sysusers entry and model specs are
# in it; the unit and config name the package's paths; the maintainer scripts are there;
# nothing points into the build tree; and Depends names every Debian package
# dpkg-shlibdeps finds for the binaries. Exit 77 (ctest: skipped) without dpkg-deb/cpack.
set -euo pipefail
build="$(cd "${1:?usage: check-deb.sh BUILD_DIR}" && pwd)"
for tool in cpack dpkg-deb; do
  command -v "$tool" >/dev/null || { echo "check-deb: skipped: $tool not found"; exit 77; }
done
fail() { echo "check-deb: FAIL: $*" >&2; exit 1; }

rm -rf "$build/packages"
(cd "$build" && cpack --config CPackConfig.cmake -G DEB) > "$build/cpack.log" 2>&1 ||
  { cat "$build/cpack.log"; fail "cpack failed"; }
deb="$(ls "$build"/packages/*.deb)"
echo "check-deb: built $deb ($(du -h "$deb" | cut -f1))"
echo "--- dpkg-deb -c"
dpkg-deb -c "$deb" | tee "$build/packages/contents.txt"
echo "--- dpkg-deb -I"
dpkg-deb -I "$deb" | tee "$build/packages/info.txt"
echo "---"

for path in ./usr/bin/recschedd ./usr/bin/recschedctl ./usr/bin/recsched-profile \
            ./usr/bin/recsched-engine ./usr/lib/systemd/system/recschedd.service \
            ./etc/recsched/recschedd.json ./usr/lib/sysusers.d/recsched.conf \
            ./usr/share/recsched/60-recsched-rapl.rules ./usr/share/recsched/60-recsched-cpu-latency.rules \
            ./usr/share/doc/recsched/operations.md \
            ./usr/share/recsched/models/rmc1.json ./usr/share/recsched/models/dien.json; do
  awk '{print $6}' "$build/packages/contents.txt" | grep -qx "$path" || fail "no $path in the package"
done
grep -q "rwxr-xr-x root/root .* ./usr/bin/recschedd$" "$build/packages/contents.txt" ||
  fail "recschedd is not an executable owned by root"
for f in postinst prerm postrm conffiles; do
  grep -qw "$f" "$build/packages/info.txt" || fail "no $f in the control archive"
done

x="$(mktemp -d)"
trap 'rm -rf "$x"' EXIT
dpkg-deb -R "$deb" "$x/root"
grep -qx "/etc/recsched/recschedd.json" "$x/root/DEBIAN/conffiles" || fail "the config is not a conffile"
grep -q "^ExecStart=/usr/bin/recschedd --config /etc/recsched/recschedd.json" \
  "$x/root/usr/lib/systemd/system/recschedd.service" || fail "the unit's ExecStart is not /usr/bin/recschedd"
grep -q '"/usr/share/recsched/models/rmc1.json"' "$x/root/etc/recsched/recschedd.json" ||
  fail "the config does not name /usr/share/recsched/models"
for s in postinst prerm postrm; do sh -n "$x/root/DEBIAN/$s" || fail "$s: shell syntax"; done
if grep -rlq -- "$build" "$x/root/usr/lib" "$x/root/etc" 2>/dev/null; then
  fail "a file in the package names the build tree $build"
fi
command -v readelf >/dev/null || fail "readelf not found (Debian package binutils): RPATHs not checked"
for b in "$x"/root/usr/bin/*; do
  if readelf -d "$b" | grep -E 'RPATH|RUNPATH' | grep -q -- "$build"; then
    fail "$(basename "$b") has an RPATH into the build tree"
  fi
done

# Depends against what the binaries need. NVIDIA's CUDA libraries (a CUDA build's tools
# link libcublas) belong to no Debian package: dpkg-shlibdeps is told to let them pass.
# dpkg-dev is a build dependency (scripts/install-deps.sh): its absence is a failure, not a
# check quietly left out.
command -v dpkg-shlibdeps >/dev/null || fail "dpkg-shlibdeps not found (Debian package dpkg-dev)"
mkdir -p "$x/shlib/debian"
printf 'Source: recsched\n\nPackage: recsched\nArchitecture: any\n' > "$x/shlib/debian/control"
needed="$(cd "$x/shlib" && dpkg-shlibdeps --ignore-missing-info -O "$x"/root/usr/bin/* 2>/dev/null |
          sed -n 's/^shlibs:Depends=//p')"
depends="$(sed -n 's/^Depends: //p' "$x/root/DEBIAN/control")"
echo "check-deb: dpkg-shlibdeps: $needed"
echo "check-deb: Depends:        $depends"
[ -n "$needed" ] || fail "dpkg-shlibdeps found no dependencies of the binaries"
[ -n "$depends" ] || fail "the package has no Depends"
IFS=',' read -ra pkgs <<< "$needed"
for p in "${pkgs[@]}"; do
  name="$(echo "$p" | awk '{print $1}')"
  [ -n "$name" ] || continue
  echo ", $depends," | grep -q ", $name[ ,(]" || fail "Depends lacks $name (dpkg-shlibdeps: $p)"
done
# Every versioned dependency must be met by what this host (the build host: Debian 12)
# has installed, or the package would not install here.
IFS=',' read -ra deps <<< "$(sed -n 's/^Depends: //p' "$x/root/DEBIAN/control")"
for d in "${deps[@]}"; do
  name="$(echo "$d" | awk '{print $1}')"
  have="$(dpkg-query -W -f='${Version}' "$name" 2>/dev/null || true)"
  if [ -z "$have" ]; then
    # A virtual package (libspdlog1.10-fmt9 is provided by libspdlog1.10): unversioned.
    by="$(dpkg-query -W -f='${Package} ${Provides}\n' 2>/dev/null |
          awk -v n="$name" '{for (i = 2; i <= NF; ++i) { p = $i; sub(/,$/, "", p); if (p == n) print $1 }}' | head -1)"
    [ -n "$by" ] || fail "Depends: $d, which nothing installed here provides"
    echo "check-deb: $name is provided here by $by"
    continue
  fi
  if [[ "$d" =~ \(([<>=]+)\ ([^\)]+)\) ]]; then
    op="${BASH_REMATCH[1]}"; want="${BASH_REMATCH[2]}"
    case "$op" in ">=") op=ge ;; "<=") op=le ;; ">>") op=gt ;; "<<") op=lt ;; "=") op=eq ;; esac
    dpkg --compare-versions "$have" "$op" "$want" ||
      fail "Depends: $d, but this host has $name $have"
  fi
done
echo "check-deb: OK"
