#!/usr/bin/env bash
# Builds the Kubernetes control plane and autoscalers that jobfleet's
# integration and end-to-end tests run against, and caches each binary by
# version outside the checkout, so only the first run pays for the build.
#
#   deploy/local/controlplane/build.sh [all|core|autoscalers|argo] [--print-dir]
#
# core:        etcd, kube-apiserver (enough for the dispatcher's integration tests)
# autoscalers: kube-controller-manager, kube-scheduler, kwok, the KEDA operator, Karpenter (KWOK provider)
# argo:        Argo Workflows' workflow-controller and executor (argoexec)
# all:         all three (the default)
#
# The cache lives in $JOBFLEET_CACHE_DIR, or $XDG_CACHE_HOME/jobfleet, or ~/.cache/jobfleet.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${JOBFLEET_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/jobfleet}
bin=$cache/bin
mkdir -p "$bin"


what=${1:-all}
if [ "$what" = "--print-dir" ]; then echo "$bin"; exit 0; fi

# Versions come from the wrapper modules, so go.mod is the single pin.
modver() { awk -v m="$2" '$1==m {print $2; exit} $1=="require" && $2==m {print $3; exit}' "$here/$1/go.mod"; }
kube_version=$(modver kube k8s.io/kubernetes)
etcd_version=$(modver etcd go.etcd.io/etcd/server/v3)
keda_version=$(modver keda github.com/kedacore/keda/v2)
argo_version=$(modver argo github.com/argoproj/argo-workflows/v3)
kwok_version=v0.7.0
karpenter_version=v1.8.0

log() { printf '%s controlplane: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# build_tool <wrapper dir> <package> <binary name> <version> [ldflags]
build_tool() {
	local dir=$1 pkg=$2 name=$3 version=$4 ldflags=${5:-}
	local out=$bin/$name-$version
	if [ -x "$out" ]; then log "$name $version cached"; return; fi
	log "building $name $version (cold builds take minutes)"
	(cd "$here/$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out.tmp" "$pkg")
	mv "$out.tmp" "$out"
}

# build_kube <binary name>: a Kubernetes binary that reports its version,
# as a release build does (clients such as helm check the server's). One
# built without it, by an older version of this script, is rebuilt.
build_kube() {
	local name=$1 out=$bin/$1-$kube_version
	if [ -x "$out" ] && ! "$out" --version 2>/dev/null | grep -qF "$kube_version"; then
		log "$name $kube_version does not report its version: rebuilding"
		rm -f "$out"
	fi
	local minor=${kube_version#v1.}
	minor=${minor%%.*}
	local v=k8s.io/component-base/version
	build_tool kube "k8s.io/kubernetes/cmd/$name" "$name" "$kube_version" \
		"-X $v.gitVersion=$kube_version -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean"
}

# install_tool <module path@version> <binary name> <version>
install_tool() {
	local pkg=$1 name=$2 version=$3
	local out=$bin/$name-$version
	if [ -x "$out" ]; then log "$name $version cached"; return; fi
	log "installing $name $version"
	local tmp
	tmp=$(mktemp -d)
	CGO_ENABLED=0 GOBIN=$tmp go install -trimpath "$pkg"
	mv "$tmp"/* "$out"
	rmdir "$tmp"
}

core() {
	build_tool etcd . etcd "$etcd_version"
	build_kube kube-apiserver
}

autoscalers() {
	build_kube kube-controller-manager
	build_kube kube-scheduler
	install_tool "sigs.k8s.io/kwok/cmd/kwok@$kwok_version" kwok "$kwok_version"
	install_tool "sigs.k8s.io/karpenter/kwok@$karpenter_version" karpenter-kwok "$karpenter_version"
	build_tool keda github.com/kedacore/keda/v2/cmd/operator keda-operator "$keda_version"
	# The CRDs ship inside the modules; keep the sources in the module cache.
	go mod download "sigs.k8s.io/karpenter@$karpenter_version" "sigs.k8s.io/kwok@$kwok_version"
	(cd "$here/keda" && go mod download github.com/kedacore/keda/v2)
}

argo() {
	build_tool argo github.com/argoproj/argo-workflows/v3/cmd/workflow-controller workflow-controller "$argo_version"
	build_argoexec
}

# build_argoexec: argoexec's Linux signal code is a symlink in Argo's
# repository (workflow/executor/osspecific/signal_linux.go ->
# signal_darwin.go), and module zips drop symlinks, so the module as the
# proxy serves it does not build for Linux. Build it from a copy of the
# module with the link's target copied in its place. It runs in a
# subshell, so that the copy is removed however it exits.
build_argoexec() (
	local out=$bin/argoexec-$argo_version
	if [ -x "$out" ]; then log "argoexec $argo_version cached"; return; fi
	log "building argoexec $argo_version (cold builds take minutes)"
	local src tmp
	src=$(cd "$here/argo" && go mod download -json github.com/argoproj/argo-workflows/v3 | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -d "$src" ] || { echo "argo module source not found" >&2; return 1; }
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	cp -r "$src" "$tmp/argo"
	chmod -R u+w "$tmp/argo"
	local os=$tmp/argo/workflow/executor/osspecific
	[ -e "$os/signal_linux.go" ] || cp "$os/signal_darwin.go" "$os/signal_linux.go"
	cp "$here/argo/go.mod" "$tmp/go.mod"
	cp "$here/argo/go.sum" "$tmp/go.sum"
	echo "replace github.com/argoproj/argo-workflows/v3 => $tmp/argo" >> "$tmp/go.mod"
	(cd "$here/argo" && CGO_ENABLED=0 go build -modfile "$tmp/go.mod" -trimpath -o "$out.tmp" github.com/argoproj/argo-workflows/v3/cmd/argoexec)
	mv "$out.tmp" "$out"
)

case "$what" in
core) core ;;
autoscalers) autoscalers ;;
argo) argo ;;
all) core; autoscalers; argo ;;
*) echo "usage: $0 [all|core|autoscalers|argo|--print-dir]" >&2; exit 2 ;;
esac
log "ready in $bin"
