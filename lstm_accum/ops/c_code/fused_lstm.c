#section support_code

/* The fused LSTM's loops (FusedLSTM and FusedLSTMGrad, fused_lstm.py), as
   C++ templates over the value type T (float or double).

   Row-major (C) arrays are handed to the column-major BLAS as their
   transposes:
     row-major A (B, G) = h (B, H) . W (H, G)
     <=> col-major A^T (G, B) = W^T (G, H) . h^T (H, B)  -> gemm('N', 'N')
   The gate loops take a range of units [j0, j1), so that the threads of
   the panel path (panels.c) can share a step.

   The recurrent weights come as the layer keeps them, one (H, H) matrix
   per gate (input, forget, cell, output: W[0..3]), so that no call copies
   them into one (H, 4H) matrix first: the panel path packs them straight
   from there; the BLAS path joins them into an (H, 4H) matrix in the
   module's scratch buffer, kept from call to call (panels.c).

   The panel path: float with AVX-512; double, and float without AVX-512,
   answer false and use BLAS.  Up to LSTM_ACCUM_ROWS_MAX_H units
   (panels.c) each thread of the team runs its share of the rows through
   every step; above, each owns a range of units and computes their
   columns of every step's product and their gates, with one barrier per
   step. */
namespace {
template <typename T>
struct lstm_accum_panels {
    /* false: use BLAS */
    static bool forward(bool, int, int, int, const T*, const T*,
                        const T* const*, const T*, const T*, const T*,
                        const T*, const T*, T*, T*, T*)
    {
        return false;
    }
    template <bool AUX>
    static bool backward(bool, int, int, int, T, const T* const*,
                         const T*, const T*, const T*, const T*, const T*,
                         const T*, const T*, const T*, const T*, T*, T*, T*,
                         T*, T*, T*, T*)
    {
        return false;
    }
};

#if LSTM_ACCUM_PANELS
template <>
struct lstm_accum_panels<float> {
    static bool forward(bool team, int steps, int batch, int H,
                        const float* x,
                        const float* bias, const float* const* W,
                        const float* wci,
                        const float* wcf, const float* wco, const float* c0,
                        const float* h0, float* hid, float* cell,
                        float* act);
    template <bool AUX>
    static bool backward(bool team, int steps, int batch, int H,
                         float clip,
                         const float* const* W, const float* wci,
                         const float* wcf,
                         const float* wco, const float* c0,
                         const float* cell, const float* act,
                         const float* dhid, const float* dcell,
                         const float* dact, float* dx, float* dbias,
                         float* dwci, float* dwcf, float* dwco, float* dc,
                         float* dh);
};
#endif
}  // namespace

