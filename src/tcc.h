/*-------------------------------------------------------------------------
 *
 * tcc.h
 *	  Declarations shared by the files of the tcc extension.
 *
 * src/tcc.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TCC_H
#define TCC_H

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/timestamp.h"

/* Longest gid or branch id, in bytes (SPEC section 8) */
#define TCC_MAX_ID_LEN		128

/* settings, defined in tcc.c */
extern int	tcc_default_timeout;

/*
 * A privileged SPI session: tcc's tables are private, so the functions that
 * read and write them run their SQL as the owner of the tcc schema, with a
 * search_path that user code cannot redirect.  See tcc_spi.c.
 */
typedef struct TccSpiSession
{
	Oid			caller;			/* the role that called the SQL function */
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
} TccSpiSession;

/* tcc_spi.c */
extern void tcc_spi_begin(TccSpiSession *session);
extern void tcc_spi_end(TccSpiSession *session);
extern uint64 tcc_spi_exec(SPIPlanPtr *plan, const char *sql, int nargs,
						 Oid *argtypes, Datum *values, const char *nulls,
						 bool read_only, long count);
extern char *tcc_spi_getstring(int row, int col);
extern char *tcc_spi_strdup(const char *str);
extern Datum tcc_spi_getdatum(int row, int col, bool *isnull);

/* args.c */
extern char *tcc_check_id(text *id, const char *what, bool may_generate);
extern char *tcc_id_arg(FunctionCallInfo fcinfo, int argno, const char *what);
extern char *tcc_generate_gid(void);
extern void tcc_check_not_null(FunctionCallInfo fcinfo, int argno,
							   const char *argname);
extern void tcc_check_interval(Interval *interval, const char *argname,
							   bool allow_zero);

/* shmem.c */
extern void tcc_shmem_request(void);
extern void tcc_shmem_startup(void);

#endif							/* TCC_H */
