#!/usr/bin/env bash
# podnet.sh: set up podnet on a fresh Debian 12 machine (as root, with only bash and apt) and run it.
#
#   ./podnet.sh demo      install, then bring up the default lab inside a sandbox and show it
#   ./podnet.sh test      install with test tools, then lint, type-check and run every test
#   ./podnet.sh bench     install, then run the benchmarks in bench/
#   ./podnet.sh sandbox [CMD...]   run CMD (default: a shell) in a fresh sandbox with podnet on PATH
#
# The sandbox is a new network, mount and PID namespace with private tmpfs on /run: the lab never
# touches this machine's own interfaces, and every process it starts ends with the sandbox.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv=${PODNET_VENV:-/opt/podnet/venv}
runtime_pkgs=(python3 python3-venv iproute2 nftables python3-nftables curl procps util-linux tcpdump)
test_pkgs=(containernetworking-plugins containerd runc busybox-static iperf3 iptables gcc libc6-dev
           chromium dnsmasq-base dnsperf)
bench_pkgs=(mininet bridge-utils)  # bench/scale.py's reference; no test needs them

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "podnet.sh: run as root: podnet builds network namespaces and veth pairs" >&2
    exit 1
  fi
}

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  apt-get update -qq
  # Debian's postinst would start containerd as a machine-wide service: tests run their own.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
}

setup() {
  local extra=${1:-}
  need_root
  apt_install "${runtime_pkgs[@]}"
  [ "$extra" = dev ] && apt_install "${test_pkgs[@]}"
  if [ ! -x "$venv/bin/python" ]; then
    log "creating $venv"
    mkdir -p "$(dirname "$venv")"
    /usr/bin/python3 -m venv "$venv"
  fi
  local spec="$here"
  [ "$extra" = dev ] && spec="$here[dev]"
  # (Re)install when podnet is missing, installed from another checkout, or test tools are wanted.
  local where
  where=$("$venv/bin/python" -c 'import podnet; print(podnet.__file__)' 2>/dev/null || true)
  if [ "$where" != "$here/src/podnet/__init__.py" ] || [ "$extra" = dev ]; then
    log "installing podnet into $venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -e "$spec"
  fi
}

# Run "$@" in a fresh network + mount + PID namespace with private tmpfs on /run.
sandbox() {
  PATH="$venv/bin:$PATH" unshare --net --mount --pid --fork --mount-proc --propagation private -- \
    bash -c 'mount -t tmpfs -o mode=755 tmpfs /run && mkdir -p /run/netns /run/podnet &&
             ip link set lo up && export PODNET_SANDBOX=1 && "$@"' sandbox "$@"
}

demo_script() {
  cat <<'DEMO'
set -e
step() { printf '\n\033[1m$ %s\033[0m\n' "$1"; eval "$1"; }
step 'podnet up'
step 'podnet get nodes'
step 'podnet get pods -o wide'
step 'podnet exec jumpbox -- curl -s http://localhost:80 | grep "<h1>"'
demo=$(podnet get pods -n dev -o name | head -1)
step "podnet exec -n dev $demo -- grep -v ip6 /etc/hosts"
jump_ip=$(podnet get pods jumpbox -o 'jsonpath={.status.podIP}')
far=$(podnet get pods -n dev -o 'jsonpath={.items[*].metadata.name}' | tr ' ' '\n' |
      while read -r p; do [ "$(podnet get pods "$p" -o 'jsonpath={.spec.nodeName}')" = kind-worker2 ] && echo "$p"; done | head -1)
step "podnet exec -n dev $far -- curl -s http://$jump_ip:80 | grep '<h1>'"
step 'podnet node-exec kind-worker -- ip netns list'
step 'podnet node-exec kind-worker -- ip address | grep "inet "'
step 'podnet get links'
step 'podnet exec jumpbox -- curl -s http://demo.dev | grep "<h1>"'
step 'podnet check | tail -3'
step 'podnet explain | head -24'
if [ -t 0 ]; then
  printf '\nYou are in podnet'"'"'s sandbox with the lab up: try podnet exec, podnet explain.\n'
  printf 'Leave with `exit`: the sandbox and everything in it go away.\n'
  bash -i || true
fi
step 'podnet down'
DEMO
}

case "${1:-}" in
  demo)
    setup
    sandbox bash -c "$(demo_script)"
    ;;
  test)
    shift
    setup dev
    cd "$here"
    log "ruff"; "$venv/bin/ruff" check src tests bench
    log "mypy --strict"; "$venv/bin/mypy"
    log "pytest (inside a sandbox)"
    sandbox "$venv/bin/python" -m pytest "$@"
    ;;
  bench)
    shift
    setup dev
    apt_install "${bench_pkgs[@]}"
    cd "$here"
    sandbox "$venv/bin/python" bench/run.py "$@"
    ;;
  sandbox)
    shift
    setup
    if [ $# -eq 0 ]; then set -- bash -i; fi
    sandbox "$@"
    ;;
  *)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
