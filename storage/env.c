/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The LMDB environment of one data directory: open (map size, DBIs, stale
 * readers, format and definition-hash pinning), the write-txn lifecycle, the
 * one MDB_* -> errno/BAL_E* translation, and bal_store_info().
 *
 * Durability: the environment is opened without MDB_NOSYNC, MDB_NOMETASYNC
 * or MDB_MAPASYNC, so mdb_txn_commit() returns only after the data and the
 * meta page are synced; bal_store_wcommit() publishes the new position only
 * after that. Depends on LMDB and libc only.
 */
#include "storage/store_lmdb.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define DEFAULT_READERS 126u
#define MAX_DBS         8u
/* A write that failed with less room than this left on the filesystem failed for lack of it. */
#define FULL_DISK_SLACK ((uint64_t)1 << 20)

int bal__store_err(int rc)
{
	switch (rc) {
	case MDB_SUCCESS: return 0;
	case MDB_NOTFOUND: return -ENOENT;
	case MDB_KEYEXIST: return -EEXIST;
	case MDB_MAP_FULL:
	case MDB_TXN_FULL: return -ENOSPC;
	case MDB_READERS_FULL:
	case MDB_MAP_RESIZED: return -EAGAIN;
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_INVALID:
	case MDB_VERSION_MISMATCH:
	case MDB_INCOMPATIBLE: return BAL_ECORRUPT;
	case MDB_PANIC:
	case MDB_PAGE_FULL: return -EIO; /* LMDB-internal failures, not a full disk */
	case MDB_DBS_FULL:
	case MDB_TLS_FULL:
	case MDB_CURSOR_FULL: return -EMFILE;
	case MDB_BAD_RSLOT:
	case MDB_BAD_TXN:
	case MDB_BAD_VALSIZE:
	case MDB_BAD_DBI: return -EINVAL;
	default: break;
	}
	/* Anything else LMDB returns is an errno value from the OS. */
	return rc > 0 ? -rc : -EIO;
}

int bal__store_txn_begin(struct bal_store *s, unsigned flags, MDB_txn **txn)
{
	int rc = mdb_txn_begin(s->env, NULL, flags, txn);
	if (rc == MDB_READERS_FULL) {
		/* Usually slots left behind by dead processes: clear them once and retry. */
		int dead = 0;
		if (mdb_reader_check(s->env, &dead) == 0 && dead > 0)
			rc = mdb_txn_begin(s->env, NULL, flags, txn);
	}
	/* MDB_MAP_RESIZED (another process grew the map) maps to -EAGAIN: adopting the new
	 * size needs every txn of this process closed, which only a restart guarantees. */
	return bal__store_err(rc);
}

uint64_t bal__store_sum(const void *p, size_t n, uint64_t seed)
{
	/* FNV-1a style over 64-bit words with a final avalanche: catches flipped,
	 * dropped or shifted bytes; fast enough to verify every replayed record. */
	const uint8_t *b = p;
	uint64_t h = seed ^ (n * 0x9e3779b97f4a7c15ULL);
	for (; n >= 8; n -= 8, b += 8) {
		uint64_t w;
		memcpy(&w, b, 8);
		h = (h ^ w) * 0x100000001b3ULL;
		h ^= h >> 29;
	}
	for (; n; n--, b++)
		h = (h ^ *b) * 0x100000001b3ULL;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h;
}

static uint64_t rec_sum(const uint8_t key[8], const uint8_t *hdr, const void *payload, size_t len)
{
	return bal__store_sum(payload, len, bal__store_sum(hdr, 16, bal__store_sum(key, 8, BAL_SUM_SEED)));
}

int bal__rec_put(MDB_txn *txn, MDB_dbi dbi, uint64_t key, unsigned flags, uint32_t magic, uint32_t a, uint64_t b,
                 const void *payload, size_t len)
{
	uint8_t k[8];
	if (len > UINT32_MAX - BAL_REC_HDR)
		return -EMSGSIZE; /* LMDB values are limited to 4 GiB */
	bal__put_be64(k, key);
	MDB_val mk = {sizeof(k), k}, mv = {BAL_REC_HDR + len, NULL};
	int rc = bal__store_err(mdb_put(txn, dbi, &mk, &mv, flags | MDB_RESERVE));
	if (rc != 0)
		return rc;
	uint8_t *rec = mv.mv_data;
	bal__put_be32(rec, magic);
	bal__put_be32(rec + 4, a);
	bal__put_be64(rec + 8, b);
	if (len)
		memcpy(rec + BAL_REC_HDR, payload, len);
	bal__put_be64(rec + 16, rec_sum(k, rec, payload, len));
	return 0;
}

