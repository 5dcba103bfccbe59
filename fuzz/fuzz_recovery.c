/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: storage recovery from a damaged journal record or
 * snapshot slice. At start-up a small data directory is made for
 * tests/data/small.json (five valid batches, every snapshot slice written at
 * position 2) and its data file is kept in memory. Each input restores that
 * file, overwrites one record with fuzz bytes through raw LMDB (as the storage
 * unit tests damage records), then reopens the store and runs
 * bal_store_recover() with the daemon's replay (slices unpacked, aggregates
 * rebuilt, then decode, validate, fold, overflow check). Opening and recovery
 * must succeed or report BAL_ECORRUPT; anything else, or a crash, is a bug.
 *
 * Input layout: byte 0 = what to damage (bits 0-1: 0 raw journal value,
 * 1 journal record with a valid header and checksum around the fuzz bytes,
 * 2 raw snapshot slice value, 3 slice record with a valid header and
 * checksum around the fuzz bytes); byte 1 = which journal position (1..5)
 * or slice; the rest is the value or payload.
 */
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proto/codec.h"
#include "fuzz/fuzz_common.h"
#include "storage/storage.h"
#include "storage/store_lmdb.h"

#define FZ_BATCHES  5
#define FZ_SNAP_AT  2
#define FZ_MAP_SIZE ((size_t)1 << 20)

static struct fz_election election;
static struct bal_arena arena;
static char dir[256], data_path[300], lock_path[300], dir_lock_path[300];
static uint8_t *pristine;
static size_t pristine_len;
static uint32_t jrec_precinct[FZ_BATCHES + 1];
static uint64_t jrec_seq[FZ_BATCHES + 1];

static uint32_t *ids;
static unsigned nslices;

static struct bal_store *store_open(int *err)
{
	struct bal_store_opts o = {
	        .dir = dir, .map_size = FZ_MAP_SIZE, .precinct_ids = ids, .nprecincts = election.defn->nprecincts};
	memcpy(o.hash, election.defn->hash, sizeof(o.hash));
	struct bal_store *s = NULL;
	char why[256] = "";
	*err = bal_store_open(&o, &s, why, sizeof(why));
	return *err ? NULL : s;
}

/* A valid unsigned SignedBatch: one TALLY of the national contest for precinct index p. */
static size_t make_batch(uint32_t p, uint64_t seq, uint8_t *out)
{
	const struct bal_contest *ct = &election.defn->contests[0];
	uint64_t counts[64] = {0};
	FZ_CHECK(ct->nchoices <= 64, "national contest has %u choices", ct->nchoices);
	for (uint32_t k = 0; k < ct->nchoices; k++)
		counts[k] = (seq * 7 + k * 3 + p) % 50;
	struct bal_ctally t = {.contest_id = ct->id, .n = ct->nchoices, .counts = counts};
	struct bal_batch b = {.precinct_id = election.defn->precincts[p].id,
	                      .seq = seq,
	                      .kind = BAL_KIND_TALLY,
	                      .tallies = &t,
	                      .ntallies = 1};
	uint8_t inner[1024];
	size_t in = bal_codec_batch_pack(&b, inner);
	return bal_codec_signed_pack(inner, in, NULL, 0, out);
}

static void build_store(void)
{
	int err;
	struct bal_store *s = store_open(&err);
	FZ_CHECK(s, "creating %s: %s", dir, bal_strerror(err));
	for (uint64_t pos = 1; pos <= FZ_BATCHES; pos++) {
		uint8_t body[2048];
		uint32_t p = (uint32_t)(pos % election.defn->nprecincts);
		size_t len = make_batch(p, pos, body);
		FZ_CHECK(fz_fold_body(&election, &arena, body, len) == 0, "seed batch %llu does not fold",
		         (unsigned long long)pos);
		uint64_t got = 0;
		FZ_CHECK(bal_store_wbegin(s) == 0, "wbegin");
		FZ_CHECK(bal_store_append(s, p, pos, body, len, &got) == 0 && got == pos, "append %llu",
		         (unsigned long long)pos);
		for (unsigned k = 0; pos == FZ_SNAP_AT && k < bal_store_slices(s); k++) {
			uint32_t first, end;
			uint64_t slice[4096];
			bal_store_slice_range(s, k, &first, &end);
			FZ_CHECK(bal_layout_slice_len(election.layout, first, end) <= 4096, "slice %u too big", k);
			size_t n = bal_layout_slice_pack(election.layout, election.ctr, first, end, slice);
			FZ_CHECK(bal_store_put_slice(s, k, slice, n * sizeof(uint64_t)) == 0, "slice %u", k);
		}
		FZ_CHECK(bal_store_wcommit(s) == 0, "commit");
		jrec_precinct[pos] = election.defn->precincts[p].id;
		jrec_seq[pos] = pos;
	}
	nslices = bal_store_slices(s);
	bal_store_close(s);
}

static void keep_pristine(void)
{
	FILE *f = fopen(data_path, "rb");
	FZ_CHECK(f, "open %s", data_path);
	fseek(f, 0, SEEK_END);
	pristine_len = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	pristine = malloc(pristine_len);
	FZ_CHECK(pristine && fread(pristine, 1, pristine_len, f) == pristine_len, "read %s", data_path);
	fclose(f);
}

static void restore_pristine(void)
{
	int fd = open(data_path, O_WRONLY | O_TRUNC);
	FZ_CHECK(fd >= 0, "open %s", data_path);
	FZ_CHECK(write(fd, pristine, pristine_len) == (ssize_t)pristine_len, "write %s", data_path);
	close(fd);
	unlink(lock_path);
}

