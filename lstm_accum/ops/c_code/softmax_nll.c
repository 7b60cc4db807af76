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

/* Contiguous copies (or references) *cx, *cb, *cy of the logits x (N, V),
   the bias b and the targets y, if they fit each other (b (V,), y (N,),
   every target in [0, V)); false otherwise, with an exception set (a
   ValueError that says which input is wrong).  The caller releases the
   copies it got (Py_XDECREF), whatever the result.  For SoftmaxNLL and
   SoftmaxNLLAndGrad. */
template <typename I>
static bool lstm_accum_softmax_inputs(PyArrayObject* x, PyArrayObject* b,
                                      PyArrayObject* y, PyArrayObject** cx,
                                      PyArrayObject** cb, PyArrayObject** cy)
{
    *cx = PyArray_GETCONTIGUOUS(x);
    *cb = PyArray_GETCONTIGUOUS(b);
    *cy = PyArray_GETCONTIGUOUS(y);
    if (!*cx || !*cb || !*cy)
        return false;
    const npy_intp N = PyArray_DIMS(*cx)[0], V = PyArray_DIMS(*cx)[1];
    if (PyArray_DIMS(*cb)[0] != V || PyArray_DIMS(*cy)[0] != N) {
        PyErr_Format(PyExc_ValueError,
            "SoftmaxNLL: inconsistent shapes: logits (%ld, %ld), "
            "b (%ld,), y (%ld,) (expected b (V,) and y (N,) for "
            "logits (N, V))", (long)N, (long)V,
            (long)PyArray_DIMS(*cb)[0], (long)PyArray_DIMS(*cy)[0]);
        return false;
    }
    const I* t = (const I*)PyArray_DATA(*cy);
    const npy_intp bad = lstm_accum_first_bad_target(N, V, t);
    if (bad >= 0) {
        PyErr_Format(PyExc_ValueError,
            "SoftmaxNLL: target %lld (row %ld) is out of range for "
            "V = %ld classes (targets must be in [0, %ld))",
            (long long)t[bad], (long)bad, (long)V, (long)V);
        return false;
    }
    return true;
}

/* nll[n] = log(sum_j exp(z[n, j] - m_n)) - (z[n, y_n] - m_n) and
   sm[n, :] = softmax(z[n, :]), z = x + b, m_n = max_j z[n, j], for the
   rows [n0, n1).  With sm NULL (the loss alone, SoftmaxNLLLoss), each
   row's exponentials go to row (V values of scratch) and are not
   normalised: the same nll, without writing an (N, V) matrix.  The
   targets have been checked. */
