#!/usr/bin/env bash
# Makes sure the PostgreSQL server Lethe's tests and `lethe dev` use answers
# and lets them log in. The server is the one LETHE_TEST_DATABASE_URL names,
# else LETHE_DATABASE_URL, else postgres://postgres@127.0.0.1:5432. A server
# elsewhere is only checked. A loopback one is started when it is installed
# but stopped, and PostgreSQL is installed from Debian's packages when it is
# missing altogether. The script says each change it makes.
set -euo pipefail

url=${LETHE_TEST_DATABASE_URL:-${LETHE_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}}

# The parts of the URL this script needs: user, host and port (query
# parameters, password and database are left to the clients).
rest=${url#*://}
rest=${rest%%/*}
rest=${rest%%\?*}
# Logging in checks the server, not the database, which `lethe dev` and the
# tests create themselves.
query=
if [[ "$url" == *\?* ]]; then
	query="?${url#*\?}"
fi
login_url="${url%%://*}://$rest/postgres$query"
user=postgres
if [[ "$rest" == *@* ]]; then
	user=${rest%%@*}
	user=${user%%:*}
	rest=${rest#*@}
fi
host=${rest%:*}
port=${rest##*:}
if [[ "$host" == "$rest" ]]; then
	port=5432
fi
host=${host:-127.0.0.1}
host=${host#[}
host=${host%]}

say() { echo "ensure-postgres: $*" >&2; }

ready() {
	if command -v pg_isready >/dev/null 2>&1; then
		pg_isready -q -h "$host" -p "$port"
	else
		(exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
	fi
}

# can_login succeeds when the URL's user gets a session; without psql,
# reachability is all that can be checked.
can_login() {
	if ! command -v psql >/dev/null 2>&1; then
		ready
		return
	fi
	psql "$login_url" -X -q -t -c 'select 1' >/dev/null 2>&1
}

wait_until() {
	for _ in $(seq 1 30); do
		if "$@"; then
			return 0
		fi
		sleep 1
	done
	return 1
}

if can_login; then
	exit 0
fi

case "$host" in
127.0.0.1 | localhost | ::1) ;;
*)
	say "cannot log in to PostgreSQL at $host:$port as $user; it is not a local server, so this script changes nothing: check the server and the URL (LETHE_TEST_DATABASE_URL or LETHE_DATABASE_URL)"
	exit 1
	;;
esac

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
	if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
		say "PostgreSQL is not reachable at $host:$port and cannot be installed here (that needs root and apt-get): install PostgreSQL 15+ with trust auth for user postgres on loopback, or set LETHE_TEST_DATABASE_URL"
		exit 1
	fi
	say "installing PostgreSQL from Debian's packages"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq postgresql >/dev/null
fi

version=$(ls /etc/postgresql | sort -V | tail -n1)
conf=/etc/postgresql/$version/main/pg_hba.conf
# Local development and CI use trust auth on loopback, as the project's
# machines do; a production database is configured by its operators instead.
changed_hba=false
if ! grep -q "^host all all 127.0.0.1/32 trust" "$conf" 2>/dev/null; then
	if [ -w "$conf" ]; then
		say "adding trust auth for loopback connections at the top of $conf"
		sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\nlocal all all trust' "$conf"
		changed_hba=true
	else
		say "$conf does not trust loopback connections and is not writable here; logging in may fail"
	fi
fi

if ready; then
	if $changed_hba; then
		say "reloading PostgreSQL $version so that $conf applies"
		pg_ctlcluster --skip-systemctl-redirect "$version" main reload 2>/dev/null || pg_ctlcluster "$version" main reload
	fi
else
	say "starting PostgreSQL $version"
	pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || pg_ctlcluster "$version" main start || true
fi

if ! wait_until ready; then
	say "PostgreSQL did not become ready at $host:$port"
	exit 1
fi
if ! wait_until can_login; then
	say "PostgreSQL answers at $host:$port but user $user cannot log in: check $conf"
	exit 1
fi