int bal__rec_parse(const MDB_val *val, uint64_t key, uint32_t magic, const char *what, struct bal__rec *r, char *why,
                   size_t whylen)
{
	const uint8_t *p = val->mv_data;
	uint8_t k[8];
	if (val->mv_size < BAL_REC_HDR || bal__get_be32(p) != magic) {
		bal__store_why(why, whylen,
		               "%s %llu: record of %zu bytes, magic %08x; expected >= %d bytes, magic %08x", what,
		               (unsigned long long)key, val->mv_size, val->mv_size >= 4 ? bal__get_be32(p) : 0u,
		               BAL_REC_HDR, magic);
		return BAL_ECORRUPT;
	}
	bal__put_be64(k, key);
	uint64_t want = bal__get_be64(p + 16), got = rec_sum(k, p, p + BAL_REC_HDR, val->mv_size - BAL_REC_HDR);
	if (want != got) {
		bal__store_why(why, whylen, "%s %llu: checksum %016llx, stored %016llx (record damaged)", what,
		               (unsigned long long)key, (unsigned long long)got, (unsigned long long)want);
		return BAL_ECORRUPT;
	}
	*r = (struct bal__rec){
	        .a = bal__get_be32(p + 4),
	        .b = bal__get_be64(p + 8),
	        .payload = p + BAL_REC_HDR,
	        .len = val->mv_size - BAL_REC_HDR,
	};
	return 0;
}

static void hex(char out[65], const uint8_t hash[32])
{
	static const char digits[] = "0123456789abcdef";
	for (int i = 0; i < 32; i++) {
		out[2 * i] = digits[hash[i] >> 4];
		out[2 * i + 1] = digits[hash[i] & 15];
	}
	out[64] = '\0';
}

static int make_dir(const char *dir, char *why, size_t whylen)
{
	struct stat st;
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		int err = -errno;
		bal__store_why(why, whylen, "data dir %s: cannot create: %s", dir, strerror(-err));
		return err;
	}
	if (stat(dir, &st) != 0) {
		int err = -errno;
		bal__store_why(why, whylen, "data dir %s: %s", dir, strerror(-err));
		return err;
	}
	if (!S_ISDIR(st.st_mode)) {
		bal__store_why(why, whylen, "data dir %s exists but is not a directory", dir);
		return -ENOTDIR;
	}
	return 0;
}

static bool data_file_exists(const char *dir)
{
	char path[4096];
	struct stat st;
	if ((size_t)snprintf(path, sizeof(path), "%s/data.mdb", dir) >= sizeof(path))
		return false;
	return stat(path, &st) == 0;
}

/*
 * The map never shrinks below what the file already records (that would hide
 * data), and grows to `want` when that is larger. A new file gets `want`.
 */
static int size_map(struct bal_store *s, size_t want, char *why, size_t whylen)
{
	MDB_envinfo info;
	int rc = mdb_env_info(s->env, &info);
	if (rc == 0 && info.me_mapsize < want)
		rc = mdb_env_set_mapsize(s->env, want);
	if (rc != 0)
		bal__store_why(why, whylen, "data dir %s: map_size %zu: %s", s->dir, want, mdb_strerror(rc));
	return bal__store_err(rc);
}

static int get_u64(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t *v)
{
	MDB_val key = {strlen(name), (void *)name}, val;
	int rc = mdb_get(txn, dbi, &key, &val);
	if (rc != 0)
		return bal__store_err(rc);
	if (val.mv_size != 8)
		return BAL_ECORRUPT;
	*v = bal__get_be64(val.mv_data);
	return 0;
}

static int put_meta(MDB_txn *txn, MDB_dbi dbi, const char *name, const void *data, size_t len)
{
	MDB_val key = {strlen(name), (void *)name}, val = {len, (void *)data};
	return bal__store_err(mdb_put(txn, dbi, &key, &val, 0));
}

