/* Fused bf16 ExPO kernel: one pass per element instead of ~15 numpy passes.
 *
 *   out = bf16_rne(a + alpha * (a - s))   with every operation in float32, in this order,
 *   stats[0] += sum (a - s)^2,  stats[1] += sum a^2
 *
 * It must give the same bits as the numpy path in extrapolate.py (and torch): float32
 * subtraction, multiplication and addition each rounded (built with -ffp-contract=off, so no
 * FMA), then IEEE round-to-nearest-even to bfloat16 done on the bit pattern. The sums use
 * LANES float32 partial sums per block of BLOCK elements, added into double totals, which keeps
 * them as accurate as a BLAS sdot while letting the compiler vectorise the loop.
 * `target_clones` builds AVX-512, AVX2 and baseline versions and picks one at load time, so the
 * cached library is safe on any x86-64 node of a heterogeneous cluster.
 */
#include <stdint.h>
#include <string.h>

#define LANES 16
#define BLOCK 4096

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

/* out may be NULL: statistics only (alpha = 0 copies the aligned bytes unchanged). */
CLONES
void expo_bf16(const uint16_t *restrict a, const uint16_t *restrict s, uint16_t *restrict out,
               int64_t n, float alpha, double *restrict stats) {
    double dd = 0.0, aa = 0.0;
    for (int64_t b = 0; b < n; b += BLOCK) {
        int64_t m = n - b < BLOCK ? n - b : BLOCK;
        float pd[LANES] = {0}, pa[LANES] = {0};
        int64_t i = 0;
        for (; i + LANES <= m; i += LANES) {
            for (int l = 0; l < LANES; l++) {
                float fa = bf16_to_f32(a[b + i + l]);
                float d = fa - bf16_to_f32(s[b + i + l]);
                pd[l] += d * d;
                pa[l] += fa * fa;
                if (out) out[b + i + l] = f32_to_bf16(fa + alpha * d);
            }
        }
        for (; i < m; i++) {
            float fa = bf16_to_f32(a[b + i]);
            float d = fa - bf16_to_f32(s[b + i]);
            pd[0] += d * d;
            pa[0] += fa * fa;
            if (out) out[b + i] = f32_to_bf16(fa + alpha * d);
        }
        for (int l = 0; l < LANES; l++) {
            dd += pd[l];
            aa += pa[l];
        }
    }
    stats[0] += dd;
    stats[1] += aa;
}
