-- The read-only role Grafana's data source connects as (README, "Grafana (optional)").
-- Run as the postgres superuser once the schema is migrated, and again after an upgrade
-- whose migration adds tables the dashboards read; it is idempotent:
--
--   kubectl -n sensormesh exec -i timescaledb-0 -- psql --no-psqlrc -v ON_ERROR_STOP=1 \
--     -U postgres -d sensormesh -v grafana_password="$GRAFANA_DB_PASSWORD" \
--     < k8s/components/grafana/grafana_role.sql
--
-- SELECT only, on what the dashboards read, and on every column of `devices` but its
-- token hash. No default privileges: readings partitions (plain PostgreSQL) and chunks
-- (TimescaleDB) are read through their parent table, whose grant is the one PostgreSQL
-- checks, and the continuous aggregates read their materialisation as their owner. A new
-- table of a future migration is not readable until this script runs again, which is
-- the point: nothing is exposed to dashboards without being listed here.
\set ON_ERROR_STOP on
\if :{?grafana_role}
\else
  \set grafana_role sensormesh_grafana
\endif

SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS', :'grafana_role')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'grafana_role') \gexec
\if :{?grafana_password}
  ALTER ROLE :"grafana_role" PASSWORD :'grafana_password';
\endif
-- A dashboard query that runs away stops itself, and holds no snapshot for long.
ALTER ROLE :"grafana_role" SET statement_timeout = '30s';
ALTER ROLE :"grafana_role" SET default_transaction_read_only = on;

SELECT format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), :'grafana_role') \gexec
GRANT USAGE ON SCHEMA public TO :"grafana_role";
GRANT SELECT (device_id, display_name, description, device_type, status, labels, create_time, update_time)
  ON devices TO :"grafana_role";
GRANT SELECT ON upload_offsets, sensors, series, latest_values, alerts, thinning_reports, dead_letters
  TO :"grafana_role";
GRANT SELECT ON
  imu_readings_1m, environment_readings_1m, system_readings_1m, link_health_readings_1m, measurements_1m,
  imu_readings_1h, environment_readings_1h, system_readings_1h, link_health_readings_1h, measurements_1h
  TO :"grafana_role";
