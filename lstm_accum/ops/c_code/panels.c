#section support_code

/* The fused LSTM's per-step products, and the threads that share a step.

   An LSTM step multiplies a batch of B <= 32 hidden states by the recurrent
   weights: (B, H) . (H, 4H) forward, (B, 4H) . (4H, H) backward.  General
   BLAS gemm packs the whole weight matrix into its own layout at every
   call, and with only B rows to share that cost it reaches a fraction of
   the machine's peak (benchmarks/step_products.py).  The weights do not
   change between the steps of a call, so they are packed once per call
   into panels of 32 columns, and each step is multiplied against those
   panels with an AVX-512 kernel of 8 rows by 32 columns:

   - forward, a panel holds the four gates of 8 units (input, forget, cell,
     output: 8 columns each), so that the thread that computes a panel can
     go on to those units' gates without waiting for the others;
   - backward, a panel holds 32 consecutive units of W^T.

   Each thread packs the panels it multiplies, into one buffer per compiled
   module (the forward's and the gradient's), kept from call to call and
   16 H^2 bytes for the largest H it has run: a fresh buffer per call costs
   more in page faults than the packing itself.

   Every output element is one sum in a fixed order (partial sums over
   blocks of LSTM_ACCUM_CHAIN consecutive k, as BLAS sums blocks of its own
   size, then their total in increasing k), whatever the batch size, the
   row block or the thread that computes it: the results do not depend on
   the number of threads.  The order differs from BLAS's, so results differ
   from the BLAS path by float32 rounding, and are as close to the exact
   sums.

   The threads: the team of team.c; within a call they share the rows
   (small H: no barrier after the packing) or the units (one spinning
   barrier per step), lstm_accum_panels_by_rows.

   The kernel needs AVX-512 (F, DQ, VL) at compile time (Theano compiles
   for the machine it runs on); elsewhere, and for double, the operations
   use BLAS (LSTM_ACCUM_PANELS is 0). */

/* The module's scratch buffer, at least `floats` floats long, 64-byte
   aligned: grown as needed and kept for the next call (its operations run
   one at a time: they hold Python's GIL); NULL if it cannot be had.  It
   holds the panels, or on the BLAS path the joined weights (fused_lstm.c),
   never both in one call: a fresh buffer per call costs more in page
   faults than the packing or the copy into it. */
static float* lstm_accum_scratch_buffer(size_t floats)
{
    static float* buffer = NULL;
    static size_t capacity = 0;
    if (floats > capacity) {
        /* a multiple of 64 bytes, as aligned_alloc requires */
        const size_t want = (floats + 15) / 16 * 16;
        float* grown = (float*)aligned_alloc(64, sizeof(float) * want);
        if (!grown)
            return NULL;
        free(buffer);
        buffer = grown;
        capacity = want;
    }
    return buffer;
}

#if defined(__AVX512F__) && defined(__AVX512DQ__) && defined(__AVX512VL__)
#define LSTM_ACCUM_PANELS 1
#include <immintrin.h>
#else
#define LSTM_ACCUM_PANELS 0
#endif

#if LSTM_ACCUM_PANELS
/* ---- panels ---- */

/* Panels of 32 columns, K rows each, 64-byte aligned, zero past the last
   unit, packed from the gates' recurrent weights W[g] (H, H) row-major
   (g = 0 .. 3: input, forget, cell, output; together the columns of
   W = [W[0] W[1] W[2] W[3]] (H, 4H)):
   - forward, K = H: panel p, row k holds [i f g o] of units 8p .. 8p+7:
     W[g][k, 8p + l] in column 8 g + l;
   - backward, K = 4H: panel q, row k = g H + k' holds units 32q .. 32q+31
     of W^T: W[g][32q + l, k'] in column l.
   Each thread packs the panels it multiplies, into the module's scratch
   buffer (lstm_accum_scratch_buffer). */

static inline size_t lstm_accum_gate_panels_size(int H)
{
    return (size_t)32 * H * ((H + 7) / 8);
}

