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
