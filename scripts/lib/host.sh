# shellcheck shell=bash
# What the scripts need from the machine they run on: root when they need it, Rust on
# PATH, and the Debian packages of scripts/packages (the one list of them). Sourced.

HOST_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HOST_PACKAGES=$HOST_LIB_DIR/../packages

# as_root CMD...: runs CMD as root: directly when we are root, else through sudo with
# PATH kept (sudo's secure_path would hide cargo and rustup in ~/.cargo/bin).
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  else
    sudo --preserve-env env "PATH=$PATH" "$@"
  fi
}

# rust_on_path: finds cargo when PATH lacks it, as under `sudo scripts/...` (secure_path)
# or a login shell that did not read rustup's env file: the invoking user's
# ~/.cargo/bin first, then our own. Fails with what to install when there is none.
rust_on_path() {
  command -v cargo >/dev/null 2>&1 && return 0
  local home dir
  for home in ${SUDO_USER:+"$(getent passwd "$SUDO_USER" | cut -d: -f6)"} "$HOME"; do
    dir=${CARGO_HOME:-$home/.cargo}/bin
    if [ -x "$dir/cargo" ]; then
      export PATH="$dir:$PATH"
      # rustup keeps its toolchains beside the user's cargo, not root's.
      [ -n "${RUSTUP_HOME:-}" ] || [ ! -d "$home/.rustup" ] || export RUSTUP_HOME=$home/.rustup
      return 0
    fi
  done
  echo "cargo not found: install Rust >= 1.88 with rustup (https://rustup.rs) first" >&2
  return 1
}

# host_packages GROUP...: the packages of scripts/packages in any of the groups.
host_packages() {
  local groups=" $* "
  awk '!/^[[:space:]]*(#|$)/ { print $1, $3 }' "$HOST_PACKAGES" |
    while read -r pkg gs; do
      for g in ${gs//,/ }; do
        if [[ $groups == *" $g "* ]]; then echo "$pkg"; break; fi
      done
    done
}

# host_probe PACKAGE: the probe column of PACKAGE, or nothing when it is not listed.
host_probe() {
  awk -v p="$1" '!/^[[:space:]]*#/ && $1 == p { print $2; found = 1 } END { exit !found }' "$HOST_PACKAGES"
}

_host_installed() {
  local p=$1 probe=$2
  case "$probe" in
    -) ;;
    /*) [ -e "$probe" ] && return 0 ;;
    *) command -v "$probe" >/dev/null 2>&1 && return 0 ;;
  esac
  # A command can live in sbin, outside a non-root PATH: ask dpkg too.
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'
}

# host_ensure PACKAGE...: installs those of the packages that are missing. Every one
# must be listed in scripts/packages: no script installs anything the list does not name.
host_ensure() {
  local missing=() p probe
  for p in "$@"; do
    probe=$(host_probe "$p") ||
      { echo "host: $p is not in scripts/packages: add it there (with a probe and a group)" >&2; return 1; }
    _host_installed "$p" "$probe" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "host: apt-get install ${missing[*]}" >&2
  as_root apt-get update -q >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
  # The Debian packages start daemons we do not want: the lab runs its own instances in
  # namespaces.
  for p in nginx coturn; do
    [[ " ${missing[*]} " == *" $p "* ]] || continue
    if [ -d /run/systemd/system ]; then
      as_root systemctl disable --now "$p" >/dev/null 2>&1 || true
    elif command -v invoke-rc.d >/dev/null 2>&1; then
      as_root invoke-rc.d "$p" stop >/dev/null 2>&1 || true
    fi
  done
}
