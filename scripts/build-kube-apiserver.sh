#!/usr/bin/env bash
# Builds a real kube-apiserver (v1.20.2) and takes etcd/etcdctl (3.4.23) from Debian 12 packages,
# for the integration tests that talk to a real API server (tests/support/kube.rs).
#
# No registry ships a kube-apiserver binary and nothing outside the package registries can be
# fetched, so the binary is built from Debian's `kubernetes` source package with Debian's Go 1.19.
# Everything is downloaded with apt-get into private directories and unpacked with dpkg-deb: no
# package is installed and no system file is touched, so it needs no root.
#
# The result is cached outside the repository, keyed by this script's hash:
#   ${XDG_CACHE_HOME:-~/.cache}/astrolabe/kube-apiserver-<hash>/bin/{kube-apiserver,etcd,etcdctl}
# A run whose cache directory is complete does nothing; a fresh machine pays about 4 minutes once.
# Intermediates (sources, Go build tree, GOCACHE: a few GB) are deleted whether the build succeeds
# or fails, and so are the caches of older versions of this script.
#
# Usage: build-kube-apiserver.sh            builds if needed; the last stdout line is the bin dir
#        build-kube-apiserver.sh --print-dir  only prints the bin dir it would use
#        KEEP_WORK=1 build-kube-apiserver.sh  keeps the build tree (to debug a failed build)
set -euo pipefail

# Everything runs from main(), called on the last line: bash has then read the whole file before
# running any of it, so a checkout that changes this script mid-build cannot derail the build.
main() {
script=$(readlink -f "${BASH_SOURCE[0]}")
# The cache is keyed by the script's commands, not its comments: editing a comment costs no rebuild.
hash=$(grep -v '^[[:space:]]*#' "$script" | sha256sum | cut -c1-16)
cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/astrolabe
dir=$cache_root/kube-apiserver-$hash
bin=$dir/bin

case "${1:-}" in
  --print-dir) echo "$bin"; exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--print-dir]" >&2; exit 2 ;;
esac

complete() { [ -x "$bin/kube-apiserver" ] && [ -x "$bin/etcd" ] && [ -x "$bin/etcdctl" ]; }

if complete; then
  echo "$bin"
  exit 0
fi

# Progress goes to stderr; stdout carries only the bin dir at the end.
exec 3>&1 1>&2

# Two concurrent runs (say two checkouts installing at once) would build into the same place: the
# second waits for the first and then finds the cache complete.
mkdir -p "$cache_root"
exec 9>"$cache_root/kube-apiserver.lock"
flock 9
if complete; then
  echo "$bin" >&3
  exit 0
fi

work=$dir.work
cleanup() {
  if [ "${KEEP_WORK:-}" = 1 ]; then
    echo "KEEP_WORK=1: leaving $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
rm -rf "$work" "$dir"
mkdir -p "$work"

# The build tree peaks at about 2.5 GB; a CI disk has run out before, so say so up front rather
# than fail in the middle of the Go build.
need_kb=$((3 * 1024 * 1024))
avail_kb=$(df -Pk "$work" | awk 'NR == 2 { print $4 }')
echo "== disk free where the build runs ($work):"
df -h "$work" | tail -1
if [ "$avail_kb" -lt "$need_kb" ]; then
  echo "error: building kube-apiserver needs about 3 GB free under $cache_root" >&2
  exit 1
fi
start_time=$(date +%s)

# 1. A private apt configuration: the machine's own Debian sources, plus their deb-src twins
#    (source packages are usually not enabled), with private lists and caches, so `apt-get update`
#    here neither needs root nor changes what the system's apt sees. Trust anchors, proxies and
#    other settings still come from /etc/apt, except the hooks run after an update (they clean or
#    refresh the system's caches, and fail without root).
apt_dir=$work/apt
mkdir -p "$apt_dir/sources.list.d" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
sources=$apt_dir/sources.list.d
for f in /etc/apt/sources.list.d/*.sources; do
  [ -e "$f" ] || continue
  # deb822 stanzas of the Debian archive (its URIs have a /debian path), with deb-src added.
  awk 'BEGIN { RS = ""; ORS = "\n\n" }
       /(^|\n)URIs:[^\n]*\/debian/ && /(^|\n)Types:[^\n]*deb/ {
         if ($0 !~ /(^|\n)Types:[^\n]*deb-src/) sub(/(^|\n)Types:[^\n]*/, "&" " deb-src")
         print
       }' "$f" >"$sources/$(basename "$f")"
done
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
  [ -e "$f" ] || continue
  # One-line entries of the Debian archive: each `deb` line and its `deb-src` twin.
  awk '$1 == "deb" && $0 ~ /\/debian/ { print; sub(/^deb/, "deb-src"); print }' "$f" \
    >"$sources/$(basename "$f")"