static inline size_t lstm_accum_transposed_panels_size(int H)
{
    return (size_t)32 * 4 * H * ((H + 31) / 32);
}

/* Up to this many units, the threads of a call share its rows, not its
   units: each runs its sentences through all the steps with no barrier,
   reading every panel, which fit in its L2 cache (16 H^2 bytes each way:
   1 MB at H = 256).  Larger panels come from memory, once a step for all
   rows when the units are shared.  A choice by H alone: the sums stay the
   same whatever the number of threads. */
#define LSTM_ACCUM_ROWS_MAX_H 256

static inline bool lstm_accum_panels_by_rows(int H)
{
    return H <= LSTM_ACCUM_ROWS_MAX_H;
}

/* A panel row of 32 floats (128 bytes, 64-byte aligned) from lo and hi.
   When the units are shared (lstm_accum_panels_by_rows false) the panels
   are larger than the cores' L2 caches and are read back from memory in
   any case: stored past the caches (non-temporal stores), packing does not
   first read every line it writes (benchmarks/README.md).  The panels the
   rows share are small and read at once by every thread: stored into the
   cache. */
static inline void lstm_accum_panel_row(float* d, __m512 lo, __m512 hi,
                                        bool stream)
{
    if (stream) {
        _mm512_stream_ps(d, lo);
        _mm512_stream_ps(d + 16, hi);
    } else {
        _mm512_store_ps(d, lo);
        _mm512_store_ps(d + 16, hi);
    }
}

/* Forward panels [p0, p1) of W[0..3] into P, row k of every gate after
   row k - 1 (each row's units are contiguous; panel by panel the rows are
   128 bytes apart). */
static void lstm_accum_pack_gates(int H, const float* const* W, float* P,
                                  int p0, int p1)
{
    const bool stream = !lstm_accum_panels_by_rows(H);
    for (int k = 0; k < H; ++k) {
        for (int p = p0; p < p1; ++p) {
            const int u0 = 8 * p;
            const int w = H - u0 < 8 ? H - u0 : 8;
            const __mmask8 m = (__mmask8)((1u << w) - 1);
            const size_t at = (size_t)k * H + u0;
            const __m512 lo = _mm512_insertf32x8(
                _mm512_castps256_ps512(_mm256_maskz_loadu_ps(m, W[0] + at)),
                _mm256_maskz_loadu_ps(m, W[1] + at), 1);
            const __m512 hi = _mm512_insertf32x8(
                _mm512_castps256_ps512(_mm256_maskz_loadu_ps(m, W[2] + at)),
                _mm256_maskz_loadu_ps(m, W[3] + at), 1);
            lstm_accum_panel_row(P + ((size_t)p * H + k) * 32, lo, hi,
                                 stream);
        }
    }
    if (stream)
        _mm_sfence();
}

/* r[i] (16 floats each) := column i of the 16 x 16 block r. */
static inline void lstm_accum_transpose16(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 8; ++i) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; ++i) {
        const __m512d a = _mm512_castps_pd(t[4 * i]),
                      b = _mm512_castps_pd(t[4 * i + 1]),
                      c = _mm512_castps_pd(t[4 * i + 2]),
                      d = _mm512_castps_pd(t[4 * i + 3]);
        r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    /* r[4i + j]: rows 4i .. 4i+3, columns 4c + j in 128-bit lane c */
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 4; ++j) {
            t[8 * i + j] = _mm512_shuffle_f32x4(r[8 * i + j],
                                                r[8 * i + 4 + j], 0x88);
            t[8 * i + 4 + j] = _mm512_shuffle_f32x4(r[8 * i + j],
                                                    r[8 * i + 4 + j], 0xDD);
        }
    for (int j = 0; j < 8; ++j) {
        r[j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88);
        r[8 + j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0xDD);
    }
}

/* r[i] := row u0 + i of Wg from column k0, the columns in km (zero past
   the last unit), then r transposed in registers. */
