/*-------------------------------------------------------------------------
 *
 * participant.c
 *	  Participants as foreign servers: the tcc_fdw validator, and every
 *	  check that a transaction's owner may reach a participant (the server,
 *	  USAGE on it, the owner's user mapping, the password rule), and the
 *	  connection options that keep an owner to its own credentials.
 *
 * The checks are made when a branch is registered (register.c, also for
 * CALL tcc.try), again when the worker or CALL tcc.try connects
 * (remote_connect.c), and when a due branch's server is looked up (dispatch.c,
 * try.c): the server or the mapping may change in between.  Each check
 * fills in a TccRefusal instead of raising an error, because phase two
 * records a refusal on the branch rather than raising it; registration
 * raises it with tcc_refuse.  So each failure has one SQLSTATE and one
 * wording wherever it is found.
 *
 * A participant is CREATE SERVER ... FOREIGN DATA WRAPPER tcc_fdw with the
 * libpq options that say where it is (host, port, dbname, sslmode ...),
 * plus a user mapping per owning role with the credentials (user,
 * password, and the client certificate options).  The split is the same as
 * postgres_fdw's, so that the owner of a server cannot see or set another
 * role's password, and the validator refuses an option in the wrong place
 * when it is set rather than at the first phase two.
 *
 * tcc_fdw has no handler: it defines no foreign tables, only participants.
 *
 * Credentials.  The worker connects in the server's processes, whose OS
 * account may hold the participant's keys: a password file (~/.pgpass or
 * PGPASSFILE), a service file, PGPASSWORD, client certificates.  A role
 * that is not a superuser must connect with its own credentials only, so
 * mapping_password_ok (checked when a branch is registered and again
 * at every connect) requires a non-empty password in its user mapping: an
 * empty one is no password to libpq, which would then go looking in those
 * places.  With a password given, libpq consults neither the password
 * file nor PGPASSWORD nor a service file for it.  The connection must then
 * also have used that password (see remote_connect.c), and it takes no client
 * certificate nor Kerberos ticket of the server's either
 * (tcc_participant_no_borrowed_credentials).  sslcert and sslkey name
 * files that the server reads with its own OS rights, so only superusers
 * may put them on a user mapping, as with postgres_fdw.
 *
 * src/participant.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/reloptions.h"
#include "catalog/pg_foreign_data_wrapper.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_user_mapping.h"
#include "commands/defrem.h"
#include "fmgr.h"
#include "foreign/foreign.h"
#include "lib/stringinfo.h"
#include "libpq-fe.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/syscache.h"

#include "tcc.h"

PG_FUNCTION_INFO_V1(tcc_fdw_validator);

/* options that belong on the user mapping, not on the server */
static const char *const user_mapping_options[] = {
	"user", "password", "sslpassword", "sslcert", "sslkey", NULL
};

/*
 * Options of libpq that tcc sets itself or that make no sense for a
 * participant: the encoding follows the database's, the application name
 * is "tcc" unless the server sets application_name, tcc.connect_timeout
 * bounds connecting, and a replication connection cannot run SQL actions.
 */
static const char *const reserved_options[] = {
	"client_encoding", "fallback_application_name", "connect_timeout",
	"replication", NULL
};

/*
 * in_list
 *		Whether name is one of the NULL-terminated list.
 */
static bool
in_list(const char *name, const char *const *list)
{
	for (; *list != NULL; list++)
	{
		if (strcmp(name, *list) == 0)
			return true;
	}
	return false;
}

/*
 * is_libpq_option
 *		Whether name is a libpq connection option that a user may set
 *		(debug options are not).
 */
static bool
is_libpq_option(const char *name)
{
	static PQconninfoOption *libpq_options = NULL;
	PQconninfoOption *opt;

	if (libpq_options == NULL)
	{
		libpq_options = PQconndefaults();
		if (libpq_options == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_OUT_OF_MEMORY),
					 errmsg("out of memory"),
					 errdetail("Could not get libpq's default connection "
							   "options.")));
	}

	for (opt = libpq_options; opt->keyword != NULL; opt++)
	{
		if (strcmp(opt->keyword, name) == 0)
			return strchr(opt->dispchar, 'D') == NULL;
	}
	return false;
}

/*
 * is_valid_option
 *		Whether option name may be set on an object of catalog.
 */
static bool
is_valid_option(const char *name, Oid catalog)
{
	if (!is_libpq_option(name) || in_list(name, reserved_options))
		return false;
	if (catalog == UserMappingRelationId)
		return in_list(name, user_mapping_options);
	if (catalog == ForeignServerRelationId)
		return !in_list(name, user_mapping_options);
	return false;
}

