#section support_code

/* One thread pool for the products and the loops (after team.c).

   NumPy's OpenBLAS runs its matrix products on threads of its own, which
   spin for a while after each product; our loops run on the team of
   team.c.  Taking turns, each pool's idle threads spin against the
   other's working ones on the same cores.  Here the team runs the large
   float32 products too: each thread of the team multiplies its share of
   the rows (or columns) of the result with a BLAS gemm on one thread, so
   OpenBLAS's own threads are never woken by our operations and go to
   sleep.

   Two BLAS libraries are looked for among those the process has loaded:
   NumPy's own OpenBLAS, the one that exports the 64-bit-integer interface
   NumPy's wheels use (cblas_sgemm64_, openblas_set_num_threads64_,
   openblas_get_num_threads64_), and MKL's single dynamic library
   (libmkl_rt), which ops/mkl.py loads when the mkl package is installed
   (by default on Intel CPUs only).
   The team's products run on MKL when it is loaded with the sequential
   threading layer (one thread per call) and strict conditional numerical
   reproducibility (the same sums whatever the share and the alignment);
   otherwise on OpenBLAS, set to one thread while the team multiplies (every
   call then runs on the thread that makes it) and set back after.
   Without NumPy's OpenBLAS (NumPy built against another BLAS),
   lstm_accum_team_sgemm answers false and the caller uses its own path.

   From LSTM_ACCUM_TEAM_GEMM_MIN multiply-adds up, every element of the
   result is one call's sum over the whole inner dimension.  Where the
   BLAS sums in the same order whatever the share (MKL's strict mode,
   OpenBLAS's SkylakeX kernels) the results do not depend on the number of
   threads and equal its one-thread results bit for bit; OpenBLAS's
   Haswell and Zen kernels order some sums by the share, so there they
   differ between thread counts by float32 rounding (tests/test_team.py). */
#include <dlfcn.h>
#include <link.h>

typedef long long lstm_accum_blasint;
/* cblas_sgemm64_(order, transa, transb, m, n, k, alpha, a, lda, b, ldb,
   beta, c, ldc) with 64-bit dimensions; the enums are ints. */
typedef void (*lstm_accum_cblas_sgemm)(
    int, int, int, lstm_accum_blasint, lstm_accum_blasint,
    lstm_accum_blasint, float, const float*, lstm_accum_blasint,
    const float*, lstm_accum_blasint, float, float*, lstm_accum_blasint);

static struct {
    int state;             /* 0: not looked for; 1: found; -1: absent */
    lstm_accum_cblas_sgemm sgemm;          /* NumPy's OpenBLAS */
    void (*set_threads)(int);
    int (*get_threads)(void);
    lstm_accum_cblas_sgemm team_sgemm;     /* MKL, or sgemm */
} lstm_accum_blas_ = {0, NULL, NULL, NULL, NULL};

/* MKL's settings that the team needs (mkl_cbwr.h): MKL_CBWR_AUTO |
   MKL_CBWR_STRICT, as read back with MKL_CBWR_ALL. */
#define LSTM_ACCUM_MKL_CBWR (2 | 0x10000)

static void lstm_accum_blas_openblas(void* lib)
{
    void* gemm = dlsym(lib, "cblas_sgemm64_");
    void* set = dlsym(lib, "openblas_set_num_threads64_");
    void* get = dlsym(lib, "openblas_get_num_threads64_");
    if (!gemm || !set || !get || lstm_accum_blas_.sgemm) {
        dlclose(lib);
        return;
    }
    lstm_accum_blas_.sgemm = (lstm_accum_cblas_sgemm)gemm;
    lstm_accum_blas_.set_threads = (void (*)(int))set;
    lstm_accum_blas_.get_threads = (int (*)(void))get;
}                          /* the library stays open */

static void lstm_accum_blas_mkl(void* lib)
{
    void* gemm = dlsym(lib, "cblas_sgemm_64");
    void* cbwr = dlsym(lib, "MKL_CBWR_Get");
    void* threads = dlsym(lib, "MKL_Get_Max_Threads");
    if (!gemm || !cbwr || !threads || lstm_accum_blas_.team_sgemm ||
            ((int (*)(int))cbwr)(-1) != LSTM_ACCUM_MKL_CBWR ||
            ((int (*)(void))threads)() != 1) {
        dlclose(lib);
        return;
    }
    lstm_accum_blas_.team_sgemm = (lstm_accum_cblas_sgemm)gemm;
}

