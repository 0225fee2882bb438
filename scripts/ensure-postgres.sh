#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on 127.0.0.1:5432 for Lethe's tests and
# `lethe dev`: starts the Debian cluster when it is installed but stopped, and
# installs PostgreSQL from Debian's packages when it is missing altogether.
set -euo pipefail

host=127.0.0.1
port=5432

ready() {
	if command -v pg_isready >/dev/null 2>&1; then
		pg_isready -q -h "$host" -p "$port"
	else
		(exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
	fi
}

if ready; then
	exit 0
fi

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
	if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
		echo "PostgreSQL is not reachable at $host:$port and cannot be installed here: install PostgreSQL 15+ with trust auth for user postgres, or set LETHE_TEST_DATABASE_URL" >&2
		exit 1
	fi
	echo "installing PostgreSQL from Debian's packages..." >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq postgresql >/dev/null
fi

version=$(ls /etc/postgresql | sort -V | tail -n1)
conf=/etc/postgresql/$version/main
# Local development and CI use trust auth on loopback, as the project's
# machines do; a production database is configured by its operators instead.
if ! grep -q "^host all all 127.0.0.1/32 trust" "$conf/pg_hba.conf" 2>/dev/null; then
	if [ -w "$conf/pg_hba.conf" ]; then
		sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\nlocal all all trust' "$conf/pg_hba.conf"
	fi
fi
pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || pg_ctlcluster "$version" main start || true

for _ in $(seq 1 30); do
	if ready; then
		exit 0
	fi
	sleep 1
done
echo "PostgreSQL did not become ready at $host:$port" >&2
exit 1