done
if ! grep -qs deb-src "$sources"/*; then
  echo "error: no Debian archive found in /etc/apt/sources.list{,.d}" >&2
  exit 1
fi
cat >"$apt_dir/apt.conf" <<'EOF'
#clear APT::Update::Pre-Invoke;
#clear APT::Update::Post-Invoke;
#clear APT::Update::Post-Invoke-Success;
EOF
apt_opts=(
  -c "$apt_dir/apt.conf"
  -o "Dir::Etc::SourceList=/dev/null"
  -o "Dir::Etc::SourceParts=$sources"
  -o "Dir::State::Lists=$apt_dir/lists"
  -o "Dir::Cache=$apt_dir/cache"
  -o "Dir::Cache::pkgcache="
  -o "Dir::Cache::srcpkgcache="
  # As root apt would download as _apt, which cannot write into a private directory under ~.
  -o "APT::Sandbox::User=root"
)
export DEBIAN_FRONTEND=noninteractive
echo "== apt-get update (private lists)"
apt-get "${apt_opts[@]}" update -qq

# 2. The source package and the binary packages. apt checks every file against the signed
#    Release files, so nothing downloaded is trusted by name alone.
#    - kubernetes (source): upstream v1.20.2 with its vendor/ tree, the only source of the server.
#    - golang-1.19-go/-src: the newest Go in Debian 12 that this tree builds with.
#    - etcd-server/-client: the storage the API server needs (3.4, as upstream 1.20 tested with).
#    - make, rsync, libpopt0: the Kubernetes build runs make and copies with rsync, which a
#      fresh machine may not have.
#    - reflect2 1.0.2 and json-iterator 1.1.12: the vendored reflect2 1.0.1 makes the server
#      crash (SIGSEGV in runtime.mapiterinit) under Go >= 1.18; these replace the vendored copies.
debs=$work/debs
mkdir -p "$debs"
echo "== downloading packages"
(cd "$debs" && apt-get "${apt_opts[@]}" source --download-only -qq kubernetes)
(cd "$debs" && apt-get "${apt_opts[@]}" download -qq \
  golang-1.19-go golang-1.19-src etcd-server etcd-client make rsync libpopt0 \
  golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev)
ls -l "$debs" >&2

# 3. Unpack the binary packages into a private root instead of installing them.
root=$work/root
mkdir -p "$root"
for deb in "$debs"/*.deb; do
  dpkg-deb -x "$deb" "$root"
done
rm -f "$debs"/*.deb

# make and rsync come from the private root (on PATH through $tools); rsync needs its libpopt from
# there too.
popt=$(find "$root" -name 'libpopt.so.0*' -print -quit)
[ -n "$popt" ] || { echo "error: libpopt.so.0 not found in $root" >&2; exit 1; }
tools=$work/tools
mkdir -p "$tools"
cat >"$tools/rsync" <<EOF
#!/bin/sh
LD_LIBRARY_PATH="$(dirname "$popt")\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" \
  exec "$root/usr/bin/rsync" "\$@"
EOF
chmod +x "$tools/rsync"
ln -s "$root/usr/bin/make" "$tools/make"

# 4. The Kubernetes tree: the upstream (orig) tarball; Debian's own patches are not needed for
#    the server. Then swap in the fixed reflect2 and json-iterator.
src_parent=$work/src
mkdir -p "$src_parent"
orig=$(find "$debs" -name 'kubernetes_*.orig.tar.*' -print -quit)
[ -n "$orig" ] || { echo "error: no kubernetes orig tarball in $debs" >&2; exit 1; }
echo "== unpacking $(basename "$orig")"
tar -xf "$orig" -C "$src_parent"
rm -rf "$debs"
mapfile -t tops < <(find "$src_parent" -mindepth 1 -maxdepth 1 -type d)
[ "${#tops[@]}" -eq 1 ] || { echo "error: expected one top directory in the tarball" >&2; exit 1; }
src=${tops[0]}
if [ ! -f "$src/cmd/kube-apiserver/apiserver.go" ]; then
  echo "error: no cmd/kube-apiserver in $src" >&2
  exit 1
fi
gocode=$root/usr/share/gocode/src/github.com
for pkg in modern-go/reflect2 json-iterator/go; do
  [ -d "$gocode/$pkg" ] || { echo "error: $gocode/$pkg missing" >&2; exit 1; }
  rm -rf "$src/vendor/github.com/$pkg"
  cp -r "$gocode/$pkg" "$src/vendor/github.com/$pkg"
done

# 5. Build. The tarball has no .git, so the version comes from a version file; CGO off gives a
#    static binary and needs no C compiler. Go, its caches and rsync all live under $work; every
#    Go dependency is in vendor/, so GOPROXY=off. nice: the build takes both cores for minutes.
cat >"$work/version" <<'EOF'
KUBE_GIT_VERSION='v1.20.2'
KUBE_GIT_MAJOR='1'
KUBE_GIT_MINOR='20'
KUBE_GIT_TREE_STATE='archive'
EOF
goroot=$root/usr/lib/go-1.19
echo "== building kube-apiserver (a few minutes)"
(
  cd "$src"
  unset GOFLAGS GOBIN GOPATH GOENV
  export GOROOT=$goroot
  export PATH=$goroot/bin:$tools:$PATH
  export GOCACHE=$work/gocache GOTMPDIR=
  export GOTOOLCHAIN=local GOPROXY=off
  export KUBE_GIT_VERSION_FILE=$work/version
  export CGO_ENABLED=0
  nice -n 10 make WHAT=cmd/kube-apiserver
)
apiserver=$(find "$src/_output" -type f -name kube-apiserver -perm -u+x -print -quit)
[ -n "$apiserver" ] || { echo "error: the build made no kube-apiserver" >&2; exit 1; }

# 6. Stage the finished directory and rename it into place: the cache is either complete or
#    absent, never half-written.
stage=$work/final
mkdir -p "$stage/bin"
cp "$apiserver" "$stage/bin/kube-apiserver"
cp "$root/usr/bin/etcd" "$root/usr/bin/etcdctl" "$stage/bin/"
{
  "$stage/bin/kube-apiserver" --version
  "$stage/bin/etcd" --version
} >"$stage/VERSIONS" 2>&1
cat "$stage/VERSIONS" >&2
mv -T "$stage" "$dir"

# Older builds (from earlier versions of this script) are dead weight.
for old in "$cache_root"/kube-apiserver-*; do
  [ "$old" = "$dir" ] || [ "$old" = "$work" ] || [ ! -d "$old" ] || rm -rf "$old"
done

echo "== built in $(($(date +%s) - start_time)) s: $(du -sh "$dir" | cut -f1) in $dir"
echo "$bin" >&3
}

main "$@"