int bal__store_meta_add(struct bal_store *s, MDB_txn *txn, const char *name, uint64_t delta)
{
	uint64_t v = 0;
	uint8_t buf[8];
	int rc = get_u64(txn, s->meta, name, &v);
	if (rc != 0 && rc != -ENOENT)
		return rc;
	bal__put_be64(buf, v + delta);
	return put_meta(txn, s->meta, name, buf, sizeof(buf));
}

/* The pinned number of slices: between 1 and the number of precincts. */
static int read_slices(struct bal_store *s, MDB_txn *txn, char *why, size_t whylen)
{
	MDB_val key = {6, "slices"}, val;
	int rc = mdb_get(txn, s->meta, &key, &val);
	if (rc != 0 || val.mv_size != 4) {
		bal__store_why(why, whylen, "data dir %s: number of snapshot slices missing or not 4 bytes", s->dir);
		return rc == 0 || rc == MDB_NOTFOUND ? BAL_ECORRUPT : bal__store_err(rc);
	}
	uint32_t n = bal__get_be32(val.mv_data);
	if (n < 1 || n > s->nprec) {
		bal__store_why(why, whylen, "data dir %s: %u snapshot slices for %u precincts", s->dir, n, s->nprec);
		return BAL_ECORRUPT;
	}
	s->nslices = n;
	return 0;
}

/* First start: write format, hash and slices. Later starts: check them. */
static int pin(struct bal_store *s, MDB_txn *txn, const uint8_t hash[32], char *why, size_t whylen)
{
	MDB_val key = {6, "format"}, val;
	int rc = mdb_get(txn, s->meta, &key, &val);
	if (rc == MDB_NOTFOUND) {
		MDB_stat st;
		uint8_t fmt[4];
		if ((rc = mdb_stat(txn, s->journal, &st)) != 0)
			return bal__store_err(rc);
		if (st.ms_entries != 0) {
			bal__store_why(why, whylen, "data dir %s: journal has %zu entries but no format record", s->dir,
			               st.ms_entries);
			return BAL_ECORRUPT;
		}
		uint8_t slices[4];
		bal__put_be32(fmt, BAL_STORE_FORMAT);
		bal__put_be32(slices, s->nprec < BAL_STORE_SLICES ? s->nprec : BAL_STORE_SLICES);
		if ((rc = put_meta(txn, s->meta, "format", fmt, sizeof(fmt))) != 0 ||
		    (rc = put_meta(txn, s->meta, "defn_hash", hash, 32)) != 0 ||
		    (rc = put_meta(txn, s->meta, "slices", slices, sizeof(slices))) != 0 ||
		    (rc = bal__store_meta_add(s, txn, "conflicts", 0)) != 0)
			bal__store_why(why, whylen, "data dir %s: cannot pin the definition: %s", s->dir,
			               bal_strerror(rc));
		return rc != 0 ? rc : read_slices(s, txn, why, whylen);
	}
	if (rc != 0)
		return bal__store_err(rc);
	if (val.mv_size != 4 || bal__get_be32(val.mv_data) != BAL_STORE_FORMAT) {
		bal__store_why(why, whylen, "data dir %s: storage format %u (%zu bytes), this build reads format %u",
		               s->dir, val.mv_size == 4 ? bal__get_be32(val.mv_data) : 0u, val.mv_size,
		               BAL_STORE_FORMAT);
		return BAL_ECORRUPT;
	}
	key = (MDB_val){9, "defn_hash"};
	if ((rc = mdb_get(txn, s->meta, &key, &val)) != 0 || val.mv_size != 32) {
		bal__store_why(why, whylen, "data dir %s: pinned definition hash missing or not 32 bytes", s->dir);
		return rc == 0 || rc == MDB_NOTFOUND ? BAL_ECORRUPT : bal__store_err(rc);
	}
	if (memcmp(val.mv_data, hash, 32) != 0) {
		char pinned[65], given[65];
		hex(pinned, val.mv_data);
		hex(given, hash);
		bal__store_why(why, whylen, "data dir %s belongs to definition %s, not %s", s->dir, pinned, given);
		return BAL_EDEFN;
	}
	return read_slices(s, txn, why, whylen);
}

