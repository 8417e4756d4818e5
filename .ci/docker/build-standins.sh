#!/usr/bin/env bash
# Build local stand-ins for python:3.11-slim, postgres:16 and nginx on a machine that
# cannot reach Docker Hub:
#   ci/debian-minbase:bookworm  debootstrap --variant=minbase bookworm + docker import
#   ci/python:3.11-slim         python3 (3.11) + pip + venv, host CA certs, not externally managed
#   ci/postgres:15              Debian postgresql-15 with an official-image-like entrypoint
#   ci/nginx:1.22               Debian nginx (+ curl) for the reverse proxy (docker/proxy/proxy.sh)
# Usage: bash .ci/docker/build-standins.sh   (needs root, dockerd running, debootstrap)
# Set FORCE_STANDINS=1 to rebuild images that already exist.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

DEBIAN_BASE="${DEBIAN_BASE:-ci/debian-minbase:bookworm}"
PYTHON_STANDIN="${PYTHON_STANDIN:-ci/python:3.11-slim}"
POSTGRES_STANDIN="${POSTGRES_STANDIN:-ci/postgres:15}"
NGINX_STANDIN="${NGINX_STANDIN:-ci/nginx:1.22}"
CA_DIR="${CA_DIR:-/usr/local/share/ca-certificates}"

have_image() { [ "${FORCE_STANDINS:-0}" != 1 ] && docker image inspect "$1" >/dev/null 2>&1; }

# The Debian mirror this host's apt already uses (deb822 .sources or one-line .list).
debian_mirror() {
    local uri=""
    if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
    shopt -s nullglob
    for f in /etc/apt/sources.list.d/*.sources; do
        uri="$(awk '/^URIs:/ {for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) {print $i; exit}}' "$f")"
        [ -n "$uri" ] && break
    done
    if [ -z "$uri" ]; then
        for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
            [ -f "$f" ] || continue
            uri="$(awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file):\/\/.*\/debian\/?$/) {print $i; exit}}' "$f")"
            [ -n "$uri" ] && break
        done
    fi
    shopt -u nullglob
    if [ -z "$uri" ]; then
        echo "build-standins: cannot find a Debian mirror in /etc/apt; set DEBIAN_MIRROR" >&2
        return 1
    fi
    echo "$uri"
}

if have_image "$DEBIAN_BASE"; then
    echo "build-standins: $DEBIAN_BASE exists"
else
    mirror="$(debian_mirror)"
    rootfs="$(mktemp -d /tmp/ci-rootfs.XXXXXX)"
    echo "build-standins: debootstrap --variant=minbase bookworm from $mirror"
    if ! debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" "$mirror" >/tmp/ci-debootstrap.log 2>&1; then
        tail -30 /tmp/ci-debootstrap.log >&2
        rm -rf "$rootfs"
        exit 1
    fi
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$DEBIAN_BASE" >/dev/null
    rm -rf "$rootfs"
    echo "build-standins: imported $DEBIAN_BASE"
fi

ctx="$(mktemp -d /tmp/ci-standin-ctx.XXXXXX)"
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/ca"
shopt -s nullglob
for crt in "$CA_DIR"/*.crt; do cp "$crt" "$ctx/ca/"; done
shopt -u nullglob
cp "$here/python-standin.Dockerfile" "$here/postgres-standin.Dockerfile" "$here/postgres-entrypoint.sh" \
    "$here/nginx-standin.Dockerfile" "$ctx/"

# build_standin IMAGE DOCKERFILE: build IMAGE from the context unless it exists.
build_standin() {
    if have_image "$1"; then
        echo "build-standins: $1 exists"
    else
        echo "build-standins: building $1"
        DOCKER_BUILDKIT=0 docker build -q --build-arg DEBIAN_BASE="$DEBIAN_BASE" \
            -f "$ctx/$2" -t "$1" "$ctx"
    fi
}
build_standin "$PYTHON_STANDIN" python-standin.Dockerfile
build_standin "$POSTGRES_STANDIN" postgres-standin.Dockerfile
build_standin "$NGINX_STANDIN" nginx-standin.Dockerfile
docker run --rm "$PYTHON_STANDIN" sh -c 'python --version && pip --version && python -c "import ssl, venv; print(ssl.get_default_verify_paths().cafile or \"\")"'
