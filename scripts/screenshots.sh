#!/usr/bin/env bash
# The dashboards' screenshots in docs/screenshots: the two browser tests run
# against the real programs and save a PNG of each page they check.
# Needs what those tests need: Debian's chromium and `npm ci --prefix tests/browser`.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p docs/screenshots
C2SSI_SCREENSHOTS="$PWD/docs/screenshots" cargo test --test e2e -- \
    a_consent_accepted_in_wallet_ui_lets_the_agent_run_the_next_task \
    a_job_started_from_collective_ui_runs_and_its_chart_grows_live
ls -l docs/screenshots