template <typename T, typename I>
__attribute__((noinline)) static void lstm_accum_softmax_nll_forward(
    npy_intp n0, npy_intp n1, npy_intp V, const T* x,
    const T* __restrict__ b, const I* y, T* nll, T* sm, T* row)
{
    for (npy_intp n = n0; n < n1; ++n) {
        const T* __restrict__ xr = x + n * V;
        T* __restrict__ sr = sm ? sm + n * V : row;
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
        if (sm) {
            const T inv = (T)(1.0 / s);
#pragma omp simd
            for (npy_intp j = 0; j < V; ++j)
                sr[j] *= inv;
        }
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

/* dx[n, j] = g[n] * (sm[n, j] - onehot(y_n)[j]); db[j] = sum_n dx[n, j],
   for the columns [j0, j1) (each element's arithmetic is the same for any
   range).  The target's element is g * (sm - 1), computed apart so that
   the rest of the row is branch-free loops.  acc: V doubles, part: V T's
   (scratch; only [j0, j1) is used). */
template <typename T, typename I>
__attribute__((noinline)) static void lstm_accum_softmax_nll_backward(
    npy_intp N, npy_intp V, npy_intp j0, npy_intp j1, const T* g,
    const T* sm, const I* y, T* dx, T* __restrict__ db,
    double* __restrict__ acc, T* __restrict__ part)
{
    memset(acc + j0, 0, sizeof(double) * (j1 - j0));
    for (npy_intp n0 = 0; n0 < N; n0 += LSTM_ACCUM_DB_BLOCK) {
        const npy_intp n1 = N - n0 < LSTM_ACCUM_DB_BLOCK ? N
                            : n0 + LSTM_ACCUM_DB_BLOCK;
        memset(part + j0, 0, sizeof(T) * (j1 - j0));
        for (npy_intp n = n0; n < n1; ++n) {
            const T* s = sm + n * V;
            T* d = dx + n * V;
            const T gn = g[n];
            const npy_intp t = (npy_intp)y[n];
            if (t < j0 || t >= j1) {
                lstm_accum_softmax_nll_grad_run<T>(j1 - j0, gn, s + j0,
                                                   d + j0, part + j0);
                continue;
            }
            lstm_accum_softmax_nll_grad_run<T>(t - j0, gn, s + j0, d + j0,
                                               part + j0);
            d[t] = gn * (s[t] - (T)1);
            part[t] += d[t];
            lstm_accum_softmax_nll_grad_run<T>(j1 - t - 1, gn, s + t + 1,
                                               d + t + 1, part + t + 1);
        }
#pragma omp simd
        for (npy_intp j = j0; j < j1; ++j)
            acc[j] += part[j];
    }
#pragma omp simd
    for (npy_intp j = j0; j < j1; ++j)
        db[j] = (T)acc[j];
}

/* The loops on the team (team.c) when team is true and the work is
   large enough to pay for waking it: the forward's rows, the backward's
   columns (in blocks of 16, a cache line of floats) shared out.  Every
   element is computed as on one thread: the same results. */
template <typename T, typename I>
struct lstm_accum_softmax_job {
    npy_intp N, V;
    const T *x, *b, *g, *sm;
    const I* y;
    T *nll, *out, *db;
    double* acc;
    T* part;       /* the backward's block sums; the loss's rows */
};

template <typename T, typename I>
static void lstm_accum_softmax_forward_work(void* p, int rank, int size)
{
    const lstm_accum_softmax_job<T, I>* j =
        (const lstm_accum_softmax_job<T, I>*)p;
    lstm_accum_softmax_nll_forward<T, I>(
        j->N * rank / size, j->N * (rank + 1) / size, j->V, j->x, j->b,
        j->y, j->nll, j->out, j->out ? NULL : j->part + rank * j->V);
}

template <typename T, typename I>
static void lstm_accum_softmax_backward_work(void* p, int rank, int size)
{
    const lstm_accum_softmax_job<T, I>* j =
        (const lstm_accum_softmax_job<T, I>*)p;
    long j0, j1;
    lstm_accum_team_share(j->V, rank, size, &j0, &j1);
    if (j0 < j1)
        lstm_accum_softmax_nll_backward<T, I>(j->N, j->V, j0, j1, j->g,
                                              j->sm, j->y, j->out, j->db,
                                              j->acc, j->part);
}

static inline int lstm_accum_softmax_team(bool team, npy_intp N, npy_intp V)
{
    return team ? lstm_accum_team_for_items((double)N * V) : 1;
}

/* The forward on the team; with sm NULL (the loss alone), each thread
   writes its rows' exponentials to V values of its own.  Returns false,
   having computed nothing, when that scratch cannot be allocated. */
template <typename T, typename I>
static bool lstm_accum_softmax_nll_forward_team(
    bool team, npy_intp N, npy_intp V, const T* x, const T* b, const I* y,
    T* nll, T* sm)
{
    const int size = lstm_accum_softmax_team(team, N, V);
    T* rows = NULL;
    if (!sm) {
        rows = (T*)malloc(sizeof(T) * (V ? V : 1) * size);
        if (!rows)
            return false;
    }
    lstm_accum_softmax_job<T, I> job = {N, V, x, b, NULL, NULL, y, nll, sm,
                                        NULL, NULL, rows};
    lstm_accum_team_run(lstm_accum_softmax_forward_work<T, I>, &job, size);
    free(rows);
    return true;
}

/* The forward and the backward of a loss whose gradient with respect to
   every nll is one (a sum: the training loss), in one pass over the rows
   (SoftmaxNLLAndGrad).  Each thread takes its share of the rows in blocks
   of LSTM_ACCUM_DB_BLOCK (the team's shares start on multiples of 16): the
   forward writes a block's softmax into the thread's scratch, and the
   backward, on those rows still in cache, writes their dlogits and the
   block's column sums.  Then the columns are shared out and each column's
   block sums are added in double, block after block.  The same functions
   on the same rows, and the sums in the same order, as SoftmaxNLL followed
   by SoftmaxNLLGrad with g = 1: the same results, bit for bit, without
   the softmax's (N, V) round trip through memory. */
template <typename T, typename I>
struct lstm_accum_softmax_both_job {
    npy_intp N, V;
    const T *x, *b;
    const I* y;
    T *nll, *dx, *db;
    T* blocks;      /* each block's column sums, V values a block */
    char* scratch;  /* a thread's: V doubles, V values, a block's softmax */
    size_t stride;  /* bytes of scratch a thread */
};

template <typename T>
static size_t lstm_accum_softmax_both_stride(npy_intp V)
{
    const size_t bytes = sizeof(double) * V
                         + sizeof(T) * V * (LSTM_ACCUM_DB_BLOCK + 1);
    return (bytes + 63) / 64 * 64;
}

template <typename T, typename I>
static void lstm_accum_softmax_both_rows(void* p, int rank, int size)
{
    static const T ones[LSTM_ACCUM_DB_BLOCK] = {
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    const lstm_accum_softmax_both_job<T, I>* j =
        (const lstm_accum_softmax_both_job<T, I>*)p;
    const npy_intp V = j->V;
    double* acc = (double*)(j->scratch + j->stride * rank);
    T* part = (T*)(acc + V);
    T* sm = part + V;
    long r0, r1;
    lstm_accum_team_share(j->N, rank, size, &r0, &r1);
    for (npy_intp n0 = r0; n0 < r1; n0 += LSTM_ACCUM_DB_BLOCK) {
        const npy_intp rows = r1 - n0 < LSTM_ACCUM_DB_BLOCK
                              ? r1 - n0 : LSTM_ACCUM_DB_BLOCK;
        lstm_accum_softmax_nll_forward<T, I>(0, rows, V, j->x + n0 * V,
                                             j->b, j->y + n0, j->nll + n0,
                                             sm, NULL);
        lstm_accum_softmax_nll_backward<T, I>(
            rows, V, 0, V, ones, sm, j->y + n0, j->dx + n0 * V,
            j->blocks + n0 / LSTM_ACCUM_DB_BLOCK * V, acc, part);
    }
}

template <typename T, typename I>
static void lstm_accum_softmax_both_columns(void* p, int rank, int size)
{
    const lstm_accum_softmax_both_job<T, I>* j =
        (const lstm_accum_softmax_both_job<T, I>*)p;
    const npy_intp V = j->V;
    const npy_intp blocks = (j->N + LSTM_ACCUM_DB_BLOCK - 1)
                            / LSTM_ACCUM_DB_BLOCK;
    long j0, j1;
    lstm_accum_team_share(V, rank, size, &j0, &j1);
    for (npy_intp c = j0; c < j1; ++c) {
        double s = 0;
        for (npy_intp k = 0; k < blocks; ++k)
            s += j->blocks[k * V + c];
        j->db[c] = (T)s;
    }
}

/* Both passes, on the team when team is true; returns false, having
   computed nothing, when the scratch cannot be allocated. */
template <typename T, typename I>
static bool lstm_accum_softmax_nll_both_team(
    bool team, npy_intp N, npy_intp V, const T* x, const T* b, const I* y,
    T* nll, T* dx, T* db)
{
    const int size = lstm_accum_softmax_team(team, N, V);
    const size_t stride = lstm_accum_softmax_both_stride<T>(V);
    const npy_intp blocks = (N + LSTM_ACCUM_DB_BLOCK - 1)
                            / LSTM_ACCUM_DB_BLOCK;
    char* scratch = (char*)aligned_alloc(
        64, stride * size + (sizeof(T) * blocks * V + 63) / 64 * 64);
    if (!scratch)
        return false;
    lstm_accum_softmax_both_job<T, I> job = {
        N, V, x, b, y, nll, dx, db, (T*)(scratch + stride * size), scratch,
        stride};
    lstm_accum_team_run(lstm_accum_softmax_both_rows<T, I>, &job, size);
    lstm_accum_team_run(lstm_accum_softmax_both_columns<T, I>, &job,
                        lstm_accum_softmax_team(team, blocks, V));
    free(scratch);
    return true;
}

template <typename T, typename I>
static void lstm_accum_softmax_nll_backward_team(
    bool team, npy_intp N, npy_intp V, const T* g, const T* sm, const I* y,
    T* dx, T* db, double* acc, T* part)
{
    lstm_accum_softmax_job<T, I> job = {N, V, NULL, NULL, g, sm, y, NULL,
                                        dx, db, acc, part};
    lstm_accum_team_run(lstm_accum_softmax_backward_work<T, I>, &job,
                        lstm_accum_softmax_team(team, N, V));
}
