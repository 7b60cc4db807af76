#section support_code

/* The team of threads that our operations share their work with.

   One team per process: the caller and n - 1 workers, created on first
   use, with n chosen by OpenBLAS's own rule (OPENBLAS_NUM_THREADS, then
   GOTO_NUM_THREADS, then OMP_NUM_THREADS, then the CPUs this process may
   run on; never more than those CPUs), read once.  Every compiled module
   that loads this file finds the process's team in a capsule kept on the
   Python module lstm_accum.ops.team (the first one to need it makes it),
   so the products, the loops and the elementwise passes of a training
   step all run on the same threads.  lstm_accum_team_run runs one job on
   every thread of the team and returns when all have finished it; the
   threads of one job can meet at spinning barriers
   (lstm_accum_barrier_wait).  After a job the workers spin for a while
   (LSTM_ACCUM_TEAM_SPIN pauses, well under a millisecond) for the next
   one -- in training the next job follows within microseconds -- and then
   sleep on a condition variable, leaving the cores to whatever runs
   between calls.  A child process after fork starts a team of its own. */
#include <pthread.h>
#include <sched.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LSTM_ACCUM_RELAX() _mm_pause()
#else
#define LSTM_ACCUM_RELAX() ((void)0)
#endif

#define LSTM_ACCUM_MAX_TEAM 64
#define LSTM_ACCUM_TEAM_SPIN 4096
/* The capsule's name: bump it when lstm_accum_team_state changes. */
#define LSTM_ACCUM_TEAM_CAPSULE "lstm_accum.ops.team._team_state.v1"
typedef void (*lstm_accum_job)(void* arg, int rank, int size);

struct lstm_accum_team_state {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int size;              /* threads, the caller included; 0: not yet */
    int workers;           /* workers running */
    pid_t pid;             /* the process that created them */
    unsigned generation;   /* bumped per job (atomic) */
    unsigned first;        /* generation when the workers were made */
    lstm_accum_job job;
    void* arg;
    int done;              /* workers finished with this generation */
};

/* This module's pointer to the process's team (lstm_accum_team_attach). */
static lstm_accum_team_state* lstm_accum_team_ = NULL;

static void lstm_accum_team_reset(lstm_accum_team_state* t)
{
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    t->mu = mu;
    t->cv = cv;
    t->size = 0;
    t->workers = 0;
}

/* The process's team state (made on first use), or, when the capsule
   cannot be had (no lstm_accum.ops.team module), one of this module's
   own.  Called with the GIL held, as every operation's C code runs. */
static lstm_accum_team_state* lstm_accum_team_attach(void)
{
    static lstm_accum_team_state own;
    if (lstm_accum_team_)
        return lstm_accum_team_;
    lstm_accum_team_state* found = NULL;
    PyObject* mod = PyImport_ImportModule("lstm_accum.ops.team");
    PyObject* cap = mod ? PyObject_GetAttrString(mod, "_team_state") : NULL;
    if (cap && PyCapsule_IsValid(cap, LSTM_ACCUM_TEAM_CAPSULE)) {
        found = (lstm_accum_team_state*)PyCapsule_GetPointer(
            cap, LSTM_ACCUM_TEAM_CAPSULE);
    } else if (mod) {
        PyErr_Clear();
        lstm_accum_team_state* made = (lstm_accum_team_state*)calloc(
            1, sizeof(lstm_accum_team_state));
        PyObject* box = made ? PyCapsule_New(made, LSTM_ACCUM_TEAM_CAPSULE,
                                             NULL) : NULL;
        if (box && PyObject_SetAttrString(mod, "_team_state", box) == 0) {
            lstm_accum_team_reset(made);
            found = made;
        } else {
            free(made);
        }
        Py_XDECREF(box);
    }
    Py_XDECREF(cap);
    Py_XDECREF(mod);
    PyErr_Clear();
    if (!found) {
        lstm_accum_team_reset(&own);
        found = &own;
    }
    lstm_accum_team_ = found;
    return found;
}

/* OpenBLAS's rule for its number of threads. */
static int lstm_accum_team_size(void)
{
    int cpus = 1;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        cpus = CPU_COUNT(&set);
    if (cpus < 1)
        cpus = 1;
    const char* names[3] = {"OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS",
                            "OMP_NUM_THREADS"};
    int n = 0;
    for (int k = 0; k < 3 && n <= 0; ++k) {
        const char* v = getenv(names[k]);
        n = v ? atoi(v) : 0;
    }
    if (n <= 0 || n > cpus)
        n = cpus;
    return n > LSTM_ACCUM_MAX_TEAM ? LSTM_ACCUM_MAX_TEAM : n;
}

