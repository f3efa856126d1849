#!/usr/bin/env bash
# Replay every recorded MCP session (cassette) against this repository's policy and lock,
# verify the flight logs the replays write, and publish a per-call table.
#
#   examples/ci/airlock-replay.sh [CASSETTE_DIR] [POLICY] [LOCK]
#
# Environment:
#   AIRLOCK          how to run airlock (default: airlock), e.g. "python -m gateway"
#   AIRLOCK_INSTALL  1: first pip-install ${AIRLOCK_PIP_SPEC:-mcp-airlock}
#   OUT              output directory (default: airlock-replay-out)
#   GITHUB_STEP_SUMMARY  when set (GitHub Actions), the summary is appended there
#
# For each CASSETTE_DIR/NAME.cassette.jsonl: `airlock replay` (with NAME.expect.json when it
# exists) writes OUT/NAME.table.txt and OUT/NAME.flight.jsonl, then `airlock verify` checks
# the log. Every cassette is replayed before the exit status is decided: 0 when all replays
# match and all logs verify, 1 when any replay differs or fails or any log does not verify,
# 2 when there is nothing to replay.
set -uo pipefail

CASSETTES="${1:-cassettes}"
POLICY="${2:-policies/policy.toml}"
LOCK="${3:-}"
OUT="${OUT:-airlock-replay-out}"
read -r -a AIRLOCK_CMD <<< "${AIRLOCK:-airlock}"

if [ "${AIRLOCK_INSTALL:-0}" = "1" ]; then
  python -m pip install --quiet "${AIRLOCK_PIP_SPEC:-mcp-airlock}" || { echo "airlock-replay: installing Airlock failed" >&2; exit 2; }
fi

shopt -s nullglob
files=("$CASSETTES"/*.cassette.jsonl)
if [ "${#files[@]}" -eq 0 ]; then
  echo "airlock-replay: no *.cassette.jsonl in '$CASSETTES'; record one with: airlock run --record $CASSETTES/NAME.cassette.jsonl -- CMD" >&2
  exit 2
fi
if [ ! -f "$POLICY" ]; then
  echo "airlock-replay: policy '$POLICY' not found; pass it as the second argument" >&2
  exit 2
fi

mkdir -p "$OUT"
summary="$OUT/summary.md"
printf '# Airlock replay\n\nPolicy: `%s`%s\n\n' "$POLICY" "${LOCK:+, lock: \`$LOCK\`}" > "$summary"
failed=0
for cassette in "${files[@]}"; do
  name="$(basename "$cassette" .cassette.jsonl)"
  table="$OUT/$name.table.txt"
  log="$OUT/$name.flight.jsonl"
  rm -f "$log"
  args=(replay "$cassette" --policy "$POLICY" --log "$log")
  [ -n "$LOCK" ] && args+=(--lock "$LOCK")
  expect="$CASSETTES/$name.expect.json"
  [ -f "$expect" ] && args+=(--expect "$expect")
  "${AIRLOCK_CMD[@]}" "${args[@]}" > "$table" 2> "$OUT/$name.stderr.txt"
  status=$?
  case "$status" in
    0) verdict="same decisions" ;;
    4) verdict="DIFFERENT decisions"; failed=1 ;;
    *) verdict="replay FAILED (exit $status): $(head -c 500 "$OUT/$name.stderr.txt")"; failed=1 ;;
  esac
  if [ "$status" -eq 0 ] || [ "$status" -eq 4 ]; then
    if "${AIRLOCK_CMD[@]}" verify "$log" > "$OUT/$name.verify.txt" 2>&1; then
      verdict="$verdict; flight log verified"
    else
      verdict="$verdict; flight log does NOT verify"; failed=1
    fi
  fi
  echo "$name: $verdict"
  { printf '## %s: %s\n\n```\n' "$name" "$verdict"; cat "$table"; printf '```\n\n'; } >> "$summary"
done

if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
  cat "$summary" >> "$GITHUB_STEP_SUMMARY"
fi
echo "airlock-replay: summary in $summary"
exit "$failed"
