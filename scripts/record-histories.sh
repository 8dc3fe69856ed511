#!/usr/bin/env bash
# Re-records the workflow histories the replay tests read (crates/workflows/tests/histories/).
# Run it on purpose after a deliberate change to a workflow's command sequence, then commit the
# new histories together with the change. Each end-to-end path test saves its run's history.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh >/dev/null
# Histories recorded by an older version of a workflow stay: they prove runs started before an
# upgrade go on after it. They cannot be re-recorded.
KEEP=(dispatcher_rounds_fixed_settings.json approved_pass_before_record_run.json
    approved_pass_before_local_bookkeeping.json fanout_first_before_local_bookkeeping.json
    learned_rule_stops_mistake_before_local_bookkeeping.json integration_failed_before_local_bookkeeping.json)
for file in crates/workflows/tests/histories/*.json; do
    name="$(basename "$file")"
    [[ " ${KEEP[*]} " == *" $name "* ]] || rm -f "$file"
done
CHUM_RECORD_HISTORIES=1 cargo test -p worker --test shark_paths --test learning --test dispatcher --test grooming --test monte_carlo --test faults --test bad_input --test sandbox --no-fail-fast -- --test-threads 2
ls -1 crates/workflows/tests/histories/
