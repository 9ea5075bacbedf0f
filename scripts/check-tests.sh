#!/usr/bin/env bash
# Guards the test suite against entries that count without testing anything.
#
#   scripts/check-tests.sh discovery BUILD_DIR
#       Before a run: every doctest case is one ctest entry and every entry runs one case.
#       Reads ctest's own list (--show-only=json-v1) and each doctest binary's
#       --list-test-cases. Fails, naming each, on a case name that doctest_discover_tests
#       splits (';') or that doctest's filter reads as a wildcard ('*', '?'), a case that
#       no entry runs, and an entry whose --test-case filter names no case (it would run
#       nothing and exit 0).
#   scripts/check-tests.sh results JUNIT_FILE
#       After a run (ctest --output-junit JUNIT_FILE): prints how many tests were skipped
#       and why (the RECSCHED_SKIP marker, tests/skip.h, or the last line a test that
#       exits SKIP_RETURN_CODE printed). Fails if a doctest entry passed having run no test
#       case, or printed the skip marker and was counted passed: ctest's
#       FAIL_REGULAR_EXPRESSION and SKIP_REGULAR_EXPRESSION handle both, and this catches
#       an entry that lost those properties.
#
# Exit: 0 clean, 1 a problem found (each printed), 2 bad usage or unreadable input.
set -euo pipefail

usage() { echo "usage: $0 discovery BUILD_DIR | results JUNIT_FILE" >&2; exit 2; }
[ $# -eq 2 ] || usage
mode="$1" dir="$2"
command -v jq >/dev/null || { echo "check-tests: needs jq (apt-get install jq)" >&2; exit 2; }

SEP=$'\x1f'
MARKER="recsched-test-skipped: "

discovery() {
  [ -d "$dir" ] || { echo "check-tests: no build directory $dir" >&2; exit 2; }
  local listing
  listing="$(ctest --test-dir "$dir" --show-only=json-v1)" ||
    { echo "check-tests: ctest --show-only failed in $dir" >&2; exit 2; }
  # One row per doctest entry: name, executable, --test-case filter (commas unescaped).
  local -A filters_of=()  # executable -> filters, one per line
  local -A entry_of=()    # executable SEP filter -> entry name(s)
  local rows name exe filter
  rows="$(jq -r --arg sep "$SEP" '.tests[] | select(.command != null)
      | (.command | map(select(startswith("--test-case="))) | .[0]) as $f | select($f != null)
      | [.name, .command[0], ($f | ltrimstr("--test-case="))] | join($sep)' <<<"$listing")"
  local entries=0
  while IFS="$SEP" read -r name exe filter; do
    [ -n "$name" ] || continue
    filter="${filter//\\,/,}"
    filters_of[$exe]+="$filter"$'\n'
    entry_of[$exe$SEP$filter]+="${entry_of[$exe$SEP$filter]:+, }'$name'"
    entries=$((entries + 1))
  done <<<"$rows"

  local problems=0 cases=0 exe_name case listed
  for exe in "${!filters_of[@]}"; do
    exe_name="$(basename "$exe")"
    [ -x "$exe" ] || { echo "check-tests: $exe_name: not built ($exe)"; problems=$((problems + 1)); continue; }
    listed="$("$exe" --list-test-cases | grep -v -e '^\[doctest\] ' -e '^=\{79\}$' || true)"
    local -A is_case=()
    while IFS= read -r case; do
      [ -n "$case" ] || continue
      is_case[$case]=1
      cases=$((cases + 1))
      case "$case" in
        *';'*) echo "check-tests: $exe_name: test case '$case' has a ';', which doctest_discover_tests splits into entries that run nothing"
               problems=$((problems + 1)) ;;
        *'*'* | *'?'*) echo "check-tests: $exe_name: test case '$case' has a '*' or '?', which doctest's --test-case filter reads as a wildcard"
               problems=$((problems + 1)) ;;
      esac
      if [ -z "${entry_of[$exe$SEP$case]:-}" ]; then
        echo "check-tests: $exe_name: test case '$case' has no ctest entry of its own: it never runs"
        problems=$((problems + 1))
      fi
    done <<<"$listed"
    while IFS= read -r filter; do
      [ -n "$filter" ] || continue
      if [ -z "${is_case[$filter]:-}" ]; then
        echo "check-tests: $exe_name: ctest entry ${entry_of[$exe$SEP$filter]} filters on '$filter', which names no test case: it runs nothing and passes"
        problems=$((problems + 1))
      fi
    done <<<"${filters_of[$exe]}"
    unset is_case
  done
  if [ "$problems" -ne 0 ]; then
    echo "check-tests: discovery: $problems problem(s) in $dir"
    return 1
  fi
  echo "check-tests: discovery: $entries doctest entries in ${#filters_of[@]} binaries, one per test case ($cases cases)"
}

