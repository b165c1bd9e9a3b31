#!/bin/sh
# Creates the role sensormesh runs as. The timescale/timescaledb image runs the
# scripts in /docker-entrypoint-initdb.d once, when the data volume is first
# initialised, after its own scripts have created $POSTGRES_DB and the
# timescaledb extension in it (000_install_timescaledb.sh) and tuned the server
# to the container's memory and CPUs (001_timescaledb_tune.sh).
#
# The services and the migration Job connect as this role, not as the
# superuser: it owns the database (and so its public schema and every table
# the migrations create), which is all that hypertables, compression,
# retention policies and continuous aggregates need. The extension itself was
# created by the superuser, so `CREATE EXTENSION IF NOT EXISTS timescaledb` in
# the migration is a no-op, and `ALTER EXTENSION timescaledb UPDATE` after an
# image upgrade is the operator's job, as the superuser.
#
# Environment (set by the StatefulSet):
#   POSTGRES_USER, POSTGRES_DB   the image's superuser and database
#   SENSORMESH_DB_USER           the role to create (default sensormesh)
#   SENSORMESH_DB_PASSWORD       its password: the sensormesh-database Secret's
#                                `password`, the one inside its `url`
set -eu

: "${SENSORMESH_DB_PASSWORD:?must be set from the sensormesh-database Secret (key password)}"

psql --no-psqlrc -v ON_ERROR_STOP=1 \
    --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set=app_user="${SENSORMESH_DB_USER:-sensormesh}" \
    --set=app_password="$SENSORMESH_DB_PASSWORD" \
    --set=db="$POSTGRES_DB" <<'SQL'
CREATE ROLE :"app_user" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'app_password';
ALTER DATABASE :"db" OWNER TO :"app_user";
-- PostgreSQL 15+ gives the public schema to the database owner; say so for older servers too.
ALTER SCHEMA public OWNER TO :"app_user";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO :"app_user";
SQL