/*
 * valid_options_hint
 *		The options valid on catalog, for a hint.
 */
static char *
valid_options_hint(Oid catalog)
{
	PQconninfoOption *options = PQconndefaults();
	PQconninfoOption *opt;
	StringInfoData buf;

	initStringInfo(&buf);
	for (opt = options; opt != NULL && opt->keyword != NULL; opt++)
	{
		if (is_valid_option(opt->keyword, catalog))
			appendStringInfo(&buf, "%s%s", buf.len > 0 ? ", " : "",
							 opt->keyword);
	}
	if (options != NULL)
		PQconninfoFree(options);
	return buf.data;
}

/*
 * check_option_privilege
 *		Refuse sslcert and sslkey on a user mapping unless a superuser sets
 *		them: they name files the server reads with its own OS rights (its
 *		own client key, say), which would lend those to the mapping's role.
 *
 * As in postgres_fdw, a user may still clear them (ALTER ... DROP), since
 * the validator cannot see the options it is not given.
 */
static void
check_option_privilege(const char *name, Oid catalog)
{
	if (catalog == UserMappingRelationId &&
		(strcmp(name, "sslcert") == 0 || strcmp(name, "sslkey") == 0) &&
		!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only superusers may set option \"%s\" on a user "
						"mapping", name),
				 errdetail("It names a file that the server reads with its "
						   "own operating-system rights."),
				 errhint("Ask a superuser to create or alter the user "
						 "mapping.")));
}

/*
 * tcc_fdw_validator
 *		Check the options of tcc_fdw itself (none), of a participant server
 *		and of a user mapping for one.
 */
Datum
tcc_fdw_validator(PG_FUNCTION_ARGS)
{
	List	   *options = untransformRelOptions(PG_GETARG_DATUM(0));
	Oid			catalog = PG_GETARG_OID(1);
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);
		char	   *name = tcc_clip(def->defname);

		if (is_valid_option(def->defname, catalog))
		{
			check_option_privilege(def->defname, catalog);
			continue;
		}

		if (catalog == ForeignDataWrapperRelationId)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("invalid option \"%s\"", name),
					 errdetail("Foreign-data wrapper tcc_fdw takes no "
							   "options."),
					 errhint("Set connection options on the server with "
							 "CREATE SERVER ... OPTIONS.")));

		if (catalog == ForeignServerRelationId &&
			in_list(def->defname, user_mapping_options))
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("option \"%s\" belongs on a user mapping",
							name),
					 errdetail("A tcc_fdw server says where the participant "
							   "is; each role's credentials go on its user "
							   "mapping."),
					 errhint("Use CREATE USER MAPPING FOR role SERVER "
							 "server OPTIONS (%s '...').", name)));

		if (catalog == UserMappingRelationId && is_libpq_option(def->defname) &&
			!in_list(def->defname, reserved_options))
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("option \"%s\" belongs on the server",
							name),
					 errdetail("A user mapping holds only a role's "
							   "credentials."),
					 errhint("Use ALTER SERVER ... OPTIONS (ADD %s '...').",
							 name)));

		if (in_list(def->defname, reserved_options))
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("option \"%s\" cannot be set on a tcc "
							"participant", name),
					 errdetail("%s",
							   strcmp(def->defname, "connect_timeout") == 0 ?
							   "The worker bounds connecting by the setting "
							   "tcc.connect_timeout." :
							   strcmp(def->defname, "replication") == 0 ?
							   "A replication connection cannot run "
							   "actions." :
							   "tcc sets it itself: the encoding is the "
							   "database's and the application name "
							   "defaults to tcc."),
					 errhint("Leave the option out.")));

		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("invalid option \"%s\"", name),
				 errhint("Valid options in this context are: %s.",
						 valid_options_hint(catalog))));
	}

	PG_RETURN_VOID();
}

/*
 * tcc_option_named
 *		The DefElem called name in a list of options (of a user mapping, a
 *		server or a utility statement), or NULL.
 */
DefElem *
tcc_option_named(List *options, const char *name)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, name) == 0)
			return def;
	}
	return NULL;
}

/*
 * mapping_options
 *		The options of the user mapping that role userid uses on server
 *		serverid (its own, else PUBLIC's), and its OID in *umid; NIL and
 *		InvalidOid when there is none.
 *
 * Unlike GetUserMapping, a missing mapping is not an error here: the
 * callers report it in their own terms.
 */
