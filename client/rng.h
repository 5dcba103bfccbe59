/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Small deterministic random streams for the demo data generators
 * (definition, batches). Same inputs give the same numbers on every platform;
 * not for cryptography. Header-only, libc only.
 */
#ifndef BAL_CLIENT_RNG_H
#define BAL_CLIENT_RNG_H

#include <stdint.h>

/** A splitmix64 stream. Any state value is valid. */
struct bal_rng {
	uint64_t s;
};

/** The splitmix64 finaliser: a bijective 64-bit mix. */
static inline uint64_t bal_rng_mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/** Seeds an independent stream for (a, b, c): e.g. (seed, purpose tag, index). */
static inline void bal_rng_seed(struct bal_rng *r, uint64_t a, uint64_t b, uint64_t c)
{
	r->s = bal_rng_mix(a + 0x9e3779b97f4a7c15ULL * (bal_rng_mix(b + 0x632be59bd9b4e019ULL * (c + 1)) + 1));
}

static inline uint64_t bal_rng_next(struct bal_rng *r)
{
	r->s += 0x9e3779b97f4a7c15ULL;
	return bal_rng_mix(r->s);
}

/** Uniform in [0, n) for n >= 1 (multiply-shift; the bias is below 2^-32 for n < 2^32). */
static inline uint64_t bal_rng_below(struct bal_rng *r, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)bal_rng_next(r) * n) >> 64);
}

/** Uniform in [0, 1). */
static inline double bal_rng_unit(struct bal_rng *r)
{
	return (double)(bal_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

#endif