/* BLAS's gemm for float and for double. */
static inline void lstm_accum_xgemm(char* ta, char* tb, int* m, int* n,
                                    int* k, float* alpha, float* a,
                                    int* lda, float* b, int* ldb,
                                    float* beta, float* c, int* ldc)
{
    sgemm_(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

static inline void lstm_accum_xgemm(char* ta, char* tb, int* m, int* n,
                                    int* k, double* alpha, double* a,
                                    int* lda, double* b, int* ldb,
                                    double* beta, double* c, int* ldc)
{
    dgemm_(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

template <typename T>
static void lstm_accum_gemm(char ta, char tb, int m, int n, int k, T alpha,
                            T* a, int lda, T* b, int ldb, T beta, T* c,
                            int ldc)
{
    if (m == 0 || n == 0)
        return;
    if (k == 0) {
        /* C = beta * C; only beta in {0, 1} is used here. */
        if (beta == 0)
            for (int j = 0; j < n; ++j)
                memset(c + (size_t)j * ldc, 0, sizeof(T) * m);
        return;
    }
    lstm_accum_xgemm(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta,
                     c, &ldc);
}

/* The recurrent weights' gradient dW (H, G) = Hprev^T (H, TB) . dx
   (TB, G), row-major, on the team (team_blas.c) when asked, in float;
   false: the caller uses BLAS. */
static inline bool lstm_accum_team_weight_grad(bool team, int H, int TB,
                                               const float* hprev,
                                               const float* dx, float* dW)
{
    return team && lstm_accum_team_sgemm(true, false, H, 4L * H, TB, hprev,
                                         H, dx, 4L * H, 0.0f, dW, 4L * H);
}

static inline bool lstm_accum_team_weight_grad(bool, int, int,
                                               const double*,
                                               const double*, double*)
{
    return false;
}

template <typename T>
static inline T lstm_accum_sigmoid(T x)
{
    return (T)1 / ((T)1 + lstm_accum_exp(-x));
}

/* One step's gates, cells and outputs for units [j0, j1): a holds
   h_prev . W on entry and the activations on exit.  noinline: inlined
   into Theano's large generated function, GCC no longer vectorises the
   gate loops. */
template <typename T>
__attribute__((noinline)) static void lstm_accum_gates_forward(
    int batch, int H, int j0, int j1, T* a, const T* xt,
    const T* bias, const T* wci, const T* wcf,
    const T* wco, const T* c_prev, T* c_out, T* h_out)
{
    const int G = 4 * H;
    for (int b = 0; b < batch; ++b) {
        T* __restrict__ ab = a + (size_t)b * G;
        const T* __restrict__ xb = xt + (size_t)b * G;
        const T* __restrict__ cp = c_prev + (size_t)b * H;
        T* __restrict__ co = c_out + (size_t)b * H;
        T* __restrict__ ho = h_out + (size_t)b * H;
#pragma GCC ivdep
        for (int j = j0; j < j1; ++j) {
            T i = lstm_accum_sigmoid(
                ab[j] + xb[j] + bias[j] + cp[j] * wci[j]);
            T f = lstm_accum_sigmoid(
                ab[H + j] + xb[H + j] + bias[H + j] + cp[j] * wcf[j]);
            T g = lstm_accum_tanh(
                ab[2 * H + j] + xb[2 * H + j] + bias[2 * H + j]);
            T os = lstm_accum_sigmoid(
                ab[3 * H + j] + xb[3 * H + j] + bias[3 * H + j]);
            T c = f * cp[j] + i * g;
            co[j] = c;
            ho[j] = (os + c * wco[j]) * lstm_accum_tanh(c);
            ab[j] = i;
            ab[H + j] = f;
            ab[2 * H + j] = g;
            ab[3 * H + j] = os;
        }
    }
}

/* One step's gate gradients for units [j0, j1): writes d (the clipped
   pre-activation gradients), updates dc (in: from step t+1; out: to step
   t-1) and the sums gci, gcf, gco, gb; reads dh (from step t+1).  AUX: the
   cost also reaches the cell states (ec) and the gate activations (ea);
   otherwise those are NULL and the branches go.  sums: 0, every row adds
   to the same dwci, dwcf, dwco, dbias; else row b adds to its own, sums
   values further on. */
template <typename T, bool AUX>
__attribute__((noinline)) static void lstm_accum_gates_backward(
    int batch, int H, int j0, int j1, T clip, const T* at,
    const T* c_prev, const T* ct, const T* dht,
    const T* ect, const T* eat, const T* wci,
    const T* wcf, const T* wco, T* dc, const T* dh,
    T* d, T* dwci, T* dwcf, T* dwco, T* dbias, size_t sums)
{
    const int G = 4 * H;
    for (int b = 0; b < batch; ++b) {
        const T* __restrict__ ab = at + (size_t)b * G;
        const T* __restrict__ cp = c_prev + (size_t)b * H;
        const T* __restrict__ cb = ct + (size_t)b * H;
        const T* __restrict__ dhb = dht + (size_t)b * H;
        T* __restrict__ dcb = dc + (size_t)b * H;
        const T* __restrict__ dhn = dh + (size_t)b * H;
        T* __restrict__ db = d + (size_t)b * G;
        T* __restrict__ gci = dwci + b * sums;
        T* __restrict__ gcf = dwcf + b * sums;
        T* __restrict__ gco = dwco + b * sums;
        T* __restrict__ gb = dbias + b * sums;
        const T* __restrict__ ecb = AUX ? ect + (size_t)b * H : NULL;
        const T* __restrict__ eab = AUX ? eat + (size_t)b * G : NULL;
#pragma GCC ivdep
        for (int j = j0; j < j1; ++j) {
            T i = ab[j], f = ab[H + j], g = ab[2 * H + j],
                  os = ab[3 * H + j];
            T c = cb[j], tc = lstm_accum_tanh(c);
            T o = os + c * wco[j];
            T h_grad = dhb[j] + dhn[j];
            T do_ = h_grad * tc;
            T c_grad = dcb[j] + h_grad * o * (1 - tc * tc)
                           + do_ * wco[j];
            /* upstream gradients of the activations i, f, g, o_s */
            T gi, gf, gg, go;
            if (AUX) {
                c_grad += ecb[j];
                gi = c_grad * g + eab[j];
                gf = c_grad * cp[j] + eab[H + j];
                gg = c_grad * i + eab[2 * H + j];
                go = do_ + eab[3 * H + j];
            } else {
                gi = c_grad * g;
                gf = c_grad * cp[j];
                gg = c_grad * i;
                go = do_;
            }
            T d_o = go * os * (1 - os);
            T d_i = gi * i * (1 - i);
            T d_f = gf * f * (1 - f);
            T d_g = gg * (1 - g * g);
            gco[j] += do_ * c;
            gci[j] += d_i * cp[j];
            gcf[j] += d_f * cp[j];
            dcb[j] = c_grad * f + d_i * wci[j] + d_f * wcf[j];
            if (clip > 0) {
                d_i = d_i > clip ? clip : (d_i < -clip ? -clip : d_i);
                d_f = d_f > clip ? clip : (d_f < -clip ? -clip : d_f);
                d_g = d_g > clip ? clip : (d_g < -clip ? -clip : d_g);
                d_o = d_o > clip ? clip : (d_o < -clip ? -clip : d_o);
            }
            db[j] = d_i;
            db[H + j] = d_f;
            db[2 * H + j] = d_g;
            db[3 * H + j] = d_o;
            gb[j] += d_i;
            gb[H + j] += d_f;
            gb[2 * H + j] += d_g;
            gb[3 * H + j] += d_o;
        }
    }
}

/* The gates' (H, H) matrices W[0..3] as one (H, 4H) row-major matrix, as
   BLAS multiplies it: a copy in the module's scratch buffer (panels.c),
   valid until the next call, or NULL with MemoryError set. */
template <typename T>
static T* lstm_accum_join_gates(int H, const T* const* W)
{
    const size_t G = 4 * (size_t)H;
    T* J = (T*)lstm_accum_scratch_buffer(
        (sizeof(T) * (H > 0 ? G * H : 1) + sizeof(float) - 1)
        / sizeof(float));
    if (!J) {
        PyErr_NoMemory();
        return NULL;
    }
    for (int k = 0; k < H; ++k)
        for (int g = 0; g < 4; ++g)
            memcpy(J + k * G + (size_t)g * H, W[g] + (size_t)k * H,
                   sizeof(T) * H);
    return J;
}

/* The forward steps; on failure (no memory), returns with an exception
   set. */
template <typename T>
static void lstm_accum_fused_forward(
    bool team, int steps, int batch, int H, const T* x, const T* bias,
    const T* const* W,
    const T* wci, const T* wcf, const T* wco,
    T* c0, T* h0, T* hid, T* cell, T* act)
{
    const int G = 4 * H;
    const size_t sh = (size_t)batch * H, sg = (size_t)batch * G;
    if (steps <= 0 || lstm_accum_panels<T>::forward(
            team, steps, batch, H, x, bias, W, wci, wcf, wco, c0, h0, hid,
            cell, act))
        return;
    T* J = lstm_accum_join_gates<T>(H, W);
    if (!J)
        return;
    for (int t = 0; t < steps; ++t) {
        T* h_prev = t ? hid + (t - 1) * sh : h0;
        const T* c_prev = t ? cell + (t - 1) * sh : c0;
        T* a = act + t * sg;
        /* a = h_prev . W */
        lstm_accum_gemm<T>('N', 'N', G, batch, H, 1, J, G, h_prev, H, 0,
                              a, G);
        lstm_accum_gates_forward<T>(batch, H, 0, H, a, x + t * sg, bias,
                                       wci, wcf, wco, c_prev, cell + t * sh,
                                       hid + t * sh);
    }
}

/* The backward steps and the weights' gradients; on failure (no memory),
   returns with an exception set. */
template <typename T, bool AUX>
static void lstm_accum_fused_backward(
    bool team, int steps, int batch, int H, T clip, const T* const* W,
    const T* wci, const T* wcf, const T* wco,
    const T* c0, T* h0, T* hid, const T* cell,
    const T* act, const T* dhid, const T* dcell,
    const T* dact, T* dx, T* dbias, T* dW,
    T* dwci, T* dwcf, T* dwco, T* dc, T* dh)
{
    const int G = 4 * H;
    const size_t sh = (size_t)batch * H, sg = (size_t)batch * G;
    /* dc, dh: the gradients flowing into step t from step t+1; at the end
       those of cell_init and hid_init. */
    memset(dc, 0, sizeof(T) * sh);
    memset(dh, 0, sizeof(T) * sh);
    memset(dwci, 0, sizeof(T) * H);
    memset(dwcf, 0, sizeof(T) * H);
    memset(dwco, 0, sizeof(T) * H);
    memset(dbias, 0, sizeof(T) * G);
    if (!lstm_accum_panels<T>::template backward<AUX>(
            team, steps, batch, H, clip, W, wci, wcf, wco, c0, cell, act, dhid,
            dcell, dact, dx, dbias, dwci, dwcf, dwco, dc, dh)) {
        T* J = steps > 0 ? lstm_accum_join_gates<T>(H, W) : NULL;
        if (steps > 0 && !J)
            return;
        for (int t = steps - 1; t >= 0; --t) {
            T* d = dx + t * sg;
            lstm_accum_gates_backward<T, AUX>(
                batch, H, 0, H, clip, act + t * sg,
                t ? cell + (t - 1) * sh : c0, cell + t * sh, dhid + t * sh,
                AUX ? dcell + t * sh : NULL, AUX ? dact + t * sg : NULL,
                wci, wcf, wco, dc, dh, d, dwci, dwcf, dwco, dbias, 0);
            /* dh = d . W^T   (col-major: dh^T (H, B) = W (H, G) . d^T) */
            lstm_accum_gemm<T>('T', 'N', H, batch, G, 1, J, G, d, G, 0,
                                  dh, H);
        }
    }
    /* dW = Hprev^T . dx with Hprev = [h0; hid[0 .. T-2]]  (T*B, H),
       one product (col-major: dW^T (G, H) = dx^T (G, TB) . Hprev (TB, H)).
       Hprev is hid shifted by one step: copied into a scratch buffer so
       that the product is a single call with beta = 0. */
    if (steps <= 1) {
        lstm_accum_gemm<T>('N', 'T', G, H, batch, 1, dx, G, h0, H, 0, dW,
                              G);
        return;
    }
    T* hprev = (T*)malloc(sizeof(T) * sh * steps);
    if (!hprev) {
        lstm_accum_gemm<T>('N', 'T', G, H, batch, 1, dx, G, h0, H, 0, dW,
                              G);
        lstm_accum_gemm<T>('N', 'T', G, H, (steps - 1) * batch, 1,
                              dx + sg, G, hid, H, 1, dW, G);
        return;
    }
    memcpy(hprev, h0, sizeof(T) * sh);
    memcpy(hprev + sh, hid, sizeof(T) * sh * (steps - 1));
    if (!lstm_accum_team_weight_grad(team, H, steps * batch, hprev, dx, dW))
        lstm_accum_gemm<T>('N', 'T', G, H, steps * batch, 1, dx, G, hprev, H,
                          0, dW, G);
    free(hprev);
}

#if LSTM_ACCUM_PANELS
struct lstm_accum_forward_args {
    int steps, batch, H;
    const float *x, *bias;
    const float* const* W;
    const float *wci, *wcf, *wco, *c0, *h0;
    float *P, *hid, *cell, *act;
    lstm_accum_barrier barrier;
};

static void lstm_accum_forward_work(void* p, int rank, int size)
{
    lstm_accum_forward_args* a = (lstm_accum_forward_args*)p;
    const int H = a->H, G = 4 * H, batch = a->batch;
    const size_t sh = (size_t)batch * H, sg = (size_t)batch * G;
    int p0, p1, j0, j1, local = 0;
    lstm_accum_share(H, 8, rank, size, &p0, &p1, &j0, &j1);
    lstm_accum_pack_gates(H, a->W, a->P, p0, p1);
    for (int t = 0; t < a->steps; ++t) {
        const float* h_prev = t ? a->hid + (t - 1) * sh : a->h0;
        float* act = a->act + t * sg;
        if (p0 < p1) {
            lstm_accum_panel_product<true>(batch, H, h_prev, H, a->P, act,
                                           G, H, p0, p1);
            lstm_accum_gates_forward<float>(
                batch, H, j0, j1, act, a->x + t * sg, a->bias, a->wci,
                a->wcf, a->wco, t ? a->cell + (t - 1) * sh : a->c0,
                a->cell + t * sh, a->hid + t * sh);
        }
        if (t + 1 < a->steps)
            lstm_accum_barrier_wait(&a->barrier, size, &local);
    }
}

/* The start of a job with the rows shared: rank packs its share of the
   panels of `width` units (pack: lstm_accum_pack_gates or
   lstm_accum_pack_transposed), the threads meet once, and rank takes its
   even share [b0, b1) of the batch's rows; false when it has none. */
static bool lstm_accum_rows_start(int H, int width,
                                  void (*pack)(int, const float* const*,
                                               float*, int, int),
                                  const float* const* W, float* P,
                                  lstm_accum_barrier* barrier, int batch,
                                  int rank, int size, int* b0, int* b1)
{
    int p0, p1, j0, j1, local = 0;
    lstm_accum_share(H, width, rank, size, &p0, &p1, &j0, &j1);
    pack(H, W, P, p0, p1);
    lstm_accum_barrier_wait(barrier, size, &local);
    *b0 = (int)((long)batch * rank / size);
    *b1 = (int)((long)batch * (rank + 1) / size);
    return *b0 < *b1;
}

/* The forward steps with the rows shared: the threads pack the panels
   together, meet once, then each runs its rows through every step alone
   (the rows are separate sentences). */
static void lstm_accum_forward_rows(void* p, int rank, int size)
{
    lstm_accum_forward_args* a = (lstm_accum_forward_args*)p;
    const int H = a->H, G = 4 * H, batch = a->batch;
    const size_t sh = (size_t)batch * H, sg = (size_t)batch * G;
    int b0, b1;
    if (!lstm_accum_rows_start(H, 8, lstm_accum_pack_gates, a->W, a->P,
                               &a->barrier, batch, rank, size, &b0, &b1))
        return;
    const int rows = b1 - b0, panels = (H + 7) / 8;
    for (int t = 0; t < a->steps; ++t) {
        const float* h_prev = (t ? a->hid + (t - 1) * sh : a->h0)
                              + (size_t)b0 * H;
        const float* c_prev = (t ? a->cell + (t - 1) * sh : a->c0)
                              + (size_t)b0 * H;
        float* act = a->act + t * sg + (size_t)b0 * G;
        lstm_accum_panel_product<true>(rows, H, h_prev, H, a->P, act, G, H,
                                       0, panels);
        lstm_accum_gates_forward<float>(
            rows, H, 0, H, act, a->x + t * sg + (size_t)b0 * G, a->bias,
            a->wci, a->wcf, a->wco, c_prev, a->cell + t * sh + (size_t)b0 * H,
            a->hid + t * sh + (size_t)b0 * H);
    }
}

bool lstm_accum_panels<float>::forward(
    bool team, int steps, int batch, int H, const float* x, const float* bias,
    const float* const* W, const float* wci, const float* wcf,
    const float* wco, const float* c0, const float* h0, float* hid,
    float* cell, float* act)
{
    if (!lstm_accum_panels_pay(steps, batch, H))
        return false;
    float* P = lstm_accum_scratch_buffer(lstm_accum_gate_panels_size(H));
    if (!P)
        return false;
    lstm_accum_forward_args a = {steps, batch, H, x, bias, W, wci, wcf,
                                 wco, c0, h0, P, hid, cell, act, {0, 0}};
    lstm_accum_team_run(lstm_accum_panels_by_rows(H)
                            ? lstm_accum_forward_rows
                            : lstm_accum_forward_work,
                        &a, lstm_accum_team_for(batch, H, team));
    return true;
}

struct lstm_accum_backward_args {
    int steps, batch, H;
    float clip;
    const float* const* W;
    const float *wci, *wcf, *wco, *c0, *cell, *act, *dhid, *dcell, *dact;
    float *P, *dx, *dbias, *dwci, *dwcf, *dwco, *dc, *dh;
    float* sums;    /* by rows: each row's 7H sums (wci, wcf, wco, bias) */
    lstm_accum_barrier barrier;
};

template <bool AUX>
static void lstm_accum_backward_work(void* p, int rank, int size)
{
    lstm_accum_backward_args* a = (lstm_accum_backward_args*)p;
    const int H = a->H, G = 4 * H, batch = a->batch;
    const size_t sh = (size_t)batch * H, sg = (size_t)batch * G;
    int q0, q1, j0, j1, local = 0;
    lstm_accum_share(H, 32, rank, size, &q0, &q1, &j0, &j1);
    lstm_accum_pack_transposed(H, a->W, a->P, q0, q1);
    for (int t = a->steps - 1; t >= 0; --t) {
        float* d = a->dx + t * sg;
        if (q0 < q1)
            lstm_accum_gates_backward<float, AUX>(
                batch, H, j0, j1, a->clip, a->act + t * sg,
                t ? a->cell + (t - 1) * sh : a->c0, a->cell + t * sh,
                a->dhid + t * sh, AUX ? a->dcell + t * sh : NULL,
                AUX ? a->dact + t * sg : NULL, a->wci, a->wcf, a->wco,
                a->dc, a->dh, d, a->dwci, a->dwcf, a->dwco, a->dbias, 0);
        /* every unit's d before anyone's dh = d . W^T; dh's columns are
           the units' own, read by their own gates at step t-1 */
        lstm_accum_barrier_wait(&a->barrier, size, &local);
        if (q0 < q1)
            lstm_accum_panel_product<false>(batch, G, d, G, a->P, a->dh, H,
                                            H, q0, q1);
    }
}

/* The backward steps with the rows shared, as lstm_accum_forward_rows;
   each row adds to sums of its own (a->sums), totalled after. */
template <bool AUX>
static void lstm_accum_backward_rows(void* p, int rank, int size)
{
    lstm_accum_backward_args* a = (lstm_accum_backward_args*)p;
    const int H = a->H, G = 4 * H, batch = a->batch;
    const size_t sh = (size_t)batch * H, sg = (size_t)batch * G;
    int b0, b1;
    if (!lstm_accum_rows_start(H, 32, lstm_accum_pack_transposed, a->W,
                               a->P, &a->barrier, batch, rank, size, &b0,
                               &b1))
        return;
    const int rows = b1 - b0, panels = (H + 31) / 32;
    const size_t sums = 7 * (size_t)H, rh = (size_t)b0 * H,
                 rg = (size_t)b0 * G;
    float* S = a->sums + b0 * sums;
    for (int t = a->steps - 1; t >= 0; --t) {
        float* d = a->dx + t * sg + rg;
        lstm_accum_gates_backward<float, AUX>(
            rows, H, 0, H, a->clip, a->act + t * sg + rg,
            (t ? a->cell + (t - 1) * sh : a->c0) + rh, a->cell + t * sh + rh,
            a->dhid + t * sh + rh, AUX ? a->dcell + t * sh + rh : NULL,
            AUX ? a->dact + t * sg + rg : NULL, a->wci, a->wcf, a->wco,
            a->dc + rh, a->dh + rh, d, S, S + H, S + 2 * H, S + 3 * H, sums);
        lstm_accum_panel_product<false>(rows, G, d, G, a->P, a->dh + rh, H,
                                        H, 0, panels);
    }
}

/* dst[j] += the rows' sums of that output, row after row. */
static void lstm_accum_add_row_sums(int batch, int H, const float* sums,
                                    float* dwci, float* dwcf, float* dwco,
                                    float* dbias)
{
    float* dst[4] = {dwci, dwcf, dwco, dbias};
    const int len[4] = {H, H, H, 4 * H};
    for (int b = 0; b < batch; ++b) {
        const float* s = sums + (size_t)b * 7 * H;
        for (int k = 0; k < 4; ++k, s += H) {
            float* __restrict__ o = dst[k];
            for (int j = 0; j < len[k]; ++j)
                o[j] += s[j];
        }
    }
}

template <bool AUX>
bool lstm_accum_panels<float>::backward(
    bool team, int steps, int batch, int H, float clip,
    const float* const* W, const float* wci, const float* wcf,
    const float* wco, const float* c0,
    const float* cell, const float* act, const float* dhid,
    const float* dcell, const float* dact, float* dx, float* dbias,
    float* dwci, float* dwcf, float* dwco, float* dc, float* dh)
{
    if (!lstm_accum_panels_pay(steps, batch, H))
        return false;
    const bool by_rows = lstm_accum_panels_by_rows(H);
    const size_t panels = lstm_accum_transposed_panels_size(H);
    float* P = lstm_accum_scratch_buffer(
        panels + (by_rows ? (size_t)7 * H * batch : 0));
    if (!P)
        return false;
    float* sums = by_rows ? P + panels : NULL;
    if (by_rows)
        memset(sums, 0, sizeof(float) * 7 * H * (size_t)batch);
    lstm_accum_backward_args a = {steps, batch, H, clip, W, wci, wcf, wco,
                                  c0, cell, act, dhid, dcell, dact, P, dx,
                                  dbias, dwci, dwcf, dwco, dc, dh, sums,
                                  {0, 0}};
    lstm_accum_team_run(by_rows ? lstm_accum_backward_rows<AUX>
                                : lstm_accum_backward_work<AUX>,
                        &a, lstm_accum_team_for(batch, H, team));
    if (by_rows)
        lstm_accum_add_row_sums(batch, H, sums, dwci, dwcf, dwco, dbias);
    return true;
}
#endif