static List *
mapping_options(Oid userid, Oid serverid, Oid *umid)
{
	HeapTuple	tuple;
	Datum		datum;
	bool		isnull;
	List	   *options = NIL;

	tuple = SearchSysCache2(USERMAPPINGUSERSERVER, ObjectIdGetDatum(userid),
							ObjectIdGetDatum(serverid));
	if (!HeapTupleIsValid(tuple))
		tuple = SearchSysCache2(USERMAPPINGUSERSERVER,
								ObjectIdGetDatum(InvalidOid),
								ObjectIdGetDatum(serverid));
	if (!HeapTupleIsValid(tuple))
	{
		*umid = InvalidOid;
		return NIL;
	}

	*umid = ((Form_pg_user_mapping) GETSTRUCT(tuple))->oid;
	datum = SysCacheGetAttr(USERMAPPINGUSERSERVER, tuple,
							Anum_pg_user_mapping_umoptions, &isnull);
	if (!isnull)
		options = untransformRelOptions(datum);
	ReleaseSysCache(tuple);

	return options;
}

/*
 * mapping_password_ok
 *		Whether a connection for role owner may be made with the options of
 *		its user mapping: always for a superuser; for any other role only
 *		when the mapping holds a non-empty password (see the file header).
 *
 * Registration (register.c) and every connect (remote_connect.c) ask this, so
 * that a mapping changed in between is caught.
 */
static bool
mapping_password_ok(Oid owner, List *mapping)
{
	DefElem    *password;

	if (superuser_arg(owner))
		return true;
	password = tcc_option_named(mapping, "password");
	return password != NULL && defGetString(password)[0] != '\0';
}

/*
 * refusal
 *		Fill in *r; the texts are palloc'd by the caller's format calls.
 */
static bool
refusal(TccRefusal *r, const char *sqlstate, char *message, char *detail,
		char *hint)
{
	r->sqlstate = sqlstate;
	r->message = message;
	r->detail = detail;
	r->hint = hint;
	return false;
}

/*
 * owner_name
 *		The name of role owner for messages, or a description of it when it
 *		has been dropped.
 */
static char *
owner_name(Oid owner)
{
	char	   *name = GetUserNameFromId(owner, true);

	return name ? name : psprintf("with OID %u", owner);
}

/*
 * tcc_participant_no_borrowed_credentials
 *		Append to the n connection options in keywords and values those
 *		that keep libpq from using credentials of the server's OS account
 *		for an owner that is not a superuser; returns the new count (at
 *		most n + 3).
 *
 * The password is settled already (a non-empty one from the mapping, so
 * libpq reads no password file, PGPASSWORD or service file for it).  But
 * libpq also sends a client certificate of its own finding when the
 * participant asks for one: PGSSLCERT and PGSSLKEY, a service file, or
 * ~/.postgresql/postgresql.crt of the server's OS account.  A participant
 * that wants a password and a certificate (clientcert=verify-ca) would
 * take the server's certificate as the second factor.  So, unless a
 * superuser put sslcert and sslkey on the mapping, they name a file that
 * cannot exist (a path under /dev/null, which libpq takes as "no
 * certificate"); and GSSAPI encryption, which would use the server's
 * Kerberos credentials, is off.
 */
int
tcc_participant_no_borrowed_credentials(List *mapping, const char **keywords,
										const char **values, int n)
{
	static const char *const no_file = "/dev/null/tcc-no-client-certificate";

	if (tcc_option_named(mapping, "sslcert") == NULL)
	{
		keywords[n] = "sslcert";
		values[n++] = no_file;
	}
	if (tcc_option_named(mapping, "sslkey") == NULL)
	{
		keywords[n] = "sslkey";
		values[n++] = no_file;
	}
	keywords[n] = "gssencmode";
	values[n++] = "disable";
	return n;
}

/*
 * tcc_participant_server
 *		Look up participant server name into *server: it must exist and be
 *		a tcc_fdw server.  false, with *r filled in, when it is not.
 */
bool
tcc_participant_server(const char *name, ForeignServer **server,
					   TccRefusal *r)
{
	*server = GetForeignServerByName(name, true);
	if (*server == NULL)
		return refusal(r, "42704",
					   psprintf("server \"%s\" does not exist",
								tcc_clip(name)),
					   NULL,
					   pstrdup("Create the participant with CREATE SERVER "
							   "... FOREIGN DATA WRAPPER tcc_fdw, or pass "
							   "NULL to run the action in this database."));

	if ((*server)->fdwid != get_foreign_data_wrapper_oid("tcc_fdw", false))
	{
		ForeignDataWrapper *fdw = GetForeignDataWrapper((*server)->fdwid);

		return refusal(r, "42809",
					   psprintf("server \"%s\" is not a tcc participant",
								(*server)->servername),
					   psprintf("It uses foreign-data wrapper \"%s\".",
								fdw->fdwname),
					   pstrdup("Create participants with CREATE SERVER ... "
							   "FOREIGN DATA WRAPPER tcc_fdw."));
	}
	return true;
}

