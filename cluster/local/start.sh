#!/usr/bin/env bash
# Start a local multi-node Ray cluster on loopback: a head and worker nodes (`ray start`),
# dashboard on 127.0.0.1, token auth, Prometheus export on every node.
#   cluster/local/start.sh                      # head (4 CPUs) + 1 worker (4 CPUs), GCS :26400
#   cluster/local/start.sh --workers 2 --port 27400 --name mine
# It prints the dashboard URL, the cluster address and how to submit and stop.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VENV:-.venv}
# Job entrypoints run with the nodes' PATH: the venv must come first (ENVIRONMENT.md).
export PATH="$PWD/$VENV/bin:$PATH"
exec soaes cluster up "$@"
