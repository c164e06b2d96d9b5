#!/usr/bin/env bash
# Offline AMDGPU toolchain for gfx942/gfx950 compiles on a CPU-only Debian 12 machine:
#   * clang-22 + lld-22 from Debian 12 (the only system change: an ordinary apt-get install);
#   * HIP 5.7 headers (libamdhip64-dev, has hip_bf16.h) and ROCm 6.0 device bitcode
#     (rocm-device-libs-17, has gfx940-942) from Debian 13, fetched with `apt-get download` through a
#     private APT configuration under PREFIX and unpacked there with `dpkg -x` (never installed: their
#     binaries need trixie's glibc; we only use architecture-independent headers and bitcode).
# Usage: .ci/amd-toolchain.sh PREFIX      (then export JITGEMM_AMD_TOOLCHAIN=PREFIX)
# Idempotent: a second run with everything in place only checks a stamp file (well under a second).
set -euo pipefail

PREFIX=${1:?usage: $0 PREFIX}
mkdir -p "$PREFIX"
PREFIX=$(cd "$PREFIX" && pwd)
STAMP="$PREFIX/jitgemm-toolchain.txt"   # written last; its presence means the unpack completed
DEB13_PACKAGES=(libamdhip64-dev rocm-device-libs-17)
SUITE=trixie
export DEBIAN_FRONTEND=noninteractive

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "amd-toolchain: need root (or sudo) to run: $*" >&2; return 1; fi
}

install_clang() {
  if command -v clang-22 >/dev/null && command -v ld.lld-22 >/dev/null; then return; fi
  # the security suite carries clang-22; refresh the lists only when apt does not know it yet
  if ! apt-cache policy clang-22 2>/dev/null | grep -q 'Candidate: [0-9]'; then as_root apt-get update -q; fi
  as_root apt-get install -y -q --no-install-recommends clang-22 lld-22
}

# The machine's own Debian mirror (deb822 sources first, one-line sources as a fallback), so no
# registry host is written into the repository.
mirror_uri() {
  local f uri
  for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    # the first stanza whose suites are the main archive (not -security), e.g. "bookworm bookworm-updates"
    uri=$(awk 'BEGIN{RS=""; FS="\n"} {u=""; s=""; for(i=1;i<=NF;i++){ if($i ~ /^URIs:/){sub(/^URIs:[ \t]*/,"",$i); split($i,a,/[ \t]+/); u=a[1]}
                 if($i ~ /^Suites:/) s=$i } if(u != "" && s !~ /-security/){print u; exit}}' "$f")
    if [ -n "$uri" ]; then echo "${uri%/}"; return; fi
  done
  if [ -r /etc/apt/sources.list ]; then
    uri=$(awk '$1=="deb" && $0 !~ /-security/ {for(i=2;i<=NF;i++) if($i ~ /^[a-z]+:\/\//){print $i; exit}}' /etc/apt/sources.list)
    if [ -n "$uri" ]; then echo "${uri%/}"; return; fi
  fi
  echo "amd-toolchain: no Debian mirror found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list" >&2
  return 1
}

# apt-get with its lists, cache and sources all under PREFIX/apt: the system's APT state is untouched
private_apt() {
  local d="$PREFIX/apt" sandbox=()
  # root downloads into a root-owned folder that apt's _apt user cannot write: say so, not warn
  [ "$(id -u)" = 0 ] && sandbox=(-o APT::Sandbox::User=root)
  apt-get -q "${sandbox[@]}" -o Dir::Etc::SourceList="$d/sources.list" -o Dir::Etc::SourceParts="$d/sources.list.d" \
    -o Dir::Etc::Preferences="$d/preferences" -o Dir::Etc::PreferencesParts="$d/preferences.d" \
    -o Dir::State="$d/state" -o Dir::State::status="$d/state/status" -o Dir::Cache="$d/cache" \
    -o APT::Architecture=amd64 -o Debug::NoLocking=1 "$@"  # amd64: always published; what we use is arch-free
}

fetch_debs() {
  local d="$PREFIX/apt" uri keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  uri=$(mirror_uri)
  mkdir -p "$d/sources.list.d" "$d/preferences.d" "$d/state/lists/partial" "$d/cache/archives/partial" "$d/debs"
  : > "$d/state/status"
  : > "$d/preferences"
  echo "deb [signed-by=$keyring] $uri $SUITE main" > "$d/sources.list"
  private_apt update
  rm -f "$d"/debs/*.deb
  (cd "$d/debs" && private_apt download "${DEB13_PACKAGES[@]}")
  rm -rf "$d/state/lists" "$d/cache"  # 20 MB of package lists, needed again only to refetch
}

# clang-22 finds the bitcode by file name in one folder. ROCm 6.0 has no gfx950 ISA-version library
# (nor gfx942 in older releases); it is a single constant (major*1000 + minor*100 + stepping), so a
# missing one is generated here.
make_devlibs() {
  local bc
  bc=$(find "$PREFIX/root" -name ocml.bc -print -quit)
  [ -n "$bc" ] || { echo "amd-toolchain: ocml.bc not found in rocm-device-libs-17" >&2; return 1; }
  rm -rf "$PREFIX/devlibs"
  mkdir -p "$PREFIX/devlibs"
  ln -sr "$(dirname "$bc")"/*.bc "$PREFIX/devlibs/"   # relative: the prefix may be moved
  local isa
  for isa in 942:9402 950:9500; do
    local name="oclc_isa_version_${isa%%:*}.bc"
    [ -e "$PREFIX/devlibs/$name" ] && continue
    printf '%s\n' 'target triple = "amdgcn-amd-amdhsa"' \
      "@__oclc_ISA_version = linkonce_odr protected local_unnamed_addr addrspace(4) constant i32 ${isa##*:}, align 4" \
      > "$PREFIX/devlibs/${name%.bc}.ll"
    clang-22 -c -emit-llvm -nogpulib --target=amdgcn-amd-amdhsa "$PREFIX/devlibs/${name%.bc}.ll" -o "$PREFIX/devlibs/$name"
    rm "$PREFIX/devlibs/${name%.bc}.ll"
  done
}

unpack() {
  rm -rf "$PREFIX/root"
  mkdir -p "$PREFIX/root"
  local deb
  for deb in "$PREFIX"/apt/debs/*.deb; do dpkg -x "$deb" "$PREFIX/root"; done
  # clang's --rocm-path wants <path>/include/hip; the headers live in root/usr/include
  ln -sfn root/usr "$PREFIX/usr"
  make_devlibs
}

versions() {
  local deb
  echo "clang $(clang-22 --version | head -n1)"
  for deb in "$PREFIX"/apt/debs/*.deb; do
    echo "$(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version)"
  done
}

install_clang
if [ -s "$STAMP" ] && [ -e "$PREFIX/devlibs/ocml.bc" ] && [ -e "$PREFIX/usr/include/hip/hip_runtime.h" ]; then
  exit 0
fi
fetch_debs
unpack
versions > "$STAMP.tmp"
mv "$STAMP.tmp" "$STAMP"
echo "amd-toolchain: ready in $PREFIX"
sed 's/^/  /' "$STAMP"
