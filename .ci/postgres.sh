#!/usr/bin/env bash
# Start the machine's PostgreSQL cluster (creating it if needed) and a `companion` role that
# may create the throwaway test databases. Idempotent: safe to run on a machine that has it.
set -euo pipefail
version=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$version main"; then
    pg_createcluster "$version" main >/dev/null
fi
if ! pg_lsclusters -h | awk -v v="$version" '$1==v && $2=="main" {print $4}' | grep -qx online; then
    pg_ctlcluster "$version" main start
fi
for _ in $(seq 1 30); do
    su postgres -c "pg_isready -q -h 127.0.0.1 -p 5432" && break
    sleep 1
done
su postgres -c "psql -q -v ON_ERROR_STOP=1 -h /var/run/postgresql" <<'SQL'
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'companion') THEN
    CREATE ROLE companion LOGIN CREATEDB PASSWORD 'companion';
  END IF;
END
$$;
SQL
