# Makefile for the tcc extension (PGXS)
#
# make && make install builds and installs it against the PostgreSQL that
# pg_config names.  make installcheck runs the pg_regress, isolation and TAP
# suites, each against a throwaway server that it starts itself with tcc in
# shared_preload_libraries; scripts/test wraps all that for a fresh machine.

MODULE_big = tcc
OBJS = \
	src/action.o \
	src/action_plan.o \
	src/action_sql.o \
	src/args.o \
	src/branch.o \
	src/cancel.o \
	src/coordinator.o \
	src/dispatch.o \
	src/durable.o \
	src/family.o \
	src/fence.o \
	src/global_tx.o \
	src/housekeeping.o \
	src/install.o \
	src/launcher.o \
	src/local.o \
	src/local_pool.o \
	src/outcome.o \
	src/owners.o \
	src/participant.o \
	src/register.o \
	src/remote_conn.o \
	src/remote_connect.o \
	src/remote_pipeline.o \
	src/remote_wait.o \
	src/runner.o \
	src/runner_slots.o \
	src/shmem.o \
	src/shmem_worker.o \
	src/state.o \
	src/tcc.o \
	src/tcc_spi.o \
	src/try.o \
	src/wait.o \
	src/wakeup.o \
	src/worker.o \
	src/worker_status.o

EXTENSION = tcc
DATA = tcc--1.0.sql
PGFILEDESC = "tcc - distributed transactions coordinated by PostgreSQL"

PG_CPPFLAGS = -I$(libpq_srcdir)
SHLIB_LINK_INTERNAL = $(libpq)

REGRESS = api fence errors ownership views modes install
REGRESS_OPTS = --temp-instance=./tmp_check \
	--temp-config=$(srcdir)/test/tcc.conf

ISOLATION = commit-rollback commit-commit register-commit \
	rollback-register submit-add_step begin-begin \
	register-register delete-register \
	fence-try-cancel fence-cancel-try fence-confirm-twice \
	fence-confirm-cancel
ISOLATION_OPTS = --inputdir=$(srcdir)/test/isolation \
	--outputdir=./test/isolation \
	--temp-instance=./tmp_check_iso \
	--temp-config=$(srcdir)/test/tcc.conf

TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)
