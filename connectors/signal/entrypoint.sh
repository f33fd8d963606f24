#!/bin/sh
# Runs signal-cli's HTTP daemon and the connector program side by side in one container.
#
# The daemon listens on loopback only (the program is its one client); the program waits for
# /api/v1/check itself (it reconnects with backoff), so no start-up ordering is needed here.
# SIGTERM/SIGINT go to the program first (it stops accepting sends, finishes those in flight and the
# inbox POST, exits 0), then to signal-cli. If either process dies, the other is stopped and the
# container exits with the dead one's status, so the orchestrator restarts the pair.
set -eu

: "${SIGNAL_ACCOUNT:?SIGNAL_ACCOUNT is not set (the account's +E164 number)}"
SIGNAL_CLI_LISTEN="${SIGNAL_CLI_LISTEN:-127.0.0.1:7583}"
export SIGNAL_CLI_URL="${SIGNAL_CLI_URL:-http://${SIGNAL_CLI_LISTEN}}"
mkdir -p "${CONNECTOR_STATE_DIR}"

signal-cli --config /var/lib/signal-cli -a "${SIGNAL_ACCOUNT}" daemon --http "${SIGNAL_CLI_LISTEN}" &
daemon=$!
python -m connectors.signal &
program=$!

stop() {
    kill -TERM "$program" 2>/dev/null || true
    wait "$program" 2>/dev/null || true
    kill -TERM "$daemon" 2>/dev/null || true
    wait "$daemon" 2>/dev/null || true
    exit 0
}
trap stop TERM INT

# Wake up when either child exits (a trapped signal also interrupts the wait).
while kill -0 "$program" 2>/dev/null && kill -0 "$daemon" 2>/dev/null; do
    sleep 1 &
    wait $! || true
done
status=0
if ! kill -0 "$program" 2>/dev/null; then wait "$program" || status=$?; echo "connector program exited ($status)" >&2; fi
if ! kill -0 "$daemon" 2>/dev/null; then wait "$daemon" || status=$?; echo "signal-cli exited ($status)" >&2; fi
kill -TERM "$program" "$daemon" 2>/dev/null || true
wait || true
exit "$status"
