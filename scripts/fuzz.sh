#!/usr/bin/env bash
# `make fuzz`: builds each libFuzzer target (Fuzz/*/main.swift over RekeyFuzzing) with the fuzzer
# and AddressSanitizer, replays its committed crash cases, then fuzzes it for FUZZ_SECONDS from
# its seed corpus (Fuzz/Corpus/<target>). A crash is saved into Fuzz/Regressions/<target>/ (commit
# it: the replay test in `make test` runs it from then on) and fails the run. Figures go to
# .build-fuzz/fuzz-report.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-60}
targets=${FUZZ_TARGETS:-"FuzzFrames FuzzMessages FuzzCSV FuzzForms FuzzMIME FuzzSMTPReply"}
scratch=.build-fuzz
report=$scratch/fuzz-report.txt
mkdir -p "$scratch"
: > "$report"
failed=0

for target in $targets; do
  echo "== $target: building (release, fuzzer + address sanitizer)"
  # SwiftPM's --sanitize=fuzzer instruments the C targets and links libFuzzer, but with this
  # toolchain leaves the Swift libraries without coverage counters: ask for them explicitly.
  swift build -c release --sanitize=fuzzer --sanitize=address --scratch-path "$scratch" --product "$target" \
    -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table
  binary=$scratch/release/$target
  regressions=Fuzz/Regressions/$target
  if [ -d "$regressions" ] && [ -n "$(ls -A "$regressions")" ]; then
    echo "== $target: replaying $(ls "$regressions" | wc -l) committed crash case(s)"
    "$binary" "$regressions"/* > "$scratch/$target-regressions.log" 2>&1 || { echo "a committed crash case crashes again"; cat "$scratch/$target-regressions.log"; failed=1; continue; }
  fi
  work=$scratch/corpus/$target
  mkdir -p "$work" "$scratch/crashes/$target"
  echo "== $target: fuzzing for ${seconds}s"
  set +e
  "$binary" "$work" "Fuzz/Corpus/$target" -max_total_time="$seconds" -print_final_stats=1 -max_len=65536 \
    -artifact_prefix="$scratch/crashes/$target/" > "$scratch/$target.log" 2>&1
  status=$?
  set -e
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$scratch/$target.log" | grep -o '[0-9]*$' || echo 0)
  speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$scratch/$target.log" | grep -o '[0-9]*$' || echo 0)
  coverage=$(grep -o 'cov: [0-9]*' "$scratch/$target.log" | tail -1 | grep -o '[0-9]*' || echo 0)
  corpus=$(ls "$work" | wc -l)
  line="$target: ${seconds}s, $runs runs, $speed exec/s, coverage $coverage edges, corpus $corpus inputs"
  if [ $status -ne 0 ]; then
    for crash in "$scratch/crashes/$target"/*; do
      [ -e "$crash" ] || continue
      mkdir -p "$regressions"
      cp "$crash" "$regressions/"
      echo "   crash saved as $regressions/$(basename "$crash")"
    done
    tail -40 "$scratch/$target.log"
    line="$line — CRASHED (input saved under $regressions)"
    failed=1
  fi
  echo "$line" | tee -a "$report"
done

echo
echo "Fuzzing figures (also in $report):"
cat "$report"
exit $failed
