#!/bin/sh
# One command to run FlightSim P2P locally: coturn (STUN/TURN, loopback dev
# config) and the server in the background, sharing a fresh TURN secret.
# Demo page: http://localhost:8080/  Logs: make logs  Stop: make stop
# Details: DEPLOYMENT.md ("Local").
set -eu
cd "$(dirname "$0")"
exec make --no-print-directory start "$@"
