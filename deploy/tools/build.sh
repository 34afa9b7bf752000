#!/usr/bin/env bash
# Builds the tools jobfleet's tests run (helm, kubeconform) from this
# module's pinned versions, and caches each binary by version beside the
# control plane's, so only the first run pays for the build.
#
#   deploy/tools/build.sh [--print-dir | --path helm|kubeconform]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${JOBFLEET_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/jobfleet}
bin=$cache/bin
mkdir -p "$bin"
if [ "${1:-}" = "--print-dir" ]; then echo "$bin"; exit 0; fi

modver() { awk -v m="$1" '$1==m {print $2; exit} $1=="require" && $2==m {print $3; exit}' "$here/go.mod"; }
helm_version=$(modver helm.sh/helm/v3)
kubeconform_version=$(modver github.com/yannh/kubeconform)
if [ "${1:-}" = "--path" ]; then
	case "${2:-}" in
	helm) echo "$bin/helm-$helm_version" ;;
	kubeconform) echo "$bin/kubeconform-$kubeconform_version" ;;
	*) echo "--path helm|kubeconform" >&2; exit 2 ;;
	esac
	exit 0
fi
log() { printf '%s tools: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

build() {
	local pkg=$1 name=$2 version=$3
	local out=$bin/$name-$version
	if [ -x "$out" ]; then log "$name $version cached"; return; fi
	log "building $name $version"
	(cd "$here" && CGO_ENABLED=0 go build -trimpath -o "$out.tmp" "$pkg")
	mv "$out.tmp" "$out"
}

# In parallel: two cores build both in about two minutes cold.
build helm.sh/helm/v3/cmd/helm helm "$helm_version" &
helm_pid=$!
build github.com/yannh/kubeconform/cmd/kubeconform kubeconform "$kubeconform_version" &
kubeconform_pid=$!
wait "$helm_pid"
wait "$kubeconform_pid"
