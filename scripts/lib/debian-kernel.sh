# Shared by scripts/guest-assets.sh: fetch one of Debian 12's kernel packages into a directory, and compute the
# load order of a set of its modules. Sourced, not run. Needs log() and die() from the caller.
#
# Nothing is installed on the host: `apt-get download` + `dpkg-deb -x`. A stamp file records the package and
# version, so a second call is free while the package lists do not change.

# resolve_kernel_pkg META: the versioned image package a meta package (linux-image-amd64,
# linux-image-cloud-amd64) depends on, e.g. linux-image-6.1.0-57-amd64. Runs `apt-get update` once if the
# package lists do not know it yet.
resolve_kernel_pkg() {
  local meta="$1" pkg
  pkg="$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
  if [[ -z $pkg ]]; then
    log "package lists do not know $meta: running apt-get update"
    apt-get update -q >&2 || die "apt-get update failed (needs root and network)"
    pkg="$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
  fi
  [[ -n $pkg ]] || die "cannot resolve $meta to a kernel package"
  echo "$pkg"
}

# fetch_kernel_pkg PKG DIR: DIR/root holds the unpacked package; DIR/.kernel-stamp says which. Prints
# "fetched" when it downloaded, "cached" otherwise.
fetch_kernel_pkg() {
  local pkg="$1" dir="$2" ver want
  ver="$(apt-cache show --no-all-versions "$pkg" | awk '/^Version:/ {print $2; exit}')"
  [[ -n $ver ]] || die "no version for $pkg"
  want="$pkg=$ver"
  if [[ -f $dir/.kernel-stamp && "$(cat "$dir/.kernel-stamp")" == "$want" && -d $dir/root/boot ]]; then
    echo cached
    return 0
  fi
  log "fetching $pkg $ver"
  rm -rf "$dir/debs" "$dir/root"
  mkdir -p "$dir/debs" "$dir/root"
  # apt-get download writes into the current directory. As root it warns that it runs unsandboxed: harmless.
  (cd "$dir/debs" && apt-get download -q "$want" >&2) || die "apt-get download $pkg failed"
  dpkg-deb -x "$(ls "$dir/debs/${pkg}"_*.deb | head -n1)" "$dir/root" || die "dpkg-deb -x $pkg failed"
  rm -rf "$dir/debs"
  echo "$want" >"$dir/.kernel-stamp"
  echo fetched
}

# module_load_order MODDIR NAME...: the relative paths (under MODDIR) of the named modules and everything they
# depend on, dependencies first. Names missing from the tree (built in, or absent) are skipped. The package
# ships no modules.dep (depmod makes it at install time, and kmod may be absent), so each module's own
# "depends=" is read from its .modinfo section.
module_load_order() {
  local moddir="$1"; shift
  command -v objcopy >/dev/null || die "objcopy not found (binutils, from build-essential)"
  local -A path_of=() seen=()
  local order=() p base name
  while IFS= read -r p; do
    base="${p##*/}"; name="${base%%.ko*}"
    path_of[${name//-/_}]="${p#"$moddir"/}"
  done < <(find "$moddir/kernel" -name '*.ko*' | LC_ALL=C sort)
  _module_depends() {
    local src="$moddir/$1" tmp
    tmp="$(mktemp)"
    case "$src" in
      *.ko.xz) xz -dc "$src" >"$tmp" ;;
      *.ko.zst) zstd -qdc "$src" >"$tmp" ;;
      *) cp "$src" "$tmp" ;;
    esac
    objcopy -O binary --only-section=.modinfo "$tmp" "$tmp.info"
    tr '\0' '\n' <"$tmp.info" | awk -F= '$1 == "depends" {print $2}' | tr ',' ' '
    rm -f "$tmp" "$tmp.info"
  }
  _visit() {
    local n="${1//-/_}" rel dep
    [[ -n ${seen[$n]:-} ]] && return 0
    seen[$n]=1
    rel="${path_of[$n]:-}"
    [[ -z $rel ]] && return 0
    for dep in $(_module_depends "$rel"); do _visit "$dep"; done
    order+=("$rel")
  }
  for name in "$@"; do _visit "$name"; done
  printf '%s\n' "${order[@]}"
}

# stage_modules MODDIR STAGE_MODULE_DIR REL...: copies the modules (decompressed: busybox insmod takes plain ELF
# objects) and writes their names, in order, to STAGE_MODULE_DIR/load-order.
stage_modules() {
  local moddir="$1" dest="$2"; shift 2
  local rel src base
  : >"$dest/load-order"
  for rel in "$@"; do
    src="$moddir/$rel"; base="${rel##*/}"
    case "$base" in
      *.ko.xz) xz -dc "$src" >"$dest/${base%.xz}"; base="${base%.xz}" ;;
      *.ko.zst) zstd -qdc "$src" >"$dest/${base%.zst}"; base="${base%.zst}" ;;
      *.ko.gz) gzip -dc "$src" >"$dest/${base%.gz}"; base="${base%.gz}" ;;
      *) cp "$src" "$dest/$base" ;;
    esac
    echo "$base" >>"$dest/load-order"
  done
}

# write_cpio STAGE OUT EPOCH: a reproducible newc archive (sorted, owner 0:0, fixed mtimes).
write_cpio() {
  local stage="$1" out="$2" epoch="$3"
  find "$stage" -exec touch -h -d "@$epoch" {} +
  (cd "$stage" && find . -mindepth 1 -print | LC_ALL=C sort |
     cpio --quiet -o -H newc -R 0:0 --reproducible) >"$out.tmp"
  mv "$out.tmp" "$out"
}
