#!/bin/bash
# Creates the read-only login role that the explorer and the API use, and makes
# every table and view that the owner ($POSTGRES_USER, used by the loader)
# creates later readable by it.
# Runs by itself once, when the PostgreSQL data volume is first initialised
# (this folder is mounted at /docker-entrypoint-initdb.d). Safe to run again,
# e.g. after changing CENSUS_READER_PASSWORD in .env (see README.md, "Operating with Docker"):
#   docker compose exec db /docker-entrypoint-initdb.d/10-readonly-role.sh
set -euo pipefail
: "${CENSUS_READER_PASSWORD:?CENSUS_READER_PASSWORD must be set (see .env.example)}"
reader="${CENSUS_READER_USER:-census_reader}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set reader="$reader" --set reader_pw="$CENSUS_READER_PASSWORD" \
    --set owner="$POSTGRES_USER" --set db="$POSTGRES_DB" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'reader')
    WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'reader') \gexec
ALTER ROLE :"reader" LOGIN PASSWORD :'reader_pw' NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
ALTER ROLE :"reader" SET default_transaction_read_only = on;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT CONNECT ON DATABASE :"db" TO :"reader";
GRANT USAGE ON SCHEMA public TO :"reader";
GRANT SELECT ON ALL TABLES IN SCHEMA public TO :"reader";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT SELECT ON TABLES TO :"reader";
SQL
echo "read-only role $reader is ready"