/*
 * tcc_participant_usage
 *		Whether owner, which owns global transaction gid, has USAGE on
 *		server; false, with *r filled in, when not.
 *
 * The owner, not the caller, is the one that matters: phase two connects
 * with the owner's user mapping, and a member of the owner's role that
 * registers a branch must not lend the owner a server only the member may
 * use.  The caller has the owner's privileges, so checking the owner covers
 * the caller too.
 */
bool
tcc_participant_usage(Oid owner, const char *gid, ForeignServer *server,
					  TccRefusal *r)
{
	char	   *name;

	if (pg_foreign_server_aclcheck(server->serverid, owner,
								   ACL_USAGE) == ACLCHECK_OK)
		return true;

	name = owner_name(owner);
	return refusal(r, "42501",
				   psprintf("permission denied for foreign server %s",
							server->servername),
				   psprintf("Role %s, which owns global transaction \"%s\", "
							"has no USAGE on it.", name, gid),
				   psprintf("The server's owner can GRANT USAGE ON FOREIGN "
							"SERVER %s TO %s.", server->servername, name));
}

/*
 * tcc_participant_mapping
 *		The options of the user mapping that owner, which owns global
 *		transaction gid, connects to server with (its own, else PUBLIC's),
 *		in *mapping and its OID in *umid; false, with *r filled in, when
 *		there is none, or when the owner is not a superuser and the mapping
 *		has no password (mapping_password_ok; see the file header).
 */
bool
tcc_participant_mapping(Oid owner, const char *gid, ForeignServer *server,
						List **mapping, Oid *umid, TccRefusal *r)
{
	char	   *name;

	*mapping = mapping_options(owner, server->serverid, umid);
	if (OidIsValid(*umid) && mapping_password_ok(owner, *mapping))
		return true;

	name = owner_name(owner);
	if (!OidIsValid(*umid))
		return refusal(r, "42704",
					   psprintf("user mapping for \"%s\" on server \"%s\" "
								"does not exist", name, server->servername),
					   psprintf("The worker connects to the participant as "
								"role %s, which owns global transaction "
								"\"%s\".", name, gid),
					   psprintf("Create it with CREATE USER MAPPING FOR %s "
								"SERVER %s OPTIONS (user '...', password "
								"'...').", name, server->servername));

	return refusal(r, "2F003",
				   psprintf("password is required for role %s on server "
							"\"%s\"", name, server->servername),
				   psprintf("Role %s, which owns global transaction \"%s\", "
							"is not a superuser, and its user mapping has no "
							"password, or an empty one.", name, gid),
				   psprintf("Give it one with ALTER USER MAPPING FOR %s SERVER "
							"%s OPTIONS (ADD password '...'), or SET for an "
							"empty one; the participant must ask for it.",
							name, server->servername));
}

/*
 * tcc_participant_password_unused
 *		Fill in *r for a connection of owner, which owns global transaction
 *		gid, to server that the participant let in without asking for the
 *		mapping's password (trust or peer authentication): for a
 *		non-superuser owner that is borrowing the server's own standing.
 *		Returns false.
 */
bool
tcc_participant_password_unused(Oid owner, const char *gid,
								ForeignServer *server, TccRefusal *r)
{
	char	   *name = owner_name(owner);

	return refusal(r, "2F003",
				   psprintf("server \"%s\" did not ask for the password of "
							"role %s", server->servername, name),
				   psprintf("Role %s, which owns global transaction \"%s\", "
							"is not a superuser; the participant let the "
							"connection in without asking for the password "
							"of its user mapping.", name, gid),
				   pstrdup("Have the participant ask for a password "
						   "(scram-sha-256 in pg_hba.conf) for the mapping's "
						   "user."));
}

/*
 * tcc_refuse
 *		Raise refusal *r as an error.
 */
void
tcc_refuse(TccRefusal *r)
{
	ereport(ERROR,
			(errcode(MAKE_SQLSTATE(r->sqlstate[0], r->sqlstate[1],
								   r->sqlstate[2], r->sqlstate[3],
								   r->sqlstate[4])),
			 errmsg_internal("%s", r->message),
			 r->detail ? errdetail_internal("%s", r->detail) : 0,
			 r->hint ? errhint("%s", r->hint) : 0));
}