static int lstm_accum_blas_look(struct dl_phdr_info* info, size_t, void*)
{
    const char* name = info->dlpi_name;
    const bool openblas = name && strstr(name, "openblas");
    const bool mkl = name && strstr(name, "libmkl_rt");
    if (!openblas && !mkl)
        return 0;
    void* lib = dlopen(name, RTLD_LAZY | RTLD_NOLOAD);
    if (lib)
        (openblas ? lstm_accum_blas_openblas : lstm_accum_blas_mkl)(lib);
    return 0;              /* look at every library */
}

static bool lstm_accum_blas_found(void)
{
    if (!lstm_accum_blas_.state) {
        dl_iterate_phdr(lstm_accum_blas_look, NULL);
        lstm_accum_blas_.state = lstm_accum_blas_.sgemm ? 1 : -1;
        if (!lstm_accum_blas_.team_sgemm)
            lstm_accum_blas_.team_sgemm = lstm_accum_blas_.sgemm;
    }
    return lstm_accum_blas_.state > 0;
}

/* Products of fewer multiply-adds (a sentence's, at small H) run as
   NumPy's dot runs them: one OpenBLAS call, on its own threads; below
   this size, setting OpenBLAS to one thread and waking the team cost
   more than they save (benchmarks/paths.py, per-sentence paths). */
#define LSTM_ACCUM_TEAM_GEMM_MIN 8388608.0

struct lstm_accum_gemm_job {
    lstm_accum_cblas_sgemm sgemm;
    bool ta, tb, by_rows;
    long M, N, K;
    const float* A;
    long lda;
    const float* B;
    long ldb;
    float beta;
    float* C;
    long ldc;
};

static void lstm_accum_gemm_work(void* p, int rank, int size)
{
    const lstm_accum_gemm_job* j = (const lstm_accum_gemm_job*)p;
    const long n = j->by_rows ? j->M : j->N;
    long s0, s1;
    lstm_accum_team_share(n, rank, size, &s0, &s1);
    if (s0 >= s1)
        return;
    const int order = 101, no = 111, yes = 112;     /* CBLAS's enums */
    const float* A = j->A;
    const float* B = j->B;
    float* C = j->C;
    long M = j->M, N = j->N;
    if (j->by_rows) {
        A += j->ta ? s0 : s0 * j->lda;
        C += s0 * j->ldc;
        M = s1 - s0;
    } else {
        B += j->tb ? s0 * j->ldb : s0;
        C += s0;
        N = s1 - s0;
    }
    j->sgemm(order, j->ta ? yes : no, j->tb ? yes : no, M, N, j->K, 1.0f, A,
             j->lda, B, j->ldb, j->beta, C, j->ldc);
}

/* C (M, N) = op(A) op(B) + beta C, row-major, op transposing when ta / tb,
   on the team (all its threads).  The result's rows are shared when B is
   the smaller operand to pack (each thread packs all of B), its columns
   otherwise.  Returns false, having done nothing, when NumPy's OpenBLAS is
   not found. */
static bool lstm_accum_team_sgemm(bool ta, bool tb, long M, long N, long K,
                                  const float* A, long lda, const float* B,
                                  long ldb, float beta, float* C, long ldc)
{
    if (!lstm_accum_blas_found())
        return false;
    if (M <= 0 || N <= 0)
        return true;
    lstm_accum_gemm_job job = {lstm_accum_blas_.sgemm, ta, tb, N <= M, M,
                               N, K, A, lda, B, ldb, beta, C, ldc};
    if ((double)M * N * K < LSTM_ACCUM_TEAM_GEMM_MIN) {
        /* as NumPy's dot runs it (OpenBLAS's own threads) */
        lstm_accum_gemm_work(&job, 0, 1);
        return true;
    }
    job.sgemm = lstm_accum_blas_.team_sgemm;
    if (job.sgemm != lstm_accum_blas_.sgemm) {  /* MKL: sequential */
        lstm_accum_team_run(lstm_accum_gemm_work, &job,
                            lstm_accum_team_start());
        return true;
    }
    const int threads = lstm_accum_blas_.get_threads();
    if (threads != 1)
        lstm_accum_blas_.set_threads(1);
    lstm_accum_team_run(lstm_accum_gemm_work, &job, lstm_accum_team_start());
    if (threads != 1)
        lstm_accum_blas_.set_threads(threads);
    return true;
}
