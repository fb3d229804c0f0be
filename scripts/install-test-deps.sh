#!/usr/bin/env bash
# Installs what the tests need on Debian/Ubuntu, idempotently: curl, squid,
# tinyproxy, openssl (htpasswd hashes for squid), ca-certificates and git.
# Debian's packages start squid/tinyproxy services on install; where a service
# manager exists, they are stopped and disabled (the tests run their own).
set -euo pipefail

packages=(curl squid tinyproxy openssl ca-certificates git)
# A file per package that proves it is installed.
declare -A probe=(
	[curl]=/usr/bin/curl
	[squid]=/usr/sbin/squid
	[tinyproxy]=/usr/bin/tinyproxy
	[openssl]=/usr/bin/openssl
	[ca-certificates]=/etc/ssl/certs/ca-certificates.crt
	[git]=/usr/bin/git
)

missing=()
for p in "${packages[@]}"; do
	[ -e "${probe[$p]}" ] || missing+=("$p")
done
if [ -e /usr/sbin/squid ] && [ ! -x /usr/lib/squid/basic_ncsa_auth ]; then
	missing+=(squid) # the auth helper ships in the squid package
fi

installed_now=0
if [ "${#missing[@]}" -eq 0 ]; then
	echo "install-test-deps: all present (${packages[*]})"
else
	if ! command -v apt-get >/dev/null; then
		echo "install-test-deps: missing ${missing[*]} and no apt-get here; install them by hand" >&2
		exit 1
	fi
	sudo=()
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null || { echo "install-test-deps: not root and no sudo; cannot install ${missing[*]}" >&2; exit 1; }
		sudo=(sudo)
	fi
	echo "install-test-deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	"${sudo[@]}" apt-get update -qq
	"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
	installed_now=1
fi

# Stop and disable the distribution's own squid/tinyproxy services, which would
# otherwise hold ports and memory: always under systemd (which knows exactly
# what runs), and with sysvinit scripts only right after installing (when
# Debian started them), so that nobody else's squid or tinyproxy is touched.
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
for svc in squid tinyproxy; do
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
		if systemctl is-active --quiet "$svc" || systemctl is-enabled --quiet "$svc" 2>/dev/null; then
			echo "install-test-deps: stopping and disabling the $svc service"
			"${sudo[@]}" systemctl disable --now "$svc" || true
		fi
	elif [ "$installed_now" -eq 1 ] && command -v service >/dev/null && [ -x "/etc/init.d/$svc" ]; then
		if "${sudo[@]}" service "$svc" status >/dev/null 2>&1; then
			echo "install-test-deps: stopping the $svc service"
			"${sudo[@]}" service "$svc" stop || true
		fi
		if command -v update-rc.d >/dev/null; then
			"${sudo[@]}" update-rc.d "$svc" disable >/dev/null 2>&1 || true
		fi
	fi
done

for p in "${packages[@]}"; do
	[ -e "${probe[$p]}" ] || { echo "install-test-deps: $p still missing after install" >&2; exit 1; }
done
echo "install-test-deps: ok"
