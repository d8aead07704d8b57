#!/usr/bin/env bash
# Ensure a local Kubernetes control plane (kube-apiserver, etcd,
# kube-controller-manager) exists and print the directory holding it on the
# LAST line of stdout. All progress goes to stderr.
#
# Resolution order:
#   1. $KUBEBUILDER_ASSETS, if it has kube-apiserver and etcd
#      (kube-controller-manager optional there);
#   2. ${SKERRY_ENVTEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/skerry/envtest}/bin,
#      if it has all three;
#   3. otherwise build into that cache from Debian's `kubernetes` source
#      package (1.20.2) with Debian's golang-go, and take etcd from Debian's
#      `etcd-server`.
#
# The build is idempotent and resumable (stamp files per stage, Go build
# cache kept until the binaries are in place) and serialised by flock(1) so
# concurrent runs do not clash: the second waits, then finds the binaries.
#
# Environment knobs:
#   SKERRY_ENVTEST_CACHE       cache root (default above)
#   SKERRY_ENVTEST_KEEP_GOCACHE=1  keep the Go build cache after success
#   SKERRY_ENVTEST_KEEP_SOURCE=0   delete the source tree after success
#                                  (default keeps it, ~300 MB, for rebuilds)
set -Eeuo pipefail

# Everything except the final answer goes to stderr.
exec 3>&1 1>&2

log() { printf '[skerry-envtest] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
trap 'rc=$?; log "FAILED (exit $rc) at line $LINENO: $BASH_COMMAND"; exit $rc' ERR

answer() { printf '%s\n' "$1" >&3; exit 0; }

have_bins() {
    local dir=$1; shift
    local b
    for b in "$@"; do
        [[ -f "$dir/$b" && -x "$dir/$b" ]] || return 1
    done
}

# --- 1. explicit assets -----------------------------------------------------
if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
    if have_bins "$KUBEBUILDER_ASSETS" kube-apiserver etcd; then
        answer "$(cd "$KUBEBUILDER_ASSETS" && pwd)"
    fi
    log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks kube-apiserver/etcd; falling back to the cache"
fi

# --- 2. cache ----------------------------------------------------------------
CACHE=${SKERRY_ENVTEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/skerry/envtest}
BIN=$CACHE/bin
BINS=(kube-apiserver etcd kube-controller-manager)

if have_bins "$BIN" "${BINS[@]}"; then
    answer "$BIN"
fi

# --- 3. build ----------------------------------------------------------------
mkdir -p "$CACHE" "$CACHE/stamps"
exec 9>"$CACHE/build.lock"
if ! flock -n 9; then
    log "another build holds $CACHE/build.lock; waiting for it..."
    flock 9
fi
# Someone else may have finished while we waited.
if have_bins "$BIN" "${BINS[@]}"; then
    answer "$BIN"
fi

START=$SECONDS
STAMPS=$CACHE/stamps
SRC_ROOT=$CACHE/src
SRC=$SRC_ROOT/kubernetes          # symlink to the unpacked source tree
export GOPATH=$CACHE/gopath
export GOCACHE=$CACHE/gocache
export GO111MODULE=off
export GOFLAGS=
export GOPROXY=off
export CGO_ENABLED=0
export PATH=/usr/lib/go/bin:$PATH
KPKG=k8s.io/kubernetes
KDIR=$GOPATH/src/$KPKG

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo -n)
    else
        die "not root and no sudo: cannot install Debian packages"
    fi
fi
export DEBIAN_FRONTEND=noninteractive

APT_UPDATED=0
apt_update() {
    if [[ $APT_UPDATED -eq 0 ]]; then
        log "apt-get update"
        "${SUDO[@]}" apt-get update -q || log "warning: apt-get update reported errors"
        APT_UPDATED=1
    fi
}

pkg_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

ensure_pkgs() {
    local missing=() p
    for p in "$@"; do
        pkg_installed "$p" || missing+=("$p")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    log "installing Debian packages: ${missing[*]}"
    if ! "${SUDO[@]}" apt-get install -y -q -o Dpkg::Use-Pty=0 --no-install-recommends "${missing[@]}"; then
        APT_UPDATED=0
        apt_update
        "${SUDO[@]}" apt-get install -y -q -o Dpkg::Use-Pty=0 --no-install-recommends "${missing[@]}"
    fi
}

have_kubernetes_src() {
    apt-cache showsrc kubernetes 2>/dev/null | grep -q '^Package: kubernetes$'
}