# ctest's JUnit file (--output-junit) has, per entry, <testcase name=... status="run|fail|
# notrun">, a <skipped message=...> for a skip (a SKIP_REGULAR_EXPRESSION match or a
# SKIP_RETURN_CODE exit), and the output in <system-out>, XML-escaped. (LastTest.log is no
# use here: it says "Test Passed." for an exit with SKIP_RETURN_CODE.)
results() {
  local junit="$dir"
  [ -r "$junit" ] || { echo "check-tests: cannot read $junit (ctest --output-junit FILE first)" >&2; exit 2; }
  awk -v marker="$MARKER" '
    function unescape(t) {
      gsub(/&lt;/, "<", t); gsub(/&gt;/, ">", t); gsub(/&quot;/, "\"", t); gsub(/&apos;/, "\047", t)
      gsub(/&amp;/, "\\&", t)
      return t
    }
    function attr(line, key,   v) {
      if (!match(line, key "=\"[^\"]*\"")) return ""
      v = substr(line, RSTART + length(key) + 2, RLENGTH - length(key) - 3)
      return unescape(v)
    }
    function see(line) {
      if (index(line, marker) == 1) reason = unescape(substr(line, length(marker) + 1))
      if (line ~ /test cases: +[0-9]+ [|]/) { c = line; sub(/.*test cases: +/, "", c); cases = c + 0 }
      if (line != "" && line !~ /^\[doctest\]/ && line !~ /^=+$/) last = unescape(line)
    }
    function flush(   why) {
      if (name == "") return
      total++
      if (status == "notrun") {
        skipped++
        why = reason != "" ? reason : (last != "" ? last : "no reason printed (" skipmsg ")")
        skips = skips sprintf("check-tests:   %s: %s\n", name, why)
      } else if (status == "run" && cases == 0) {
        bad = bad sprintf("check-tests: %s passed having run no test case\n", name)
      } else if (status == "run" && reason != "") {
        bad = bad sprintf("check-tests: %s said it skipped (%s) but ctest counted it passed: its entry lacks SKIP_REGULAR_EXPRESSION\n", name, reason)
      }
      name = ""
    }
    /<testcase / { flush(); name = attr($0, "name"); status = attr($0, "status")
                   reason = ""; last = ""; skipmsg = ""; cases = -1; inout = 0; next }
    name == "" { next }
    /<skipped / { skipmsg = attr($0, "message"); next }
    /<system-out>/ { inout = 1; line = $0; sub(/.*<system-out>/, "", line)
                     if (line ~ /<\/system-out>/) { sub(/<\/system-out>.*/, "", line); inout = 0 }
                     see(line); next }
    inout && /<\/system-out>/ { line = $0; sub(/<\/system-out>.*/, "", line); see(line); inout = 0; next }
    inout { see($0); next }
    /<\/testcase>/ { flush(); next }
    END {
      flush()
      printf "check-tests: %d of %d tests skipped%s\n", skipped, total, skipped ? ", for what this host lacks:" : ""
      printf "%s", skips
      printf "%s", bad
      exit bad != ""
    }' "$junit"
}

case "$mode" in
  discovery) discovery ;;
  results) results ;;
  *) usage ;;
esac
