#!/usr/bin/env bash
# Stop the local cluster started by start.sh: SIGTERM to each recorded `ray start` process
# (workers, then head), SIGKILL to whatever of their process trees is left. Never
# `ray stop`, which would kill every Ray process on the machine, other people's included.
#   cluster/local/stop.sh [--name mine]
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VENV:-.venv}
exec "$VENV/bin/soaes" cluster down "$@"