# Add deb-src entries mirroring the machine's Debian deb entries.
ensure_deb_src() {
    have_kubernetes_src && return 0
    local deb822=/etc/apt/sources.list.d/debian.sources
    if [[ -f $deb822 ]]; then
        local out=/etc/apt/sources.list.d/skerry-deb-src.sources
        log "adding deb-src stanzas to $out (mirroring $deb822)"
        # Keep each stanza whose Types include "deb"; rewrite Types to deb-src.
        awk '
            function flush() {
                if (isdeb && body != "") { printf "%s%s", (n++ ? "\n" : ""), body }
                body = ""; isdeb = 0
            }
            /^[[:space:]]*$/ { flush(); next }
            /^#/ { next }
            /^Types:/ {
                for (i = 2; i <= NF; i++) if ($i == "deb") isdeb = 1
                body = body "Types: deb-src\n"; next
            }
            { body = body $0 "\n" }
            END { flush() }
        ' "$deb822" | "${SUDO[@]}" tee "$out.tmp" >/dev/null
        "${SUDO[@]}" mv "$out.tmp" "$out"
    elif [[ -f /etc/apt/sources.list ]] && grep -q '^deb ' /etc/apt/sources.list; then
        local out=/etc/apt/sources.list.d/skerry-deb-src.list
        log "adding deb-src lines to $out (mirroring /etc/apt/sources.list)"
        sed -n 's/^deb /deb-src /p' /etc/apt/sources.list | "${SUDO[@]}" tee "$out" >/dev/null
    else
        die "no Debian apt sources found to mirror as deb-src"
    fi
    APT_UPDATED=0
    apt_update
    have_kubernetes_src || die "apt-cache showsrc kubernetes still finds nothing after adding deb-src"
}

stage_done() { [[ -f "$STAMPS/$1" ]]; }
mark_done() { touch "$STAMPS/$1"; }

# --- 3a. toolchain and Debian packages -----------------------------------------
PKGS=(dpkg-dev golang-go etcd-server golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev)
if ! (for p in "${PKGS[@]}"; do pkg_installed "$p" || exit 1; done); then
    ensure_pkgs "${PKGS[@]}" || { apt_update; ensure_pkgs "${PKGS[@]}"; }
fi
command -v go >/dev/null || die "go not found after installing golang-go"
log "using $(go version)"