static void* lstm_accum_worker(void* p)
{
    lstm_accum_team_state* t = lstm_accum_team_;
    const int rank = (int)(size_t)p;
    pthread_mutex_lock(&t->mu);
    /* from the generation before the first job: a worker that starts
       after that job was posted still runs it */
    unsigned seen = t->first;
    pthread_mutex_unlock(&t->mu);
    for (;;) {
        /* spin for the next job, then sleep */
        for (int spins = 0; spins < LSTM_ACCUM_TEAM_SPIN; ++spins) {
            if (__atomic_load_n(&t->generation, __ATOMIC_ACQUIRE) != seen)
                break;
            LSTM_ACCUM_RELAX();
        }
        if (__atomic_load_n(&t->generation, __ATOMIC_ACQUIRE) == seen) {
            pthread_mutex_lock(&t->mu);
            while (__atomic_load_n(&t->generation, __ATOMIC_ACQUIRE) == seen)
                pthread_cond_wait(&t->cv, &t->mu);
            pthread_mutex_unlock(&t->mu);
        }
        seen = __atomic_load_n(&t->generation, __ATOMIC_ACQUIRE);
        lstm_accum_job job = t->job;
        void* arg = t->arg;
        int size = t->size;
        job(arg, rank, size);
        __atomic_add_fetch(&t->done, 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

static void lstm_accum_team_forked(void)
{
    /* The child has none of the parent's workers. */
    if (lstm_accum_team_)
        lstm_accum_team_reset(lstm_accum_team_);
}

/* Threads for a job (the caller included): starts the team on first use.
   Fewer workers than asked for (pthread_create failing) is not an error:
   the team is smaller. */
static int lstm_accum_team_start(void)
{
    static int atfork = 0;
    lstm_accum_team_state* t = lstm_accum_team_attach();
    if (t->size && t->pid == getpid())
        return t->size;
    if (!atfork) {
        pthread_atfork(NULL, NULL, lstm_accum_team_forked);
        atfork = 1;
    }
    lstm_accum_team_reset(t);
    t->pid = getpid();
    const int want = lstm_accum_team_size();
    t->first = __atomic_load_n(&t->generation, __ATOMIC_ACQUIRE);
    int made = 0;
    for (int r = 1; r < want; ++r) {
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int failed = pthread_create(&thread, &attr, lstm_accum_worker,
                                    (void*)(size_t)r);
        pthread_attr_destroy(&attr);
        if (failed)
            break;
        ++made;
    }
    t->workers = made;
    t->size = made + 1;
    return t->size;
}

/* Spins (then yields) until *word == want (acquire); with at_least, until
   *word >= want. */
static inline void lstm_accum_wait_for(const int* word, int want,
                                       bool at_least)
{
    for (unsigned spins = 0;; ++spins) {
        const int v = __atomic_load_n(word, __ATOMIC_ACQUIRE);
        if (at_least ? v >= want : v == want)
            return;
        if (spins < 4096)
            LSTM_ACCUM_RELAX();
        else
            sched_yield();
    }
}

/* Run job(arg, rank, size) on the team of size threads (from
   lstm_accum_team_start), rank 0 being the caller; returns when every
   thread has finished it. */
static void lstm_accum_team_run(lstm_accum_job job, void* arg, int size)
{
    if (size <= 1) {
        job(arg, 0, 1);
        return;
    }
    lstm_accum_team_state* t = lstm_accum_team_;
    pthread_mutex_lock(&t->mu);
    t->job = job;
    t->arg = arg;
    __atomic_store_n(&t->done, 0, __ATOMIC_RELAXED);
    __atomic_add_fetch(&t->generation, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    job(arg, 0, size);
    lstm_accum_wait_for(&t->done, t->workers, true);
}

/* Thread rank of size's share [*s0, *s1) of n items in blocks of 16 (a
   cache line of floats): every share starts on a multiple of 16. */
static inline void lstm_accum_team_share(long n, int rank, int size,
                                         long* s0, long* s1)
{
    const long blocks = (n + 15) / 16;
    *s0 = 16 * (blocks * rank / size);
    *s1 = 16 * (blocks * (rank + 1) / size);
    if (*s1 > n)
        *s1 = n;
}

/* Elements (or rows times columns) of a pass from which the team shares it
   out: below, waking the team costs more than it saves. */
#define LSTM_ACCUM_TEAM_MIN_ITEMS 65536.0

/* Threads for a pass over items elements: the team
   (lstm_accum_team_start) from LSTM_ACCUM_TEAM_MIN_ITEMS up, else the
   caller alone. */
static inline int lstm_accum_team_for_items(double items)
{
    return items >= LSTM_ACCUM_TEAM_MIN_ITEMS ? lstm_accum_team_start() : 1;
}

/* A barrier for the threads of one job. */
struct lstm_accum_barrier {
    int count;
    int sense;
};

static inline void lstm_accum_barrier_wait(lstm_accum_barrier* b, int size,
                                           int* local)
{
    *local = !*local;
    if (__atomic_add_fetch(&b->count, 1, __ATOMIC_ACQ_REL) == size) {
        __atomic_store_n(&b->count, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&b->sense, *local, __ATOMIC_RELEASE);
        return;
    }
    lstm_accum_wait_for(&b->sense, *local, false);
}
