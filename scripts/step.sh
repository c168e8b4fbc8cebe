#!/usr/bin/env bash
# Usage: step.sh "<name>" "<what to do if it fails>" command [args...]
# Prints the step's name and duration; on failure names the step and what to do.
name="$1"; hint="$2"; shift 2
start=$(date +%s%N)
echo "==> ${name}"
if "$@"; then
  end=$(date +%s%N)
  printf '    done in %.1fs\n' "$(echo "($end - $start) / 1000000000" | bc -l)"
else
  rc=$?
  echo >&2
  echo "FAILED step: ${name} (exit ${rc})" >&2
  echo "  what to do: ${hint}" >&2
  exit "$rc"
fi