static int open_dbis(struct bal_store *s, const uint8_t hash[32], char *why, size_t whylen)
{
	MDB_txn *txn;
	int rc = bal__store_txn_begin(s, 0, &txn);
	if (rc != 0) {
		bal__store_why(why, whylen, "data dir %s: cannot begin the setup txn: %s", s->dir, bal_strerror(rc));
		return rc;
	}
	struct {
		const char *name;
		MDB_dbi *dbi;
	} dbis[] = {
	        {BAL_STORE_DBI_META, &s->meta},           {BAL_STORE_DBI_JOURNAL, &s->journal},
	        {BAL_STORE_DBI_DEDUP, &s->dedup},         {BAL_STORE_DBI_CONFLICTS, &s->conflicts},
	        {BAL_STORE_DBI_SNAPSHOTS, &s->snapshots}, {BAL_STORE_DBI_TREE, &s->tree},
	        {BAL_STORE_DBI_HEADS, &s->heads},
	};
	for (size_t i = 0; i < sizeof(dbis) / sizeof(dbis[0]); i++) {
		int mrc = mdb_dbi_open(txn, dbis[i].name, MDB_CREATE, dbis[i].dbi);
		if (mrc != 0) {
			rc = bal__store_err(mrc);
			bal__store_why(why, whylen, "data dir %s: table %s: %s", s->dir, dbis[i].name,
			               mdb_strerror(mrc));
			goto fail_txn;
		}
	}
	if ((rc = pin(s, txn, hash, why, whylen)) != 0)
		goto fail_txn;
	if ((rc = bal__store_err(mdb_txn_commit(txn))) != 0) {
		bal__store_why(why, whylen, "data dir %s: cannot commit the setup txn: %s", s->dir, bal_strerror(rc));
		return rc;
	}
	return 0;

fail_txn:
	mdb_txn_abort(txn);
	return rc;
}

int bal__store_last(MDB_txn *txn, MDB_dbi dbi, uint64_t *key, MDB_val *val)
{
	MDB_cursor *cur;
	MDB_val k, v = {0, NULL};
	int rc = bal__store_err(mdb_cursor_open(txn, dbi, &cur));
	if (rc != 0)
		return rc;
	rc = bal__store_err(mdb_cursor_get(cur, &k, &v, MDB_LAST));
	mdb_cursor_close(cur);
	if (rc == -ENOENT) {
		k = (MDB_val){8, "\0\0\0\0\0\0\0"};
		v = (MDB_val){0, NULL};
		rc = 0;
	}
	if (rc == 0 && k.mv_size != 8)
		rc = BAL_ECORRUPT;
	if (rc != 0)
		return rc;
	*key = bal__get_be64(k.mv_data);
	if (val)
		*val = v;
	return 0;
}

static int load_position(struct bal_store *s, char *why, size_t whylen)
{
	MDB_txn *txn;
	uint64_t last = 0;
	int rc = bal__store_txn_begin(s, MDB_RDONLY, &txn);
	if (rc == 0) {
		rc = bal__store_last(txn, s->journal, &last, NULL);
		mdb_txn_abort(txn);
	}
	if (rc != 0) {
		bal__store_why(why, whylen, "data dir %s: cannot read the last journal position: %s", s->dir,
		               bal_strerror(rc));
		return rc;
	}
	atomic_store(&s->position, last);
	return 0;
}

/*
 * One data directory serves one process. LMDB would serialise two writers,
 * but each would count, deduplicate and snapshot from its own memory, so a
 * second daemon on the same directory (on another port) would corrupt the
 * totals. The lock is an flock() on DIR/ballotd.lock, which the kernel
 * releases however the holder dies (kill -9 included); the file holds the
 * holder's pid for the error text.
 */
#define LOCK_NAME "ballotd.lock"

static int lock_dir(const char *dir, int *fd_out, char *why, size_t whylen)
{
	char path[4096];
	if ((size_t)snprintf(path, sizeof(path), "%s/" LOCK_NAME, dir) >= sizeof(path)) {
		bal__store_why(why, whylen, "data dir %s: path too long", dir);
		return -ENAMETOOLONG;
	}
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		int err = -errno;
		bal__store_why(why, whylen, "data dir %s: cannot open %s: %s", dir, LOCK_NAME, bal_strerror(err));
		return err;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		int err = -errno;
		char pid[32] = "";
		ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		close(fd);
		if (err == -EWOULDBLOCK) {
			bal__store_why(
			        why, whylen,
			        "data dir %s is in use by another process (pid %s, holding %s); one data directory "
			        "serves one ballotd",
			        dir, pid[0] ? pid : "unknown", LOCK_NAME);
			return -EBUSY;
		}
		bal__store_why(why, whylen, "data dir %s: cannot lock %s: %s", dir, LOCK_NAME, bal_strerror(err));
		return err;
	}
	char pid[32];
	int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	bool pid_written = ftruncate(fd, 0) == 0 && pwrite(fd, pid, (size_t)n, 0) == n;
	(void)pid_written; /* the lock holds without it: only a second process's error text would lack the pid */
	*fd_out = fd;
	return 0;
}