static void cleanup(void)
{
	unlink(lock_path);
	unlink(dir_lock_path);
	unlink(data_path);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fz_election_load(&election);
	bal_arena_init(&arena, 0);
	const char *tmp = getenv("TMPDIR");
	snprintf(dir, sizeof(dir), "%s/ballotd-fuzz-recovery-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	FZ_CHECK(mkdtemp(dir), "mkdtemp %s", dir);
	snprintf(data_path, sizeof(data_path), "%s/data.mdb", dir);
	snprintf(lock_path, sizeof(lock_path), "%s/lock.mdb", dir);
	snprintf(dir_lock_path, sizeof(dir_lock_path), "%s/ballotd.lock", dir);
	atexit(cleanup);
	ids = malloc(election.defn->nprecincts * sizeof(*ids));
	FZ_CHECK(ids, "out of memory");
	for (uint32_t i = 0; i < election.defn->nprecincts; i++)
		ids[i] = election.defn->precincts[i].id;
	build_store();
	keep_pristine();
	return 0;
}

/* Writes the damage with raw LMDB (the store is closed). `which` picks the position or slice. */
static void damage(unsigned mode, unsigned which, const uint8_t *bytes, size_t len)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	FZ_CHECK(mdb_env_create(&env) == 0, "mdb_env_create");
	FZ_CHECK(mdb_env_set_maxdbs(env, 8) == 0, "maxdbs");
	FZ_CHECK(mdb_env_set_mapsize(env, FZ_MAP_SIZE) == 0, "mapsize");
	FZ_CHECK(mdb_env_open(env, dir, MDB_NOSYNC, 0600) == 0, "mdb_env_open %s", dir);
	FZ_CHECK(mdb_txn_begin(env, NULL, 0, &txn) == 0, "txn");
	bool journal = mode < 2;
	FZ_CHECK(mdb_dbi_open(txn, journal ? BAL_STORE_DBI_JOURNAL : BAL_STORE_DBI_SNAPSHOTS, 0, &dbi) == 0, "dbi");
	uint64_t position = 1 + which % FZ_BATCHES;
	uint64_t key = journal ? position : which % nslices;
	uint8_t k[8];
	bal__put_be64(k, key);
	MDB_val mk = {8, k}, mv = {len, (void *)bytes};
	int rc;
	if (mode == 0 || mode == 2) {
		rc = mdb_put(txn, dbi, &mk, &mv, 0);
	} else if (mode == 1) {
		rc = bal__rec_put(txn, dbi, key, 0, BAL_JREC_MAGIC, jrec_precinct[position], jrec_seq[position], bytes,
		                  len);
	} else {
		/* A checksummed slice whose counters come from the input. */
		rc = bal__rec_put(txn, dbi, key, 0, BAL_SNAP_MAGIC, BAL_SNAP_VERSION, FZ_SNAP_AT, bytes, len);
	}
	/* A value too big for the 1 MiB map is simply not written. */
	if (rc == 0)
		FZ_CHECK(mdb_txn_commit(txn) == 0, "commit");
	else
		mdb_txn_abort(txn);
	mdb_env_close(env);
}

static int load_slice(void *arg, unsigned k, uint32_t first, uint32_t end, const uint8_t *blob, size_t len)
{
	(void)arg;
	(void)k;
	if (len % 8)
		return BAL_ECORRUPT;
	return bal_layout_slice_unpack(election.layout, election.ctr, first, end, blob, len / 8);
}

static int loaded(void *arg)
{
	(void)arg;
	/* Fuzzed slices may hold totals beyond 64 bits: the replay's checks then refuse them. */
	(void)bal_tally_rebuild(election.layout, election.ctr);
	return 0;
}

static int replay(void *arg, uint64_t position, uint32_t precinct, const uint8_t *bytes, size_t len)
{
	(void)arg;
	(void)position;
	(void)precinct;
	return fz_fold_body(&election, &arena, bytes, len) ? BAL_ECORRUPT : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct bal_recovery_ops ops = {.slice = load_slice, .loaded = loaded, .entry = replay};
	if (size < 2 || size > 64 * 1024)
		return 0;
	unsigned mode = data[0] & 3;
	restore_pristine();
	damage(mode, data[1], data + 2, size - 2);

	int err;
	struct bal_store *s = store_open(&err);
	if (!s) {
		FZ_CHECK(err == BAL_ECORRUPT, "open after damage: %s (%d)", bal_strerror(err), err);
		return 0;
	}
	struct bal_recovery_report rep;
	char why[512] = "";
	memset(election.ctr, 0, election.nslots * sizeof(uint64_t));
	err = bal_store_recover(s, &ops, NULL, &rep, why, sizeof(why));
	FZ_CHECK(err == 0 || err == BAL_ECORRUPT, "recover after damage (mode %u, which %u): %s (%d): %s", mode,
	         data[1], bal_strerror(err), err, why);
	if (err == 0) {
		FZ_CHECK(rep.position == FZ_BATCHES, "recovered position %llu, want %d",
		         (unsigned long long)rep.position, FZ_BATCHES);
		FZ_CHECK(rep.snapshot_position + rep.scanned == rep.position && rep.replayed <= rep.scanned,
		         "snapshot %llu + scanned %llu != %llu, or replayed %llu more",
		         (unsigned long long)rep.snapshot_position, (unsigned long long)rep.scanned,
		         (unsigned long long)rep.position, (unsigned long long)rep.replayed);
	} else {
		FZ_CHECK(why[0], "BAL_ECORRUPT without a reason");
	}
	bal_store_close(s);
	return 0;
}
