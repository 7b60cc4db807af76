#section support_code

/* The softmax NLL's loops (SoftmaxNLL and SoftmaxNLLGrad, softmax_nll.py),
   as C++ templates over the value type T (float or double) and the index
   type I of the targets (npy_int32 or npy_int64).  noinline: inlined into
   Theano's large generated function, GCC no longer vectorises them.  The
   max and the sums vectorise through "#pragma omp simd reduction"
   (-fopenmp-simd; no OpenMP runtime). */
template <typename I>
static npy_intp lstm_accum_first_bad_target(npy_intp N, npy_intp V,
                                            const I* y)
{
    for (npy_intp n = 0; n < N; ++n)
        if (y[n] < 0 || (npy_intp)y[n] >= V)
            return n;
    return -1;
}

/* nll[n] = log(sum_j exp(z[n, j] - m_n)) - (z[n, y_n] - m_n) and
   sm[n, :] = softmax(z[n, :]), z = x + b, m_n = max_j z[n, j].
   The targets have been checked. */
template <typename T, typename I>
__attribute__((noinline)) static void lstm_accum_softmax_nll_forward(
    npy_intp N, npy_intp V, const T* x, const T* __restrict__ b,
    const I* y, T* nll, T* sm)
{
    for (npy_intp n = 0; n < N; ++n) {
        const T* __restrict__ xr = x + n * V;
        T* __restrict__ sr = sm + n * V;
        T m = xr[0] + b[0];
#pragma omp simd reduction(max:m)
        for (npy_intp j = 0; j < V; ++j) {
            T z = xr[j] + b[j];
            m = z > m ? z : m;
        }
#pragma omp simd
        for (npy_intp j = 0; j < V; ++j)
            sr[j] = lstm_accum_exp(xr[j] + b[j] - m);
        /* Summed in double: in float, the small terms added to the lane
           that holds exp(0) = 1 lose their low bits.  A loop of its own
           over the (cached) row: summed inside the exp loop, GCC repeats
           exp's range selects on the doubles, which is slower. */
        double s = 0;
#pragma omp simd reduction(+:s)
        for (npy_intp j = 0; j < V; ++j)
            s += sr[j];
        const T inv = (T)(1.0 / s);
#pragma omp simd
        for (npy_intp j = 0; j < V; ++j)
            sr[j] *= inv;
        const npy_intp t = (npy_intp)y[n];
        nll[n] = (T)(std::log(s) - (double)(xr[t] + b[t] - m));
    }
}

/* d[j] = g * s[j]; part[j] += d[j] for j < len. */
template <typename T>
static inline void lstm_accum_softmax_nll_grad_run(
    npy_intp len, T g, const T* __restrict__ s, T* __restrict__ d,
    T* __restrict__ part)
{
#pragma omp simd
    for (npy_intp j = 0; j < len; ++j) {
        T v = g * s[j];
        d[j] = v;
        part[j] += v;
    }
}

/* db: rows summed in T into part, part added to the double sums every
   LSTM_ACCUM_DB_BLOCK rows: float sums over thousands of rows lose the low
   bits of the bias gradient; double sums row by row cost more time than
   blocks of 16 rows, for the same accuracy. */
#define LSTM_ACCUM_DB_BLOCK 16

/* dx[n, :] = g[n] * (sm[n, :] - onehot(y_n)); db = sum_n dx[n, :].
   The target's element is g * (sm - 1), computed apart so that the rest of
   the row is one branch-free loop.  acc: V doubles, part: V T's (scratch). */
template <typename T, typename I>
__attribute__((noinline)) static void lstm_accum_softmax_nll_backward(
    npy_intp N, npy_intp V, const T* g, const T* sm, const I* y, T* dx,
    T* __restrict__ db, double* __restrict__ acc, T* __restrict__ part)
{
    memset(acc, 0, sizeof(double) * V);
    for (npy_intp n0 = 0; n0 < N; n0 += LSTM_ACCUM_DB_BLOCK) {
        const npy_intp n1 = N - n0 < LSTM_ACCUM_DB_BLOCK ? N
                            : n0 + LSTM_ACCUM_DB_BLOCK;
        memset(part, 0, sizeof(T) * V);
        for (npy_intp n = n0; n < n1; ++n) {
            const T* s = sm + n * V;
            T* d = dx + n * V;
            const T gn = g[n];
            const npy_intp t = (npy_intp)y[n];
            lstm_accum_softmax_nll_grad_run<T>(t, gn, s, d, part);
            d[t] = gn * (s[t] - (T)1);
            part[t] += d[t];
            lstm_accum_softmax_nll_grad_run<T>(V - t - 1, gn, s + t + 1,
                                               d + t + 1, part + t + 1);
        }
#pragma omp simd
        for (npy_intp j = 0; j < V; ++j)
            acc[j] += part[j];
    }
#pragma omp simd
    for (npy_intp j = 0; j < V; ++j)
        db[j] = (T)acc[j];
}