int bal_store_open(const struct bal_store_opts *opts, struct bal_store **out, char *why, size_t whylen)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	int rc, dead = 0;

	if (!opts->dir || !*opts->dir) {
		bal__store_why(why, whylen, "data dir: empty path");
		return -EINVAL;
	}
	if (opts->map_size > SIZE_MAX - page) {
		bal__store_why(why, whylen, "map_size %zu exceeds the maximum of %zu bytes", opts->map_size,
		               SIZE_MAX - page);
		return -EINVAL;
	}
	if (opts->map_size < 16 * page) {
		bal__store_why(why, whylen, "map_size %zu is below the minimum of %zu bytes", opts->map_size,
		               16 * page);
		return -EINVAL;
	}
	if (!opts->nprecincts || !opts->precinct_ids) {
		bal__store_why(why, whylen, "data dir %s: no precincts", opts->dir);
		return -EINVAL;
	}
	for (uint32_t i = 1; i < opts->nprecincts; i++)
		if (opts->precinct_ids[i] <= opts->precinct_ids[i - 1]) {
			bal__store_why(why, whylen,
			               "data dir %s: precinct ids not strictly ascending at index %u (%u, %u)",
			               opts->dir, i, opts->precinct_ids[i - 1], opts->precinct_ids[i]);
			return -EINVAL;
		}
	if ((rc = make_dir(opts->dir, why, whylen)) != 0)
		return rc;
	int lock_fd;
	if ((rc = lock_dir(opts->dir, &lock_fd, why, whylen)) != 0)
		return rc;

	struct bal_store *s = calloc(1, sizeof(*s));
	if (s)
		s->lock_fd = lock_fd;
	if (!s || !(s->dir = strdup(opts->dir)) || !(s->ids = malloc(opts->nprecincts * sizeof(*s->ids))) ||
	    !(s->prec = calloc(opts->nprecincts, sizeof(*s->prec))) ||
	    !(s->touched = malloc(opts->nprecincts * sizeof(*s->touched)))) {
		rc = -ENOMEM;
		bal__store_why(why, whylen, "data dir %s: out of memory", opts->dir);
		goto fail_alloc;
	}
	s->nprec = opts->nprecincts;
	s->conflicts_per_key = opts->conflicts_per_key ? opts->conflicts_per_key : BAL_STORE_CONFLICTS_PER_KEY;
	s->conflicts_per_precinct =
	        opts->conflicts_per_precinct ? opts->conflicts_per_precinct : BAL_STORE_CONFLICTS_PER_PRECINCT;
	s->signed_part = opts->signed_part;
	memcpy(s->ids, opts->precinct_ids, s->nprec * sizeof(*s->ids));
	for (uint32_t i = 0; i < s->nprec; i++)
		s->prec[i].quota = opts->quota ? opts->quota[i] : UINT64_MAX;
	size_t map_size = (opts->map_size + page - 1) / page * page;
	bool fresh = !data_file_exists(s->dir);
	int mrc = mdb_env_create(&s->env);
	if (mrc != 0) {
		rc = bal__store_err(mrc);
		bal__store_why(why, whylen, "data dir %s: %s", s->dir, mdb_strerror(mrc));
		goto fail_alloc;
	}
	/* An existing file keeps the map size it records until size_map() compares it. */
	if ((mrc = mdb_env_set_maxdbs(s->env, MAX_DBS)) != 0 ||
	    (mrc = mdb_env_set_maxreaders(s->env, opts->max_readers ? opts->max_readers : DEFAULT_READERS)) != 0 ||
	    (fresh && (mrc = mdb_env_set_mapsize(s->env, map_size)) != 0) ||
	    (mrc = mdb_env_open(s->env, s->dir, MDB_NOTLS, 0600)) != 0) {
		rc = bal__store_err(mrc);
		bal__store_why(why, whylen, "data dir %s: cannot open the LMDB environment: %s", s->dir,
		               mdb_strerror(mrc));
		goto fail_env;
	}
	if ((rc = size_map(s, map_size, why, whylen)) != 0)
		goto fail_env;
	if ((mrc = mdb_reader_check(s->env, &dead)) != 0) {
		rc = bal__store_err(mrc);
		bal__store_why(why, whylen, "data dir %s: reader table check: %s", s->dir, mdb_strerror(mrc));
		goto fail_env;
	}
	if ((rc = open_dbis(s, opts->hash, why, whylen)) != 0)
		goto fail_env;
	if ((rc = load_position(s, why, whylen)) != 0)
		goto fail_env;
	if ((rc = bal__tree_open(s, why, whylen)) != 0)
		goto fail_env;
	s->slice_pos = calloc(s->nslices, sizeof(*s->slice_pos));
	s->slice_wpos = malloc(s->nslices * sizeof(*s->slice_wpos));
	if (!s->slice_pos || !s->slice_wpos) {
		rc = -ENOMEM;
		bal__store_why(why, whylen, "data dir %s: out of memory", s->dir);
		goto fail_env;
	}
	for (unsigned k = 0; k < s->nslices; k++) {
		s->slice_wpos[k] = UINT64_MAX;
		for (uint32_t i = bal__slice_first(s, k); i < bal__slice_first(s, k + 1); i++)
			s->prec[i].slice = k;
	}
	if ((rc = bal__tail_reload(s, why, whylen)) != 0) {
		if (why && !*why)
			bal__store_why(why, whylen, "data dir %s: cannot index the journal tail: %s", s->dir,
			               bal_strerror(rc));
		goto fail_tail;
	}
	*out = s;
	return 0;

