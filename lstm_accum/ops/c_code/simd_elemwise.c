#section support_code

/* The contiguous loop of a SimdElemwise node (simd_elemwise.py).  Each
   node's function, made from its scalar code, reads

     LSTM_ACCUM_SIMD_FUNCTION static void name(npy_intp n_, <inputs>,
                                               <outputs>)
     {
         LSTM_ACCUM_SIMD_LOOP(n_) { <load>; <scalar code>; <store>; }
     }

   The broadcast scalars come by value.  ivdep: every element is read
   before it is written, in place or not, and no element depends on
   another.  noinline: inlined into Theano's large generated function, GCC
   does not vectorise the loop.  LSTM_ACCUM_SIMD_FUNCTION_O3 compiles the
   function alone at -O3 (under our default flags; the module keeps -O1,
   which compiles the many small modules of the apply step faster);
   LSTM_ACCUM_SIMD_FUNCTION leaves the level to the user's flags. */
#define LSTM_ACCUM_SIMD_LOOP(n) \
    _Pragma("GCC ivdep") for (npy_intp i_ = 0; i_ < (n); ++i_)
#define LSTM_ACCUM_SIMD_FUNCTION_O3 __attribute__((noinline, optimize("O3")))
#define LSTM_ACCUM_SIMD_FUNCTION __attribute__((noinline))

/* The team (team.c) shares a loop's elements out from
   LSTM_ACCUM_TEAM_MIN_ITEMS elements up (lstm_accum_team_for_items):
   each thread gets its share from lstm_accum_team_share (team.c).  Every
   element's arithmetic is the same on any thread: the results do not
   depend on the number of threads. */
#define LSTM_ACCUM_SIMD_TEAM(n) lstm_accum_team_for_items((double)(n))

/* NAME_job (the loop's arguments: FIELDS, after the element count n_) and
   NAME_work, the team's job: NAME on the thread's share of the elements,
   with the arguments __VA_ARGS__ (written in terms of the job j_ and the
   share's first element s0_). */
#define LSTM_ACCUM_SIMD_WORK(NAME, FIELDS, ...) \
    struct NAME##_job { \
        npy_intp n_; \
        FIELDS \
    }; \
    static void NAME##_work(void* p_, int rank_, int size_) \
    { \
        const NAME##_job* j_ = (const NAME##_job*)p_; \
        long s0_, s1_; \
        lstm_accum_team_share(j_->n_, rank_, size_, &s0_, &s1_); \
        if (s0_ < s1_) \
            NAME(s1_ - s0_, __VA_ARGS__); \
    }