static inline void lstm_accum_load_transposed(int H, const float* Wg, int u0,
                                              int k0, __mmask16 km,
                                              __m512 r[16])
{
    for (int i = 0; i < 16; ++i) {
        const int u = u0 + i;
        r[i] = u < H ? _mm512_maskz_loadu_ps(km, Wg + (size_t)u * H + k0)
                     : _mm512_setzero_ps();
    }
    lstm_accum_transpose16(r);
}

/* Backward panels [q0, q1) of W^T into P, gate by gate, 16 k at a time:
   the panel's 32 units in two blocks of 16 by 16 transposed in registers,
   then written row after row (lstm_accum_panel_row). */
static void lstm_accum_pack_transposed(int H, const float* const* W,
                                       float* P, int q0, int q1)
{
    const bool stream = !lstm_accum_panels_by_rows(H);
    const size_t K = 4 * (size_t)H;
    for (int q = q0; q < q1; ++q) {
        for (int g = 0; g < 4; ++g) {
            for (int k0 = 0; k0 < H; k0 += 16) {
                const int kw = H - k0 < 16 ? H - k0 : 16;
                const __mmask16 km = kw == 16 ? (__mmask16)0xFFFF
                                              : (__mmask16)((1u << kw) - 1);
                __m512 lo[16], hi[16];
                lstm_accum_load_transposed(H, W[g], 32 * q, k0, km, lo);
                lstm_accum_load_transposed(H, W[g], 32 * q + 16, k0, km, hi);
                float* d = P + ((size_t)q * K + (size_t)g * H + k0) * 32;
                for (int k = 0; k < kw; ++k)
                    lstm_accum_panel_row(d + (size_t)k * 32, lo[k], hi[k],
                                         stream);
            }
        }
    }
    if (stream)
        _mm_sfence();
}

/* Terms summed from zero before they join the total: one rounding chain of
   K = 1000-4000 terms is about twice as far from the exact sum as BLAS's
   blocked sums (256-384 terms), chains of 128 are no further. */
#define LSTM_ACCUM_CHAIN 128

/* The first of a group of row blocks asks for the panel's rows one block
   of LSTM_ACCUM_CHAIN rows ahead into the L2 cache: at H = 4096 the
   panels (268 MB) come from memory at every step, and the hardware
   prefetcher alone leaves the kernel waiting for them. */
#define LSTM_ACCUM_PREFETCH LSTM_ACCUM_CHAIN

/* One block [k0, k1) of the sums below for rows r < MR: the block's sum
   from zero, added to total (the sums of the blocks before) unless k0 is
   0; then kept in total unless k1 is K, else written to C (GATES: the
   columns are [i f g o] of 8 units and go to C + g*H, w of 8 valid; else
   to C, w of 32 valid).  PREFETCH: also ask for the rows of P
   LSTM_ACCUM_PREFETCH ahead. */
