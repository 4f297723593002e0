#!/bin/sh
# Harvest every configured collection, then build a new index version (switched in atomically).
# INTERVAL_S=0 (default): once, then exit with the job's status. INTERVAL_S>0: repeat forever, logging failures.
set -u
run_once() {
    iconosearch --log-json harvest && iconosearch --log-json index
}
if [ "${INTERVAL_S:-0}" -le 0 ]; then
    run_once
    exit $?
fi
while :; do
    run_once || echo "{\"level\": \"error\", \"message\": \"harvest/index run failed; retrying in ${INTERVAL_S}s\"}" >&2
    sleep "$INTERVAL_S"
done
