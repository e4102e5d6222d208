#!/usr/bin/env bash
# The stand-in for Beam's SDK image where no container registry can be reached:
# Debian 12 (debootstrap minbase from Debian's mirror) + this machine's Python 3.10 at
# /usr/local, as in the python:3.10-bookworm image Beam's SDK image is built on.
# It lacks Beam's worker boot program (/opt/apache/beam/boot, Go code shipped only in
# Beam's image): the image built on it serves Kubeflow steps and EXTERNAL/LOOPBACK
# Beam workers, not --sdk_container_image / DOCKER workers.
#
#   kubeflow/image/build_base.sh [PYTHON]     prints the base image's name
#
# PYTHON: a Python 3.10 installed under its own prefix (pyenv, python.org or a
# /usr/local build); not Debian's /usr one. Idempotent: the name carries a hash of this
# script and the Python version; an existing image is reused.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/engine.sh"
pick_engine

PYTHON="${1:-python3.10}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# Run-time libraries of CPython's extension modules (ssl, ctypes, sqlite3, lzma, bz2,
# readline, curses, uuid, nis), CA certificates, /etc/services, time zones, and a C/C++
# compiler for the pinned packages PyPI has only as source (pyfarmhash), as Beam's image
# (on python:3.10-bookworm) has.
PACKAGES=ca-certificates,netbase,tzdata,libssl3,libffi8,libsqlite3-0,libbz2-1.0,liblzma5,\
libreadline8,libncursesw6,zlib1g,libuuid1,libnsl2,libtirpc3,libexpat1,g++

read -r PREFIX VERSION < <("$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 10)
print(sys.base_prefix, sys.version.split()[0])' 2>/dev/null) \
  || { echo "$PYTHON is not a Python 3.10 (pass PYTHON=/path/to/python3.10)" >&2; exit 1; }
STDLIB="$PREFIX/lib/python3.10"
if [ "$PREFIX" = /usr ] || [ ! -f "$STDLIB/os.py" ] || [ ! -x "$PREFIX/bin/python3.10" ]; then
  echo "$PYTHON ($PREFIX) is not a self-contained Python 3.10 install (pyenv, python.org" \
       "or ./configure --prefix builds are): cannot copy it into the stand-in base" >&2
  exit 1
fi

KEY=$(sha256sum < "${BASH_SOURCE[0]}" | cut -c1-12)
TAG="localhost/bert-text-pipeline-base:bookworm-py$VERSION-$KEY"
if image_exists "$TAG"; then
  echo "$TAG"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "the stand-in base needs root (debootstrap): run as root, or give BASE_IMAGE" >&2
  exit 1
fi
need_tools debootstrap

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bert-base.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROOTFS="$WORK/rootfs"
echo "debootstrap bookworm ($MIRROR) into $ROOTFS" >&2
debootstrap --variant=minbase --include="$PACKAGES" bookworm "$ROOTFS" "$MIRROR" \
  > "$WORK/debootstrap.log" 2>&1 || { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*

echo "Python $VERSION from $PREFIX -> /usr/local" >&2
LOCAL="$ROOTFS/usr/local"
mkdir -p "$LOCAL/bin" "$LOCAL/lib" "$LOCAL/include"
cp -a "$PREFIX/bin/python3.10" "$LOCAL/bin/"
cp -a "$PREFIX"/lib/libpython3*.so* "$LOCAL/lib/" 2>/dev/null || true  # shared builds only
cp -a "$PREFIX/include/python3.10" "$LOCAL/include/"
# The standard library without its tests, Tk and IDLE; site-packages starts empty (the
# installer's own packages and .pth files stay on this machine).
tar -C "$PREFIX/lib" --exclude=python3.10/site-packages --exclude=python3.10/test \
  --exclude=python3.10/tkinter --exclude=python3.10/idlelib --exclude=python3.10/turtledemo \
  --exclude='python3.10/lib-dynload/_tkinter*' -cf - python3.10 | tar -C "$LOCAL/lib" -xf -
mkdir -p "$LOCAL/lib/python3.10/site-packages"

engine import --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' - "$TAG-rootfs" < <(tar -C "$ROOTFS" -cf - .) >/dev/null
cat > "$WORK/Containerfile" <<EOF
FROM $TAG-rootfs
# pip and setuptools from the standard library's own wheels (no network); every
# extension module of the standard library must load.
RUN ldconfig && ln -s python3.10 /usr/local/bin/python3 && ln -s python3 /usr/local/bin/python \\
 && python3 -m ensurepip --default-pip >/dev/null && ln -sf pip3 /usr/local/bin/pip \\
 && cd /usr/local/lib/python3.10/lib-dynload && python3 -c "import glob, importlib; \\
[importlib.import_module(name.split('.')[0]) for name in glob.glob('*.so')]" \\
 && python3 -c "import ssl, sqlite3, ctypes, lzma, bz2, readline, uuid, zlib; \\
print(ssl.OPENSSL_VERSION)"
EOF
engine build --network=none -t "$TAG" -f "$WORK/Containerfile" "$WORK" >&2
engine rmi "$TAG-rootfs" >/dev/null
echo "$TAG"