template <int MR, bool GATES, bool PREFETCH>
static inline void lstm_accum_panel_chunk(int k0, int k1, int K,
                                          const float* A, int lda,
                                          const float* P, float (*total)[32],
                                          float* C, int ldc, int H, int w)
{
    __m512 c0[MR], c1[MR];
    for (int r = 0; r < MR; ++r) {
        c0[r] = _mm512_setzero_ps();
        c1[r] = _mm512_setzero_ps();
    }
    for (int k = k0; k < k1; ++k) {
        const __m512 b0 = _mm512_load_ps(P + (size_t)k * 32);
        const __m512 b1 = _mm512_load_ps(P + (size_t)k * 32 + 16);
        if (PREFETCH) {
            const char* ahead =
                (const char*)(P + (size_t)(k + LSTM_ACCUM_PREFETCH) * 32);
            _mm_prefetch(ahead, _MM_HINT_T1);
            _mm_prefetch(ahead + 64, _MM_HINT_T1);
        }
        for (int r = 0; r < MR; ++r) {
            const __m512 a = _mm512_set1_ps(A[(size_t)r * lda + k]);
            c0[r] = _mm512_fmadd_ps(a, b0, c0[r]);
            c1[r] = _mm512_fmadd_ps(a, b1, c1[r]);
        }
    }
    if (k0 > 0)
        for (int r = 0; r < MR; ++r) {
            c0[r] = _mm512_add_ps(_mm512_load_ps(total[r]), c0[r]);
            c1[r] = _mm512_add_ps(_mm512_load_ps(total[r] + 16), c1[r]);
        }
    if (k1 < K) {
        for (int r = 0; r < MR; ++r) {
            _mm512_store_ps(total[r], c0[r]);
            _mm512_store_ps(total[r] + 16, c1[r]);
        }
        return;
    }
    if (GATES) {
        const __mmask8 m = (__mmask8)((1u << w) - 1);
        for (int r = 0; r < MR; ++r) {
            float* c = C + (size_t)r * ldc;
            _mm256_mask_storeu_ps(c, m, _mm512_castps512_ps256(c0[r]));
            _mm256_mask_storeu_ps(c + H, m, _mm512_extractf32x8_ps(c0[r], 1));
            _mm256_mask_storeu_ps(c + 2 * H, m,
                                  _mm512_castps512_ps256(c1[r]));
            _mm256_mask_storeu_ps(c + 3 * H, m,
                                  _mm512_extractf32x8_ps(c1[r], 1));
        }
    } else {
        const __mmask16 m0 = w >= 16 ? (__mmask16)0xFFFF
                                     : (__mmask16)((1u << w) - 1);
        const __mmask16 m1 = w >= 32 ? (__mmask16)0xFFFF
            : (w <= 16 ? (__mmask16)0 : (__mmask16)((1u << (w - 16)) - 1));
        for (int r = 0; r < MR; ++r) {
            _mm512_mask_storeu_ps(C + (size_t)r * ldc, m0, c0[r]);
            _mm512_mask_storeu_ps(C + (size_t)r * ldc + 16, m1, c1[r]);
        }
    }
}

/* C rows r < MR, 32 columns of panel P: the sum over k = 0 .. K-1 of
   A[r, k] * P[k, :], as a total of partial sums over k in blocks of
   LSTM_ACCUM_CHAIN, each in increasing k, added in increasing order. */
template <int MR, bool GATES>
static inline void lstm_accum_panel_rows(int K, const float* A, int lda,
                                         const float* P, float* C, int ldc,
                                         int H, int w)
{
    __attribute__((aligned(64))) float total[MR][32];
    for (int k0 = 0; k0 < K; k0 += LSTM_ACCUM_CHAIN) {
        const int k1 = K - k0 < LSTM_ACCUM_CHAIN ? K : k0 + LSTM_ACCUM_CHAIN;
        lstm_accum_panel_chunk<MR, GATES, true>(k0, k1, K, A, lda, P,
                                                total, C, ldc, H, w);
    }
}

/* Blocks of 8 rows that share each block of a panel's rows: the panel is
   read from memory once for all of them, then from the L1 cache. */
#define LSTM_ACCUM_ROW_GROUP 4

/* lstm_accum_panel_rows for the last rows < 8 of a product (rows <= MR),
   each count with its own unrolled kernel. */
template <int MR, bool GATES>
static inline void lstm_accum_panel_tail(int rows, int K, const float* A,
                                         int lda, const float* P, float* C,
                                         int ldc, int H, int w)
{
    if (rows == MR)
        lstm_accum_panel_rows<MR, GATES>(K, A, lda, P, C, ldc, H, w);
    else if (MR > 1)
        lstm_accum_panel_tail<(MR > 1 ? MR - 1 : 1), GATES>(
            rows, K, A, lda, P, C, ldc, H, w);
}

/* C (M, .) = A (M, K) . panels [p0, p1) of P (K rows each).  GATES: gate
   panels of 8 units (C has 4H columns), else panels of 32 columns. */
