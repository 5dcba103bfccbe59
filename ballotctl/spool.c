/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The upload spool: a directory of batch files, each one serialized
 * SignedBatch named `<precinct>-<seq>.pb` (any name ending in `.pb` is a
 * batch; names starting with '.' are temporary and ignored). This file holds
 * the durable file operations `ballotctl upload` relies on (read after fsync,
 * delete then fsync the directory, move to rejected/ with a reason) and the
 * `ballotctl spool-batches` command that writes generated batches into a
 * spool (temp name, fsync, rename without replacing, directory fsync).
 *
 * Plain POSIX file calls; no networking.
 */
#include "ballotctl/ballotctl.h"

#include "defn/defn.h"
#include "client/gen.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define REJECTED_DIR "rejected"

bool spool_name_parse(const char *name, uint32_t *precinct, uint64_t *seq)
{
	char *end;
	if (name[0] < '0' || name[0] > '9')
		return false;
	errno = 0;
	unsigned long long p = strtoull(name, &end, 10);
	if (errno || *end != '-' || p > UINT32_MAX || end[1] < '0' || end[1] > '9')
		return false;
	unsigned long long s = strtoull(end + 1, &end, 10);
	if (errno || strcmp(end, ".pb") != 0 || s == 0)
		return false;
	*precinct = (uint32_t)p;
	*seq = s;
	return true;
}

static bool is_batch_name(const char *name)
{
	size_t n = strlen(name);
	return name[0] != '.' && n > 3 && strcmp(name + n - 3, ".pb") == 0;
}

int spool_open(struct spool *s, const char *path, bool lock, char *why, size_t whylen)
{
	s->path = path;
	s->fd = -1;
	s->rejected_fd = -1;
	if (mkdir(path, 0755) < 0 && errno != EEXIST) {
		int err = errno;
		snprintf(why, whylen, "--spool %s: cannot create the directory: %s", path, strerror(err));
		return -err;
	}
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		int err = errno;
		snprintf(why, whylen, "--spool %s: cannot open the directory: %s", path, strerror(err));
		return -err;
	}
	if (lock && flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int err = errno;
		if (err == EWOULDBLOCK)
			snprintf(why, whylen, "--spool %s: another ballotctl upload is working on this spool", path);
		else
			snprintf(why, whylen, "--spool %s: cannot lock the directory: %s", path, strerror(err));
		close(fd);
		return -err;
	}
	s->fd = fd;
	return 0;
}

void spool_close(struct spool *s)
{
	if (s->rejected_fd >= 0)
		close(s->rejected_fd);
	if (s->fd >= 0)
		close(s->fd); /* releases the lock */
	s->fd = s->rejected_fd = -1;
}

static int sync_dir(int fd, const char *path, const char *sub, char *why, size_t whylen)
{
	if (fsync(fd) == 0)
		return 0;
	int err = errno;
	snprintf(why, whylen, "fsync of directory %s%s%s: %s", path, sub ? "/" : "", sub ? sub : "", strerror(err));
	return -err;
}

int spool_sync(struct spool *s, char *why, size_t whylen)
{
	return sync_dir(s->fd, s->path, NULL, why, whylen);
}

static int cmp_entry(const void *x, const void *y)
{
	const struct spool_entry *a = x, *b = y;
	if (a->numbered != b->numbered)
		return a->numbered ? -1 : 1;
	if (a->numbered) {
		if (a->precinct != b->precinct)
			return a->precinct < b->precinct ? -1 : 1;
		if (a->seq != b->seq)
			return a->seq < b->seq ? -1 : 1;
	}
	return strcmp(a->name, b->name);
}

void spool_list_clear(struct spool_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].name);
	l->n = 0;
}

void spool_list_deinit(struct spool_list *l)
{
	spool_list_clear(l);
	free(l->v);
	l->v = NULL;
	l->cap = 0;
}

static int list_add(struct spool_list *l, const char *name)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 256;
		struct spool_entry *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	struct spool_entry *e = &l->v[l->n];
	memset(e, 0, sizeof(*e));
	if (!(e->name = strdup(name)))
		return -ENOMEM;
	e->numbered = spool_name_parse(name, &e->precinct, &e->seq);
	l->n++;
	return 0;
}

