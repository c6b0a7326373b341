#!/usr/bin/env bash
# Builds what bench/gpu/run.sh needs on the GPU machine (which has no Go and no
# network) into .gpu/ (ignored by git; carry it with the working tree):
#
#   .gpu/torus.xz .gpu/stepbench.xz .gpu/gpucheck.xz  stripped, cgo on (go-xla and
#                                   go-nvml dlopen the PJRT plugin and libnvidia-ml
#                                   at run time), xz-compressed
#   .gpu/goroot-src.tar.xz          $(go env GOROOT)/src's *.go files, cmd/ and
#                                   vendor/ left out: the bundled example's data
#   .gpu/MANIFEST                   the commit built, and each file's sha256
#
# Then it prints the sizes: .gpu/ and the repository's files together must stay
# well under the 64 MiB a device run carries. Run from anywhere:
#
#   bash bench/gpu/build.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export GOTOOLCHAIN=go1.27.3 GOEXPERIMENT=simd GOFLAGS=-buildvcs=false CGO_ENABLED=1
LIMIT_MIB=60

OUT=.gpu
# .gpu/ is a build output: keep it out of git (here, not in .gitignore).
exclude="$(git rev-parse --git-path info/exclude)"
if ! grep -qx '/.gpu/' "$exclude" 2>/dev/null; then
	mkdir -p "$(dirname "$exclude")"
	echo '/.gpu/' >>"$exclude"
fi
rm -rf "$OUT.new"
mkdir -p "$OUT.new"
trap 'rm -rf "$ROOT/$OUT.new"' EXIT

for pkg in cmd/torus bench/stepbench bench/gpucheck; do
	name="$(basename "$pkg")"
	echo "build: $name" >&2
	go build -trimpath -ldflags='-s -w' -o "$OUT.new/$name" "./$pkg"
	xz -T0 -6 -f "$OUT.new/$name" # leaves $name.xz
done

GOROOT_DIR="$(go env GOROOT)"
echo "pack: $GOROOT_DIR/src (*.go, without cmd/ and vendor/)" >&2
(
	cd "$GOROOT_DIR"
	find src \( -path src/cmd -o -path src/vendor \) -prune -o -type f -name '*.go' -print0 |
		LC_ALL=C sort -z |
		tar --null -T - --owner=0 --group=0 --numeric-owner -cf - |
		xz -T0 -6
) >"$OUT.new/goroot-src.tar.xz"

{
	echo "commit $(git rev-parse HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' (with uncommitted changes)')"
	echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) with $(go version | cut -d' ' -f3-) from $GOROOT_DIR"
	(cd "$OUT.new" && sha256sum -- *.xz)
} >"$OUT.new/MANIFEST"

rm -rf "$OUT"
mv "$OUT.new" "$OUT"
trap - EXIT

# What a device run carries: the repository's files (tracked, and untracked ones
# git does not ignore) plus .gpu/.
repo_bytes="$(git ls-files -z --cached --others --exclude-standard |
	xargs -0 stat -c %s -- 2>/dev/null | awk '{s += $1} END {print s + 0}')"
gpu_bytes="$(du -sb "$OUT" | cut -f1)"
total=$((repo_bytes + gpu_bytes))
ls -l "$OUT"
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
echo "repository files $(mib "$repo_bytes") + .gpu $(mib "$gpu_bytes") = $(mib "$total") (limit ${LIMIT_MIB} MiB)"
if ((total > LIMIT_MIB * 1048576)); then
	echo "build.sh: too large to carry to the GPU machine" >&2
	exit 1
fi