# --- 3b. source -----------------------------------------------------------------
if ! stage_done source || [[ ! -d $SRC/cmd/kube-apiserver ]]; then
    ensure_deb_src
    log "fetching Debian source package 'kubernetes' into $SRC_ROOT"
    rm -rf "$SRC_ROOT" "$STAMPS"/*
    mkdir -p "$SRC_ROOT"
    (cd "$SRC_ROOT" && apt-get source -q kubernetes)
    tree=$(find "$SRC_ROOT" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -n1)
    [[ -n $tree && -d $tree/cmd/kube-apiserver && -d $tree/vendor ]] || die "unexpected source layout under $SRC_ROOT"
    ln -sfn "$(basename "$tree")" "$SRC"
    rm -f "$SRC_ROOT"/*.orig.tar.* "$SRC_ROOT"/*.debian.tar.*
    mark_done source
fi
SRCDIR=$(readlink -f "$SRC")
# Debian versions look like 1.20.5+really1.20.2 -> upstream 1.20.2.
upver=$(basename "$SRCDIR"); upver=${upver#kubernetes-}; upver=${upver##*really}
[[ $upver =~ ^([0-9]+)\.([0-9]+)\.[0-9]+$ ]] || die "cannot parse version from $SRCDIR"
KVER=v$upver
KMAJOR=${BASH_REMATCH[1]}
KMINOR=${BASH_REMATCH[2]}
log "source tree: $SRCDIR ($KVER)"

# --- 3c. GOPATH layout ------------------------------------------------------------
mkdir -p "$GOPATH/src/k8s.io"
if [[ "$(readlink "$KDIR" 2>/dev/null || true)" != "$SRCDIR" ]]; then
    ln -sfn "$SRCDIR" "$KDIR"
fi

# --- 3d. vendored reflect2/json-iterator -> Debian's (SIGSEGV fix on Go >= 1.18) ---
if ! stage_done vendor-fix; then
    for pair in github.com/modern-go/reflect2 github.com/json-iterator/go; do
        from=/usr/share/gocode/src/$pair
        [[ -d $from ]] || die "missing $from"
        log "replacing vendor/$pair with Debian's copy"
        rm -rf "${SRCDIR:?}/vendor/$pair"
        mkdir -p "$(dirname "$SRCDIR/vendor/$pair")"
        cp -a "$from" "$SRCDIR/vendor/$pair"
        # drop tests: they import packages that are not vendored
        find "$SRCDIR/vendor/$pair" -name '*_test.go' -delete
    done
    mark_done vendor-fix
fi

cd "$KDIR"

# --- 3e. OpenAPI definitions (pkg/generated/openapi/zz_generated.openapi.go) ----------
# Reproduces build/root/Makefile.generated_files: every Go dir of the project
# (staging/src/* renamed to vendor/*, skipping _*, .*, vendor), files carrying a
# '// +k8s:' tag, of those the ones with '+k8s:openapi-gen=', minus
# code-generator and sample-apiserver.
OPENAPI_OUT=pkg/generated/openapi/zz_generated.openapi.go
if ! stage_done openapi || [[ ! -s $OPENAPI_OUT ]]; then
    mkdir -p "$CACHE/tools" "$CACHE/tmp"
    log "building vendored openapi-gen"
    go build -o "$CACHE/tools/openapi-gen" "$KPKG/vendor/k8s.io/kube-openapi/cmd/openapi-gen"
    log "computing openapi-gen input packages"
    mapfile -t godirs < <(
        find -H . \( -path './_*' -o -path './.*' -o -path ./vendor \) -prune -o -type f -name '*.go' -print \
            | sed 's|^./staging/src|vendor|; s|/[^/]*$||; s|^\./||' | LC_ALL=C sort -u)
    mapfile -t tagfiles < <(
        printf '%s\0' "${godirs[@]}" \
            | xargs -0 sh -c 'find -H "$@" -maxdepth 1 -type f -name "*.go"' find \
            | xargs grep --color=never -l '^// *+k8s:' || true)
    mapfile -t oadirs < <(
        printf '%s\n' "${tagfiles[@]}" \
            | grep -v -e '^vendor/k8s.io/code-generator/' -e '^vendor/k8s.io/sample-apiserver/' \
            | xargs grep --color=never -l '+k8s:openapi-gen=' \
            | xargs -n1 dirname | LC_ALL=C sort -u)
    [[ ${#oadirs[@]} -gt 50 ]] || die "found only ${#oadirs[@]} openapi-gen packages; something is off"
    inputs=$(printf "$KPKG/%s," "${oadirs[@]}"); inputs=${inputs%,}
    log "running openapi-gen over ${#oadirs[@]} packages (takes a minute or two)"
    rm -f "$OPENAPI_OUT"
    "$CACHE/tools/openapi-gen" \
        --logtostderr \
        -i "$inputs" \
        -p "$KPKG/pkg/generated/openapi" \
        -O zz_generated.openapi \
        -h "$KDIR/vendor/k8s.io/code-generator/hack/boilerplate.go.txt" \
        -r "$CACHE/tmp/KUBE_violations.report" \
        -o "$GOPATH/src"
    [[ -s $OPENAPI_OUT ]] || die "openapi-gen did not produce $OPENAPI_OUT"
    if ! diff -q "$CACHE/tmp/KUBE_violations.report" api/api-rules/violation_exceptions.list >/dev/null 2>&1; then
        log "note: API rule violation report differs from the known list (harmless for this build)"
    fi
    mark_done openapi
fi

# --- 3f. build binaries --------------------------------------------------------------
BUILD_DATE=$(date -u -r "$SRCDIR/go.mod" +'%Y-%m-%dT%H:%M:%SZ' 2>/dev/null || date -u +'%Y-%m-%dT%H:%M:%SZ')
LDFLAGS="-s -w"
for vpkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    for kv in "gitVersion=$KVER" "gitMajor=$KMAJOR" "gitMinor=$KMINOR" \
              "gitCommit=faecb196815e248d3ecfb03c680a4507229c2a56" \
              "gitTreeState=archive" "buildDate=$BUILD_DATE"; do
        LDFLAGS+=" -X $KPKG/vendor/$vpkg.$kv"
    done
done
[[ $KVER == v1.20.2 ]] || LDFLAGS=${LDFLAGS//gitCommit=faecb196815e248d3ecfb03c680a4507229c2a56/gitCommit=}

mkdir -p "$BIN" "$CACHE/build"
for cmd in kube-apiserver kube-controller-manager; do
    if have_bins "$BIN" "$cmd"; then
        continue
    fi
    log "go build $cmd (cold: several minutes)"
    t0=$SECONDS
    go build -trimpath -tags 'selinux,notest' -ldflags "$LDFLAGS" -o "$CACHE/build/$cmd" "$KPKG/cmd/$cmd"
    mv -f "$CACHE/build/$cmd" "$BIN/$cmd"
    log "built $cmd in $((SECONDS - t0))s"
done

# --- 3g. etcd ----------------------------------------------------------------------
ETCD=$(command -v etcd || true)
[[ -z $ETCD && -x /usr/bin/etcd ]] && ETCD=/usr/bin/etcd
[[ -n $ETCD ]] || die "etcd not found after installing etcd-server"
ln -sfn "$ETCD" "$BIN/etcd"

have_bins "$BIN" "${BINS[@]}" || die "build finished but $BIN is incomplete"
"$BIN/kube-apiserver" --version >&2 || true

# --- 3h. tidy up -----------------------------------------------------------------------
if [[ ${SKERRY_ENVTEST_KEEP_GOCACHE:-0} != 1 ]]; then
    log "removing Go build cache $GOCACHE"
    rm -rf "$GOCACHE" "$CACHE/build"
fi
if [[ ${SKERRY_ENVTEST_KEEP_SOURCE:-1} == 0 ]]; then
    log "removing source tree"
    rm -rf "$SRC_ROOT" "$GOPATH" "$STAMPS" "$CACHE/tools" "$CACHE/tmp"
fi
log "done in $((SECONDS - START))s"
answer "$BIN"
