--
-- install: CREATE EXTENSION tcc installs only into a schema of its own.
--
-- tcc.control names schema tcc, and PostgreSQL would install into one that
-- exists already, whoever made it: a role that owns a database could make
-- it before a superuser installs tcc there, and plant an overload that the
-- install script or a superuser reading the views would then run.  Each
-- case makes such a schema in a fresh database and shows that CREATE
-- EXTENSION refuses it and leaves nothing behind; then that the schema
-- pg_dump writes before the extension (empty, the installer's) is fine.
--
\set regress_db :DBNAME
CREATE ROLE regress_tcc_tenant LOGIN;
CREATE DATABASE regress_tcc_install OWNER regress_tcc_tenant;
\c regress_tcc_install
-- the tenant makes the schema and plants a more exact overload
SET ROLE regress_tcc_tenant;
CREATE SCHEMA tcc;
CREATE FUNCTION tcc.is_visible(owner regrole) RETURNS boolean
LANGUAGE sql AS 'SELECT true';
RESET ROLE;
CREATE EXTENSION tcc;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS tcc_extensions FROM pg_extension WHERE extname = 'tcc';
-- owned by the installer now, but not empty: still refused
ALTER SCHEMA tcc OWNER TO CURRENT_USER;
CREATE EXTENSION tcc;
\echo :LAST_ERROR_SQLSTATE
-- empty, but others may create objects in it: refused
DROP FUNCTION tcc.is_visible(regrole);
GRANT CREATE ON SCHEMA tcc TO regress_tcc_tenant;
CREATE EXTENSION tcc;
\echo :LAST_ERROR_SQLSTATE
-- a schema of a role other than the installer, even empty: refused
DROP SCHEMA tcc;
CREATE SCHEMA tcc AUTHORIZATION regress_tcc_tenant;
CREATE EXTENSION tcc;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS tcc_functions
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'tcc';
-- what pg_dump writes: an empty schema of the installer, then the extension
DROP SCHEMA tcc;
CREATE SCHEMA tcc;
CREATE EXTENSION tcc;
SELECT extname, extowner::regrole FROM pg_extension WHERE extname = 'tcc';
-- the check itself is not left behind, nor callable outside the script
SELECT count(*) AS check_functions FROM pg_proc
 WHERE proname = 'check_install_schema';
-- the views call tcc's own function, by its exact argument type
SELECT pg_get_viewdef('tcc.transactions'::regclass) ~
	   'tcc\.is_visible\(\(g\.owner\)::oid\)' AS exact_call;
-- the fence is not for everybody
SELECT has_function_privilege('regress_tcc_tenant',
							  'tcc.fence_try(text, text)', 'EXECUTE')
	   AS tenant_may_fence;
\c :regress_db
DROP DATABASE regress_tcc_install;
DROP ROLE regress_tcc_tenant;