int spool_scan(struct spool *s, struct spool_list *out, char *why, size_t whylen)
{
	spool_list_clear(out);
	int fd = openat(s->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
	if (!dir) {
		int err = errno;
		if (fd >= 0)
			close(fd);
		snprintf(why, whylen, "cannot list the spool %s: %s", s->path, strerror(err));
		return -err;
	}
	int rc = 0;
	struct dirent *de;
	errno = 0;
	while ((de = readdir(dir))) {
		if (!is_batch_name(de->d_name))
			continue;
		if (de->d_type == DT_UNKNOWN || de->d_type == DT_LNK) {
			struct stat st;
			if (fstatat(s->fd, de->d_name, &st, 0) < 0 || !S_ISREG(st.st_mode))
				continue;
		} else if (de->d_type != DT_REG) {
			continue;
		}
		if ((rc = list_add(out, de->d_name)) < 0) {
			snprintf(why, whylen, "out of memory listing the spool %s (%zu files)", s->path, out->n);
			break;
		}
		errno = 0;
	}
	if (!rc && errno) {
		rc = -errno;
		snprintf(why, whylen, "cannot list the spool %s: %s", s->path, strerror(errno));
	}
	closedir(dir);
	if (rc == 0 && out->n)
		qsort(out->v, out->n, sizeof(*out->v), cmp_entry);
	return rc;
}

/* Reads all of fd (size hint `size`) into a malloc'd buffer. */
static int read_all(int fd, size_t size, uint8_t **buf, size_t *len)
{
	uint8_t *b = malloc(size ? size : 1);
	if (!b)
		return -ENOMEM;
	size_t n = 0;
	while (n < size) {
		ssize_t r = read(fd, b + n, size - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int err = errno;
			free(b);
			return -err;
		}
		if (r == 0)
			break; /* shrank meanwhile: send what is there */
		n += (size_t)r;
	}
	*buf = b;
	*len = n;
	return 0;
}

int spool_read(struct spool *s, const char *name, size_t max, uint8_t **buf, size_t *len, char *why, size_t whylen)
{
	int fd = openat(s->fd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int err = errno;
		snprintf(why, whylen, "cannot open %s/%s: %s", s->path, name, strerror(err));
		return -err;
	}
	int rc;
	struct stat st;
	/* The station may have written the file without syncing it: make it
	 * durable before its content can be acknowledged and then deleted. */
	if (fsync(fd) < 0) {
		rc = -errno;
		snprintf(why, whylen, "fsync of %s/%s: %s", s->path, name, strerror(errno));
		goto close_fd;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		snprintf(why, whylen, "stat of %s/%s: %s", s->path, name, strerror(errno));
		goto close_fd;
	}
	if ((uint64_t)st.st_size > max) {
		rc = -EFBIG;
		snprintf(why, whylen, "%s/%s is %lld bytes, over the %zu-byte limit of a batch file", s->path, name,
		         (long long)st.st_size, max);
		goto close_fd;
	}
	rc = read_all(fd, (size_t)st.st_size, buf, len);
	if (rc < 0)
		snprintf(why, whylen, "read of %s/%s: %s", s->path, name, strerror(-rc));
close_fd:
	close(fd);
	return rc;
}

int spool_remove(struct spool *s, const char *name, char *why, size_t whylen)
{
	if (unlinkat(s->fd, name, 0) < 0 && errno != ENOENT) {
		int err = errno;
		snprintf(why, whylen, "cannot delete %s/%s: %s", s->path, name, strerror(err));
		return -err;
	}
	return spool_sync(s, why, whylen);
}

/* Writes `len` bytes to dirfd/tmp (created or truncated), fsyncs and closes it. */
static int write_synced(int dirfd, const char *dirpath, const char *tmp, const void *buf, size_t len, char *why,
                        size_t whylen)
{
	int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0) {
		int err = errno;
		snprintf(why, whylen, "cannot create %s/%s: %s", dirpath, tmp, strerror(err));
		return -err;
	}
	const char *p = buf;
	size_t left = len;
	int rc = 0;
	while (left) {
		ssize_t w = write(fd, p, left);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			rc = -errno;
			snprintf(why, whylen, "write of %s/%s: %s", dirpath, tmp, strerror(errno));
			break;
		}
		p += w;
		left -= (size_t)w;
	}
	if (!rc && fsync(fd) < 0) {
		rc = -errno;
		snprintf(why, whylen, "fsync of %s/%s: %s", dirpath, tmp, strerror(errno));
	}
	if (close(fd) < 0 && !rc) {
		rc = -errno;
		snprintf(why, whylen, "close of %s/%s: %s", dirpath, tmp, strerror(errno));
	}
	if (rc)
		unlinkat(dirfd, tmp, 0);
	return rc;
}