fail_tail:
	bal__tail_deinit(s);
fail_env:
	mdb_env_close(s->env);
fail_alloc:
	if (s) {
		bal__tree_deinit(s);
		free(s->slice_pos);
		free(s->slice_wpos);
		free(s->prec);
		free(s->touched);
		free(s->ids);
		free(s->dir);
	}
	free(s);
	close(lock_fd); /* releases the lock */
	return rc;
}

void bal_store_close(struct bal_store *s)
{
	if (!s)
		return;
	bal_store_wabort(s);
	mdb_env_close(s->env);
	bal__tail_deinit(s);
	bal__tree_deinit(s);
	free(s->slice_pos);
	free(s->slice_wpos);
	free(s->prec);
	free(s->touched);
	free(s->ids);
	free(s->dir);
	close(s->lock_fd); /* after the environment: releases the directory */
	free(s);
}

/* ---- write txn ---------------------------------------------------------- */

/*
 * LMDB reports a short write (the filesystem filled up in the middle of a
 * page flush: pwrite wrote part of the pages) as EIO, exactly like a device
 * error. Tell the two apart by asking the filesystem how much room is left:
 * after a short write it is less than the write that failed. Root may also
 * use the blocks reserved for it, so it is judged by the free count. Used for
 * commits and for mdb_put (which flushes when a huge txn spills pages).
 */
static int write_err(struct bal_store *s, int rc)
{
	mdb_filehandle_t fd;
	struct statvfs vfs;
	if (rc != -EIO || mdb_env_get_fd(s->env, &fd) != 0 || fstatvfs(fd, &vfs) != 0)
		return rc;
	uint64_t blocks = geteuid() == 0 ? vfs.f_bfree : vfs.f_bavail;
	return blocks * vfs.f_frsize < FULL_DISK_SLACK ? -ENOSPC : rc;
}

int bal__store_wfail(struct bal_store *s, int err)
{
	err = write_err(s, err);
	if (s->wtxn && !s->werr)
		s->werr = err;
	return err;
}

int bal__store_wready(const struct bal_store *s)
{
	if (!s->wtxn)
		return -EINVAL;
	return s->werr;
}

/* Retries a failed reload of the tail before a write txn may use it. */
static int tail_ready(struct bal_store *s)
{
	if (s->tail_bad)
		s->tail_bad = bal__tail_reload(s, NULL, 0);
	return s->tail_bad;
}

int bal_store_wbegin(struct bal_store *s)
{
	if (s->wtxn)
		return -EBUSY;
	int rc = tail_ready(s);
	if (rc == 0)
		rc = bal__tree_wbegin(s);
	if (rc != 0)
		return rc;
	rc = bal__store_txn_begin(s, 0, &s->wtxn);
	if (rc != 0) {
		s->wtxn = NULL;
		return rc;
	}
	s->wposition = atomic_load_explicit(&s->position, memory_order_relaxed);
	s->werr = 0;
	return 0;
}