template <bool GATES>
__attribute__((noinline)) static void lstm_accum_panel_product(
    int M, int K, const float* A, int lda, const float* P, float* C,
    int ldc, int H, int p0, int p1)
{
    const int width = GATES ? 8 : 32;
    for (int p = p0; p < p1; ++p) {
        const int n0 = p * width;
        const int w = H - n0 < width ? H - n0 : width;
        const float* pp = P + (size_t)p * K * 32;
        float* cp = C + n0;
        int m = 0;
        /* A panel of K rows: 32 K floats (128 KB at K = 1024, 2 MB for
           the gradient at H = 4096) read a block of K rows at a time for
           up to LSTM_ACCUM_ROW_GROUP blocks of 8 rows, rather than whole
           for each: the same sums. */
        while (m + 8 <= M) {
            const int group = (M - m) / 8 < LSTM_ACCUM_ROW_GROUP
                              ? (M - m) / 8 : LSTM_ACCUM_ROW_GROUP;
            __attribute__((aligned(64)))
                float total[LSTM_ACCUM_ROW_GROUP][8][32];
            for (int k0 = 0; k0 < K; k0 += LSTM_ACCUM_CHAIN) {
                const int k1 = K - k0 < LSTM_ACCUM_CHAIN
                               ? K : k0 + LSTM_ACCUM_CHAIN;
                lstm_accum_panel_chunk<8, GATES, true>(
                    k0, k1, K, A + (size_t)m * lda, lda, pp, total[0],
                    cp + (size_t)m * ldc, ldc, H, w);
                for (int g = 1; g < group; ++g) {
                    const int r = m + 8 * g;
                    lstm_accum_panel_chunk<8, GATES, false>(
                        k0, k1, K, A + (size_t)r * lda, lda, pp, total[g],
                        cp + (size_t)r * ldc, ldc, H, w);
                }
            }
            m += 8 * group;
        }
        if (m < M)
            lstm_accum_panel_tail<7, GATES>(M - m, K, A + (size_t)m * lda,
                                            lda, pp, cp + (size_t)m * ldc,
                                            ldc, H, w);
    }
}

/* Whether there is work (steps, units) and the panels beat BLAS for the
   steps of a batch of that many rows and H units: from 8 rows (about even
   at H = 128), and from 2 rows at H >= 256; below H = 256 small batches
   are faster on OpenBLAS's sgemm (one thread, packing included;
   benchmarks/README.md).
   A batch of one: NumPy's dot (Theano's BLAS interface without
   blas.ldflags) runs it as a matrix-vector product, which the panels do
   not beat (per-sentence training is slower with them). */
static inline bool lstm_accum_panels_pay(int steps, int batch, int H)
{
    return steps > 0 && H > 0 && (batch >= 8 || (batch >= 2 && H >= 256));
}

/* Threads for the steps of a batch of that many rows and H units.  When
   the team also runs the large products (team: team_blas.c, the
   operations' "team" property), from B H^2 >= 2^16 multiply-adds per gate
   (B = 32 and H = 46) up.  Otherwise OpenBLAS's threads run the products
   and spin after each call, taking the core from ours: the team only from
   B H^2 >= 2^24 (B = 32 and H = 725) up, below which it gains nothing in
   bucket-ids training (benchmarks/paths.py). */
static int lstm_accum_team_for(int batch, int H, bool team)
{
    const double work = (double)batch * H * H;
    return work >= (team ? 65536.0 : 16777216.0) ? lstm_accum_team_start()
                                                 : 1;
}

/* Thread rank of size's share of the panels of `width` units that cover
   H units: panels [p0, p1), units [j0, j1). */
static inline void lstm_accum_share(int H, int width, int rank, int size,
                                    int* p0, int* p1, int* j0, int* j1)
{
    const int n = (H + width - 1) / width;
    *p0 = (int)((long)n * rank / size);
    *p1 = (int)((long)n * (rank + 1) / size);
    *j0 = width * *p0;
    *j1 = width * *p1 < H ? width * *p1 : H;
}
#endif  /* LSTM_ACCUM_PANELS */