/* renameat2(RENAME_NOREPLACE); where the filesystem lacks it, a check then a rename. */
static int rename_noreplace(int fromfd, const char *from, int tofd, const char *to)
{
	if (renameat2(fromfd, from, tofd, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -errno;
	struct stat st;
	if (fstatat(tofd, to, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return -EEXIST;
	return renameat(fromfd, from, tofd, to) == 0 ? 0 : -errno;
}

/* True iff dirfd/name holds exactly buf/len. */
static bool same_content(struct spool *s, const char *name, const void *buf, size_t len)
{
	int fd = openat(s->fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return false;
	struct stat st;
	uint8_t *old = NULL;
	size_t olen = 0;
	bool same = fstat(fd, &st) == 0 && (size_t)st.st_size == len && read_all(fd, len, &old, &olen) == 0 &&
	            olen == len && memcmp(old, buf, len) == 0;
	free(old);
	close(fd);
	return same;
}

int spool_put(struct spool *s, const char *name, const void *buf, size_t len, char *why, size_t whylen)
{
	char tmp[NAME_MAX + 1];
	if (snprintf(tmp, sizeof(tmp), ".%s.tmp", name) >= (int)sizeof(tmp)) {
		snprintf(why, whylen, "file name %s is over %d bytes", name, NAME_MAX - 5);
		return -ENAMETOOLONG;
	}
	int rc = write_synced(s->fd, s->path, tmp, buf, len, why, whylen);
	if (rc < 0)
		return rc;
	rc = rename_noreplace(s->fd, tmp, s->fd, name);
	if (rc == 0)
		return 0;
	unlinkat(s->fd, tmp, 0);
	if (rc == -EEXIST) {
		if (same_content(s, name, buf, len))
			return 1;
		snprintf(why, whylen, "%s/%s already exists with different content; not replaced", s->path, name);
		return -EEXIST;
	}
	snprintf(why, whylen, "cannot rename %s/%s to %s: %s", s->path, tmp, name, strerror(-rc));
	return rc;
}

static int open_rejected(struct spool *s, char *why, size_t whylen)
{
	if (s->rejected_fd >= 0)
		return 0;
	bool made = mkdirat(s->fd, REJECTED_DIR, 0755) == 0;
	if (!made && errno != EEXIST) {
		int err = errno;
		snprintf(why, whylen, "cannot create %s/%s: %s", s->path, REJECTED_DIR, strerror(err));
		return -err;
	}
	int fd = openat(s->fd, REJECTED_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		int err = errno;
		snprintf(why, whylen, "cannot open %s/%s: %s", s->path, REJECTED_DIR, strerror(err));
		return -err;
	}
	int rc = made ? spool_sync(s, why, whylen) : 0;
	if (rc < 0) {
		close(fd);
		return rc;
	}
	s->rejected_fd = fd;
	return 0;
}

/* A name in rejected/ not yet taken by an earlier rejection: `name`, else
 * `name.1`, `name.2`, ... (a reason file without its batch does not count). */
static int rejected_name(struct spool *s, const char *name, char out[NAME_MAX + 1])
{
	struct stat st;
	for (unsigned i = 0; i < 100000; i++) {
		int n = i ? snprintf(out, NAME_MAX + 1, "%s.%u", name, i) : snprintf(out, NAME_MAX + 1, "%s", name);
		if (n < 0 || n > NAME_MAX - 12)
			return -ENAMETOOLONG;
		if (fstatat(s->rejected_fd, out, &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT)
			return 0;
	}
	return -EEXIST;
}

int spool_reject(struct spool *s, const char *name, const char *reason, char moved_to[NAME_MAX + 1], char *why,
                 size_t whylen)
{
	int rc = open_rejected(s, why, whylen);
	if (rc < 0)
		return rc;
	/* rejected_name() keeps dest 12 bytes under NAME_MAX, so both fit a name. */
	char dest[NAME_MAX + 1], rpath[NAME_MAX + 16], tmp[NAME_MAX + 32];
	if ((rc = rejected_name(s, name, dest)) < 0) {
		snprintf(why, whylen, "no free name for %s in %s/%s: %s", name, s->path, REJECTED_DIR, strerror(-rc));
		return rc;
	}
	snprintf(rpath, sizeof(rpath), "%s.reason", dest);
	snprintf(tmp, sizeof(tmp), ".%s.tmp", rpath);
	char rdir[PATH_MAX];
	snprintf(rdir, sizeof(rdir), "%s/%s", s->path, REJECTED_DIR);
	/* The reason first: a kill between the two renames leaves the batch in the
	 * spool, to be sent (and rejected) again, never a batch without reason. */
	if ((rc = write_synced(s->rejected_fd, rdir, tmp, reason, strlen(reason), why, whylen)) < 0)
		return rc;
	if (renameat(s->rejected_fd, tmp, s->rejected_fd, rpath) < 0) {
		rc = -errno;
		snprintf(why, whylen, "cannot rename %s/%s to %s: %s", rdir, tmp, rpath, strerror(errno));
		unlinkat(s->rejected_fd, tmp, 0);
		return rc;
	}
	if ((rc = rename_noreplace(s->fd, name, s->rejected_fd, dest)) < 0) {
		snprintf(why, whylen, "cannot move %s/%s to %s/%s: %s", s->path, name, rdir, dest, strerror(-rc));
		return rc;
	}
	if ((rc = sync_dir(s->rejected_fd, s->path, REJECTED_DIR, why, whylen)) < 0 ||
	    (rc = spool_sync(s, why, whylen)) < 0)
		return rc;
	snprintf(moved_to, NAME_MAX + 1, "%s", dest);
	return 0;
}

void spool_clean_tmp(struct spool *s)
{
	int fd = openat(s->fd, REJECTED_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
	if (!dir) {
		if (fd >= 0)
			close(fd);
		return;
	}
	struct dirent *de;
	while ((de = readdir(dir))) {
		size_t n = strlen(de->d_name);
		if (de->d_name[0] == '.' && n > 11 && strcmp(de->d_name + n - 11, ".reason.tmp") == 0)
			unlinkat(dirfd(dir), de->d_name, 0);
	}
	closedir(dir);
}

/* ---- ballotctl spool-batches ------------------------------------------------ */

static const char help[] =
        "usage: ballotctl spool-batches --spool DIR --precinct IDS --from-seq A [--to-seq B] [OPTIONS]\n"
        "\n"
        "Writes generated signed batches into an upload spool, one file per batch named\n"
        "<precinct>-<seq>.pb holding one serialized SignedBatch: written under a temporary\n"
        "name, fsynced, renamed into place (never over an existing file), and the\n"
        "directory fsynced before exiting. A file that is already there with the same\n"
        "bytes is left alone; with different bytes it is an error (the spooled batch is\n"
        "kept). The bytes are those `ballotctl push` sends for the same arguments.\n"
        "\n"
        "  --spool DIR           spool directory (created if missing)\n"
        "  --precinct IDS        precinct ids: ID, FIRST-LAST or a comma list of both\n"
        "  --from-seq A          first seq (>= 1)\n"
        "  --to-seq B            last seq (default A)\n"
        "  --definition FILE     election definition (default data/kz2023.json; a relative\n"
        "                        path is tried in the current directory, then in the\n"
        "                        source tree ballotctl was built from)\n"
        "  --seed S              content seed (default 2023)\n"
        "  --key-seed S          seed the definition's demo keys were made with (default: --seed)\n"
        "  --batch-size B        ballots per batch (default 100)\n"
        "  --kind ballots|tally  (default ballots)\n"
        "\n"
        "Prints how many files were written and how many were already there.\n";

struct spool_args {
	const char *spool, *definition, *precincts;
	uint64_t from, to, seed, key_seed;
	bool to_set, key_seed_set;
	uint32_t batch_size;
	enum bal_kind kind;
};

/* Parses IDS into a malloc'd array of precinct indices of `d`. */
static int parse_precincts(const char *text, const struct bal_defn *d, uint32_t **out, size_t *n)
{
	size_t cap = 0, cnt = 0;
	uint32_t *v = NULL;
	const char *p = text;
	while (*p) {
		char *end;
		errno = 0;
		unsigned long long lo = strtoull(p, &end, 10), hi = lo;
		bool bad = errno || end == p || *p == '-';
		if (!bad && *end == '-') {
			const char *q = end + 1;
			hi = strtoull(q, &end, 10);
			bad = errno || end == q || *q == '-' || hi < lo;
		}
		if (bad || (*end && *end != ',') || hi > UINT32_MAX) {
			fprintf(stderr,
			        "ballotctl spool-batches: --precinct \"%s\": expected ID, FIRST-LAST or a comma "
			        "list of them (ids up to %u)\n",
			        text, UINT32_MAX);
			free(v);
			return -EINVAL;
		}
		for (unsigned long long id = lo; id <= hi; id++) {
			int32_t idx = bal_defn_precinct(d, (uint32_t)id);
			if (idx < 0) {
				fprintf(stderr,
				        "ballotctl spool-batches: --precinct \"%s\": precinct %llu is not in the "
				        "definition (%u precincts)\n",
				        text, id, d->nprecincts);
				free(v);
				return -EINVAL;
			}
			if (cnt == cap) {
				cap = cap ? cap * 2 : 64;
				uint32_t *nv = realloc(v, cap * sizeof(*nv));
				if (!nv) {
					free(v);
					return -ENOMEM;
				}
				v = nv;
			}
			v[cnt++] = (uint32_t)idx;
		}
		p = *end ? end + 1 : end;
	}
	if (!cnt) {
		fprintf(stderr, "ballotctl spool-batches: --precinct \"%s\": no precinct given\n", text);
		return -EINVAL;
	}
	*out = v;
	*n = cnt;
	return 0;
}

static int parse_spool_args(int argc, char **argv, struct spool_args *a)
{
	enum { O_SPOOL = 256, O_DEFN, O_PRECINCT, O_FROM, O_TO, O_SEED, O_KEY_SEED, O_BATCH_SIZE, O_KIND, O_HELP };
	static const struct option longopts[] = {
	        {"spool", required_argument, NULL, O_SPOOL},
	        {"definition", required_argument, NULL, O_DEFN},
	        {"precinct", required_argument, NULL, O_PRECINCT},
	        {"from-seq", required_argument, NULL, O_FROM},
	        {"to-seq", required_argument, NULL, O_TO},
	        {"seed", required_argument, NULL, O_SEED},
	        {"key-seed", required_argument, NULL, O_KEY_SEED},
	        {"batch-size", required_argument, NULL, O_BATCH_SIZE},
	        {"kind", required_argument, NULL, O_KIND},
	        {"help", no_argument, NULL, O_HELP},
	        {NULL, 0, NULL, 0},
	};
	*a = (struct spool_args){
	        .definition = "data/kz2023.json", .seed = 2023, .batch_size = 100, .kind = BAL_KIND_BALLOTS};
	bool ok = true;
	int opt;
	optind = 1;
	while (ok && (opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case O_SPOOL: a->spool = optarg; break;
		case O_DEFN: a->definition = optarg; break;
		case O_PRECINCT: a->precincts = optarg; break;
		case O_FROM: ok = opt_u64("--from-seq", optarg, 1, UINT64_MAX / 2, &a->from); break;
		case O_TO:
			ok = opt_u64("--to-seq", optarg, 1, UINT64_MAX / 2, &a->to);
			a->to_set = true;
			break;
		case O_SEED: ok = opt_u64("--seed", optarg, 0, UINT64_MAX, &a->seed); break;
		case O_KEY_SEED:
			ok = opt_u64("--key-seed", optarg, 0, UINT64_MAX, &a->key_seed);
			a->key_seed_set = true;
			break;
		case O_BATCH_SIZE: ok = opt_u32("--batch-size", optarg, 1, BAL_GEN_MAX_BATCH, &a->batch_size); break;
		case O_KIND:
			if (strcmp(optarg, "ballots") == 0 || strcmp(optarg, "tally") == 0) {
				a->kind = optarg[0] == 't' ? BAL_KIND_TALLY : BAL_KIND_BALLOTS;
			} else {
				fprintf(stderr, "ballotctl spool-batches: --kind \"%s\": expected ballots or tally\n",
				        optarg);
				ok = false;
			}
			break;
		case O_HELP: fputs(help, stdout); return EXIT_OK;
		default: opt_bad("spool-batches", argv); return EXIT_USAGE;
		}
	}
	if (!ok || !opt_no_operands("spool-batches", argc, argv))
		return EXIT_USAGE;
	const char *missing = NULL;
	if (!a->spool)
		missing = "--spool DIR";
	else if (!a->precincts)
		missing = "--precinct IDS";
	else if (!a->from)
		missing = "--from-seq A";
	if (missing) {
		fprintf(stderr, "ballotctl spool-batches: %s is required\n", missing);
		return EXIT_USAGE;
	}
	if (!a->to_set)
		a->to = a->from;
	if (a->to < a->from) {
		fprintf(stderr, "ballotctl spool-batches: --to-seq %llu is below --from-seq %llu\n",
		        (unsigned long long)a->to, (unsigned long long)a->from);
		return EXIT_USAGE;
	}
	if (!a->key_seed_set)
		a->key_seed = a->seed;
	return -1;
}

/* Generates and spools every (precinct, seq); returns the exit code. */
static int spool_all(const struct spool_args *a, const struct bal_defn *d, const uint32_t *idx, size_t n,
                     struct spool *s)
{
	char why[512];
	struct bal_gen *g;
	struct bal_gen_opts go = {
	        .seed = a->seed, .key_seed = a->key_seed, .batch_size = a->batch_size, .kind = a->kind};
	if (bal_gen_new(d, &go, &g, why, sizeof(why)) < 0) {
		fprintf(stderr, "ballotctl spool-batches: %s\n", why);
		return EXIT_USAGE;
	}
	uint64_t written = 0, present = 0;
	int exit_code = EXIT_OK;
	for (size_t i = 0; i < n && exit_code == EXIT_OK; i++) {
		for (uint64_t seq = a->from; seq <= a->to; seq++) {
			const uint8_t *body;
			size_t len;
			char name[64];
			if (bal_gen_batch(g, idx[i], seq, NULL, &body, &len, why, sizeof(why)) < 0) {
				fprintf(stderr, "ballotctl spool-batches: %s\n", why);
				exit_code = EXIT_FAILED;
				break;
			}
			snprintf(name, sizeof(name), "%u-%llu.pb", d->precincts[idx[i]].id, (unsigned long long)seq);
			int rc = spool_put(s, name, body, len, why, sizeof(why));
			if (rc < 0) {
				fprintf(stderr, "ballotctl spool-batches: %s\n", why);
				exit_code = EXIT_FAILED;
				break;
			}
			if (rc == 1)
				present++;
			else
				written++;
		}
	}
	bal_gen_free(g);
	/* Every rename above becomes durable here, the failed run's included. */
	if (spool_sync(s, why, sizeof(why)) < 0) {
		fprintf(stderr, "ballotctl spool-batches: %s\n", why);
		exit_code = EXIT_FAILED;
	}
	char b1[32], b2[32];
	printf("spooled %s batch files in %s (%s already there with the same bytes)\n", fmt_count(written, b1),
	       a->spool, fmt_count(present, b2));
	return exit_code;
}

int cmd_spool_batches(int argc, char **argv)
{
	struct spool_args a;
	int rc = parse_spool_args(argc, argv, &a);
	if (rc >= 0)
		return rc;
	char path[PATH_MAX], why[512];
	if (!find_definition(a.definition, path, sizeof(path)))
		return EXIT_FAILED;
	struct bal_defn *d;
	if (bal_defn_load(path, &d, why, sizeof(why)) < 0) {
		fprintf(stderr, "ballotctl spool-batches: %s: %s\n", path, why);
		return EXIT_FAILED;
	}
	int exit_code = EXIT_USAGE;
	uint32_t *idx = NULL;
	size_t n = 0;
	if (parse_precincts(a.precincts, d, &idx, &n) < 0)
		goto free_defn;
	struct spool s;
	if (spool_open(&s, a.spool, false, why, sizeof(why)) < 0) {
		fprintf(stderr, "ballotctl spool-batches: %s\n", why);
		exit_code = EXIT_FAILED;
		goto free_idx;
	}
	exit_code = spool_all(&a, d, idx, n, &s);
	spool_close(&s);
free_idx:
	free(idx);
free_defn:
	bal_defn_free(d);
	return exit_code;
}
