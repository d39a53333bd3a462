# shellcheck shell=bash
# A private Python venv for the packaging tools that come from PyPI (zig as a musl
# toolchain, oelint-adv). Pinned, so CI results do not move under us. Sourced.

PACK_TOOLS_DIR=${EDGEWIRE_PACKAGING_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/edgewire-packaging}
PACK_VENV=$PACK_TOOLS_DIR/venv
PACK_PIP_PINS=(ziglang==0.17.0 oelint-adv==9.11.2)

# pack_venv_ensure: creates the venv and installs the pins when one is missing.
pack_venv_ensure() {
  local want have
  want=$(printf '%s\n' "${PACK_PIP_PINS[@]}")
  have=$(cat "$PACK_VENV/.pins" 2>/dev/null || true)
  [ -x "$PACK_VENV/bin/python" ] && [ "$want" = "$have" ] && return 0
  echo "tools: installing ${PACK_PIP_PINS[*]} into $PACK_VENV" >&2
  cross_apt_ensure python3 python3-venv
  python3 -m venv "$PACK_VENV" >&2
  "$PACK_VENV/bin/pip" install -q --disable-pip-version-check "${PACK_PIP_PINS[@]}" >&2
  printf '%s\n' "$want" >"$PACK_VENV/.pins"
}
