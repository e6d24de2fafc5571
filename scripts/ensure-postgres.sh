#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on 127.0.0.1:5432 with the access the tests, the
# demos and CI use: the `postgres` user over TCP on 127.0.0.1 and ::1 with `trust`
# (postgres://postgres@127.0.0.1:5432, no password). Installs Debian's `postgresql` when no
# server is installed, creates and starts its cluster when it is down, and writes the access
# rule once. Idempotent; every script that needs the database calls it.
#   PGHOST_FOR_TESTS  the address to check (default 127.0.0.1)
set -euo pipefail
host=${PGHOST_FOR_TESTS:-127.0.0.1}

can_connect() {
  psql "postgres://postgres@$host:5432/postgres" -qAtX -c 'SELECT 1' >/dev/null 2>&1
}
if command -v psql >/dev/null && can_connect; then
  exit 0
fi

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  echo "installing PostgreSQL (Debian's postgresql package, once per machine) ..." >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-contrib >/dev/null
fi
version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if ! pg_lsclusters -h 2>/dev/null | awk '{print $1, $2}' | grep -qx "$version main"; then
  echo "creating the PostgreSQL $version cluster 'main' ..." >&2
  pg_createcluster "$version" main >/dev/null
fi
conf_dir=/etc/postgresql/$version/main
hba=$conf_dir/pg_hba.conf
# The tests' access: trust for postgres on loopback TCP, ahead of the package's own rules
# (which ask loopback TCP for a password). Written once, marked so it is not written twice.
if ! grep -q 'reportjob: loopback trust' "$hba"; then
  tmp=$(mktemp)
  {
    echo "# reportjob: loopback trust for the tests and demos (scripts/ensure-postgres.sh)"
    echo "host all all 127.0.0.1/32 trust"
    echo "host all all ::1/128 trust"
    echo "host replication all 127.0.0.1/32 trust"
    cat "$hba"
  } > "$tmp"
  cat "$tmp" > "$hba"
  rm -f "$tmp"
fi
status=$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" { print $4 }')
if [ "$status" = online ]; then
  pg_ctlcluster --skip-systemctl-redirect "$version" main reload
else
  echo "starting PostgreSQL $version ..." >&2
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
fi
for _ in $(seq 1 60); do
  can_connect && exit 0
  sleep 0.5
done
echo "error: PostgreSQL $version did not accept postgres@$host:5432 (log: /var/log/postgresql/postgresql-$version-main.log)" >&2
exit 1