int bal_store_wcommit(struct bal_store *s)
{
	int rc = bal__store_wready(s);
	if (rc != 0) {
		/* A txn that saw a failure must never be committed: abort it instead
		 * (which also puts the tail back to the committed state). */
		bal_store_wabort(s);
		return rc;
	}
	/* mdb_txn_commit frees the txn whatever it returns; with sync on, 0 means on disk. */
	rc = write_err(s, bal__store_err(mdb_txn_commit(s->wtxn)));
	s->wtxn = NULL;
	if (rc == 0) {
		for (uint32_t t = 0; t < s->ntouched; t++) {
			struct bal__prec *p = &s->prec[s->touched[t]];
			atomic_store_explicit(&p->cbytes, p->bytes, memory_order_relaxed);
			p->touched = false;
		}
		s->ntouched = 0;
		bal__tree_committed(s);
		atomic_store_explicit(&s->position, s->wposition, memory_order_release);
	}
	s->wposition = atomic_load_explicit(&s->position, memory_order_relaxed);
	for (unsigned k = 0; k < s->nslices; k++) {
		if (rc == 0 && s->slice_wpos[k] != UINT64_MAX)
			s->slice_pos[k] = s->slice_wpos[k];
		s->slice_wpos[k] = UINT64_MAX;
	}
	if (rc != 0)
		s->tail_bad = bal__tail_reload(s, NULL, 0); /* the txn's tail keys were never committed */
	return rc;
}

void bal_store_wabort(struct bal_store *s)
{
	if (!s->wtxn)
		return;
	mdb_txn_abort(s->wtxn);
	s->wtxn = NULL;
	s->werr = 0;
	s->wposition = atomic_load_explicit(&s->position, memory_order_relaxed);
	for (unsigned k = 0; k < s->nslices; k++)
		s->slice_wpos[k] = UINT64_MAX;
	/* The txn may have added or merged tail keys: back to the committed state.
	 * If even that fails, every later write txn fails until it succeeds, so
	 * no batch is ever deduplicated against a wrong tail. */
	s->tail_bad = bal__tail_reload(s, NULL, 0);
}

/* ---- read side ---------------------------------------------------------- */

int bal_store_precinct_bytes(const struct bal_store *s, uint32_t precinct, uint64_t *used, uint64_t *quota)
{
	if (precinct >= s->nprec)
		return -EINVAL;
	/* The cast drops const only, as in bal_store_position(). */
	*used = atomic_load_explicit((_Atomic uint64_t *)&s->prec[precinct].cbytes, memory_order_relaxed);
	*quota = s->prec[precinct].quota;
	return 0;
}

uint64_t bal_store_position(const struct bal_store *s)
{
	/* The cast drops const only: the object itself is not const. */
	return atomic_load_explicit((_Atomic uint64_t *)&s->position, memory_order_acquire);
}

int bal_store_info(struct bal_store *s, struct bal_store_info *out)
{
	MDB_envinfo info;
	MDB_stat st;
	MDB_txn *txn;
	uint64_t snap = UINT64_MAX, conflicts = 0;
	int rc = bal__store_txn_begin(s, MDB_RDONLY, &txn);
	if (rc != 0)
		return rc;
	for (unsigned k = 0; k < s->nslices && rc == 0; k++) {
		uint64_t pos;
		rc = bal__slice_position(s, txn, k, &pos, NULL, 0);
		if (rc == 0 && pos < snap)
			snap = pos;
	}
	if (rc != 0)
		goto out_txn;
	if ((rc = get_u64(txn, s->meta, "conflicts", &conflicts)) != 0)
		goto out_txn;
	if ((rc = bal__store_err(mdb_env_info(s->env, &info))) != 0 ||
	    (rc = bal__store_err(mdb_env_stat(s->env, &st))) != 0)
		goto out_txn;
	*out = (struct bal_store_info){
	        .position = bal_store_position(s),
	        .snapshot_position = snap,
	        .conflicts = conflicts,
	        .map_size = info.me_mapsize,
	        .map_used = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize,
	};
out_txn:
	mdb_txn_abort(txn);
	return rc;
}
