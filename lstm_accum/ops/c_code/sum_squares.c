#section support_code

/* Sums of squares over many arrays, in chunks shared out to the team
   (accumulate.py: AccumulateIfFinite's check, SquaredNorm; after team.c).

   Each array is cut into chunks of LSTM_ACCUM_CHUNK elements, the same
   chunks whatever the number of threads; a chunk's squares are added in
   16 lanes of the array's own type (float32 overflows where a float32
   BLAS dot product does, which is what makes a huge finite gradient count
   as non-finite), the lanes then in double.  The chunks' sums are added
   in their order by the caller, so a total does not depend on the number
   of threads.  With a divisor d (SquaredNorm of averaged accumulators),
   each element is first divided by d in the array's type, the same
   division as the averaged gradient's. */
#include <cstdarg>

#define LSTM_ACCUM_CHUNK 8192

template <typename T, bool DIVIDE>
__attribute__((noinline)) static double lstm_accum_sum_squares(const T* x,
                                                               long n, T d)
{
    T lane[16] = {0};
    long i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; ++l) {
            const T v = DIVIDE ? x[i + l] / d : x[i + l];
            lane[l] += v * v;
        }
    T tail = 0;
    for (; i < n; ++i) {
        const T v = DIVIDE ? x[i] / d : x[i];
        tail += v * v;
    }
    double s = (double)tail;
    for (int l = 0; l < 16; ++l)
        s += (double)lane[l];
    return s;
}

/* The arrays of a pass: data (C-contiguous), size, float32 or not
   (float64), and the index of each array's first chunk. */
struct lstm_accum_squares_job {
    int count;
    const void* const* data;
    const long* size;
    const bool* single;
    const long* first;     /* count + 1 entries: first[count] = chunks */
    double* sums;          /* one per chunk */
    double divisor;        /* 0: none */
};

template <typename T>
static double lstm_accum_chunk_squares(const T* x, long n, double divisor)
{
    return divisor != 0.0
        ? lstm_accum_sum_squares<T, true>(x, n, (T)divisor)
        : lstm_accum_sum_squares<T, false>(x, n, (T)1);
}

static void lstm_accum_squares_work(void* p, int rank, int size)
{
    const lstm_accum_squares_job* j = (const lstm_accum_squares_job*)p;
    const long chunks = j->first[j->count];
    const long c0 = chunks * rank / size, c1 = chunks * (rank + 1) / size;
    int a = 0;
    for (long c = c0; c < c1; ++c) {
        while (j->first[a + 1] <= c)
            ++a;
        const long start = (c - j->first[a]) * LSTM_ACCUM_CHUNK;
        long n = j->size[a] - start;
        if (n > LSTM_ACCUM_CHUNK)
            n = LSTM_ACCUM_CHUNK;
        j->sums[c] = j->single[a]
            ? lstm_accum_chunk_squares((const float*)j->data[a] + start, n,
                                       j->divisor)
            : lstm_accum_chunk_squares((const double*)j->data[a] + start,
                                       n, j->divisor);
    }
}

/* The sum of the squares of every element of the arrays (float32 or
   float64, C-contiguous), divided first by divisor unless it is 0, each
   array's chunks added in their order, then the arrays' sums in theirs.
   -1 (with MemoryError set) on failure, which callers tell apart by
   PyErr_Occurred. */
static double lstm_accum_squares(int count, PyArrayObject* const* arrays,
                                 double divisor)
{
    const void** data = (const void**)malloc(sizeof(void*) * (count + 1));
    long* size = (long*)malloc(sizeof(long) * (count + 1));
    bool* single = (bool*)malloc(sizeof(bool) * (count + 1));
    long* first = (long*)malloc(sizeof(long) * (count + 1));
    double* sums = NULL;
    double total = -1.0;
    long chunks = 0;
    double items = 0.0;
    if (!data || !size || !single || !first)
        goto done;
    for (int k = 0; k < count; ++k) {
        data[k] = PyArray_DATA(arrays[k]);
        size[k] = (long)PyArray_SIZE(arrays[k]);
        single[k] = PyArray_TYPE(arrays[k]) == NPY_FLOAT32;
        first[k] = chunks;
        items += (double)size[k];
        chunks += (size[k] + LSTM_ACCUM_CHUNK - 1) / LSTM_ACCUM_CHUNK;
    }
    first[count] = chunks;
    sums = (double*)malloc(sizeof(double) * (chunks > 0 ? chunks : 1));
    if (!sums)
        goto done;
    {
        lstm_accum_squares_job job = {count, data, size, single, first,
                                      sums, divisor};
        lstm_accum_team_run(lstm_accum_squares_work, &job,
                            lstm_accum_team_for_items(items));
    }
    total = 0.0;
    for (int k = 0; k < count; ++k) {
        double t = 0.0;
        for (long c = first[k]; c < first[k + 1]; ++c)
            t += sums[c];
        total += t;
    }
done:
    if (total < 0.0)
        PyErr_NoMemory();
    free(data); free(size); free(single); free(first); free(sums);
    return total;
}

/* Whether every array is a float32 or float64 one (else a TypeError). */
static bool lstm_accum_all_float(int count, PyArrayObject* const* arrays,
                                 const char* op)
{
    for (int k = 0; k < count; ++k) {
        const int t = PyArray_TYPE(arrays[k]);
        if (t != NPY_FLOAT32 && t != NPY_FLOAT64) {
            PyErr_Format(PyExc_TypeError, "%s: input %d is not float32 or "
                         "float64", op, k);
            return false;
        }
    }
    return true;
}
