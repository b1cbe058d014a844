#!/usr/bin/env bash
# Creates a kind cluster and runs the same integration suite against it through KUBECONFIG.
# Needs Docker and kind on PATH (https://kind.sigs.k8s.io). Usage:
#   test/e2e/kind/run.sh            # create, test, delete
#   KEEP_CLUSTER=1 test/e2e/kind/run.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
name="${KIND_CLUSTER_NAME:-service-user-operator}"
kubeconfig="$(mktemp -t kind-kubeconfig.XXXXXX)"

for tool in docker kind; do
  command -v "$tool" >/dev/null || { echo "$tool is required for the kind suite" >&2; exit 2; }
done
docker info >/dev/null 2>&1 || { echo "no Docker engine is reachable; the kind suite needs one" >&2; exit 2; }

cleanup() {
  if [ -z "${KEEP_CLUSTER:-}" ]; then kind delete cluster --name "$name" >/dev/null 2>&1 || true; fi
  rm -f "$kubeconfig"
}
trap cleanup EXIT

kind create cluster --name "$name" --config "$here/cluster.yaml" --kubeconfig "$kubeconfig" --wait 120s
cd "$repo"
KUBECONFIG="$kubeconfig" npm run test:integration
