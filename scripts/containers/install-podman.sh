#!/usr/bin/env bash
# Installs what `make images` / `make container-e2e` need on a Docker-less Debian machine:
# podman, runc (crun cannot set rlimits in sandboxes like CI's), catatonit (the pause
# process of `podman kube play` pods) and debootstrap (the stand-in base image). Does
# nothing where they are already present.
set -euo pipefail
missing=()
for tool in podman runc catatonit debootstrap; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
echo "installing ${missing[*]} (apt-get)"
sudo=()
if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends \
  podman runc catatonit debootstrap uidmap fuse-overlayfs slirp4netns containernetworking-plugins \
  ca-certificates >/dev/null
