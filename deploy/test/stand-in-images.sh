#!/bin/sh
# Stand-ins for the official base images the container files name, built from Debian packages with
# mmdebstrap, for machines that run podman but cannot pull from a registry. Real users pull the
# official images and never need this. Only images that are missing are built.
set -eu
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

stand_in() {  # name, packages, [podman import --change …]
    name=$1; packages=$2; shift 2
    if podman image exists "$name"; then return 0; fi
    echo "building a stand-in for $name from Debian packages ($packages)"
    nice -n 10 mmdebstrap --quiet --variant=minbase --include="$packages" \
        --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' bookworm "$tmp/rootfs.tar"
    podman import "$@" "$tmp/rootfs.tar" "$name" >/dev/null
    rm -f "$tmp/rootfs.tar"
}

stand_in docker.io/library/python:3.11-slim-bookworm python3,python3-pip,python3-venv,python-is-python3,ca-certificates
stand_in docker.io/library/node:20-bookworm-slim nodejs,npm,ca-certificates
# The official haproxy image reads /usr/local/etc/haproxy/haproxy.cfg and runs as user "haproxy".
stand_in docker.io/library/haproxy:2.6-bookworm haproxy,ca-certificates \
    --change 'USER haproxy' --change 'CMD ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]'
