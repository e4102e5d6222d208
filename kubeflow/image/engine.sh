# Sourced by the image scripts: picks the container engine and installs what is missing.
#   ENGINE            docker (when a Docker daemon answers) or podman
#   engine ARGS...    "$ENGINE" ARGS, podman with this project's settings (containers.conf)
#   need_tools CMD... installs the Debian packages of those names when a command is
#                     missing and this is root, else says what is missing and exits
IMAGE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

need_tools() {
  local missing=() tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "missing: ${missing[*]} (Debian packages of the same names): install them as" \
         "root, or run a Docker daemon" >&2
    exit 1
  fi
  echo "installing ${missing[*]} (apt-get)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

pick_engine() {
  if [ -n "${ENGINE:-}" ]; then
    :
  elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    ENGINE=docker
  else
    need_tools podman runc
    ENGINE=podman
  fi
  if [ "$ENGINE" = podman ]; then
    export CONTAINERS_CONF="${CONTAINERS_CONF:-$IMAGE_DIR/containers.conf}"
  fi
  export ENGINE
}

engine() {
  "$ENGINE" "$@"
}

image_exists() {
  engine image inspect "$1" >/dev/null 2>&1
}
