// The read bandwidth of each core from a buffer of KIB KiB that it keeps in its own cache (run
// with a size within L2: the W_hh slice a thread streams each step at batch 1), every thread at
// once, as the threads of a batch-1 step stream their slices. A plain sum with 8 independent
// vector accumulators (AVX-512 where the CPU has it, else AVX2): nothing but loads, the fastest
// a step's GEMM can stream its weight. table.py sets the batch-1 bound from it, measured in the
// same run as recur. Prints "l2 read X GB/s per core (N threads, KIB KiB each)".
//   gcc -O2 -fopenmp benches/compare/l2_read.c -o target/l2_read && target/l2_read 1024
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

__attribute__((target("avx512f"))) static float sum512(const float *v, long n) {
  __m512 a[8];
  for (int k = 0; k < 8; k++) a[k] = _mm512_setzero_ps();
  for (long i = 0; i < n; i += 128) {
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) a[k] = _mm512_add_ps(a[k], _mm512_load_ps(v + i + 16 * k));
  }
  for (int k = 1; k < 8; k++) a[0] = _mm512_add_ps(a[0], a[k]);
  return _mm512_reduce_add_ps(a[0]);
}

__attribute__((target("avx2"))) static float sum256(const float *v, long n) {
  __m256 a[8];
  for (int k = 0; k < 8; k++) a[k] = _mm256_setzero_ps();
  for (long i = 0; i < n; i += 64) {
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) a[k] = _mm256_add_ps(a[k], _mm256_load_ps(v + i + 8 * k));
  }
  for (int k = 1; k < 8; k++) a[0] = _mm256_add_ps(a[0], a[k]);
  float t[8], s = 0;
  _mm256_storeu_ps(t, a[0]);
  for (int j = 0; j < 8; j++) s += t[j];
  return s;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  long kib = argc > 1 ? atol(argv[1]) : 0;
  if (kib < 1 || kib > (1 << 20)) {
    fprintf(stderr, "usage: l2_read KIB (the buffer each thread reads, 1 to 1048576 KiB)\n");
    return 2;
  }
  int wide = __builtin_cpu_supports("avx512f");
  long n = kib * 256;  // floats: a multiple of 128 for any KIB
  long reps = (2L << 30) / (kib << 10);  // ~2 GiB read per timing
  if (reps < 1) reps = 1;
  int nt = omp_get_max_threads();
  double secs[5];
  float chk = 0;
#pragma omp parallel reduction(+ : chk)
  {
    // Each thread's own buffer, written first by that thread: a buffer never written maps its
    // pages to the one zero page, which stays in L1.
    float *v = aligned_alloc(64, n * sizeof(float));
    for (long i = 0; i < n; i++) v[i] = 1.0f;
    for (int r = 0; r < 5; r++) {
#pragma omp barrier
      double t0 = now();
      for (long i = 0; i < reps; i++) chk += wide ? sum512(v, n) : sum256(v, n);
#pragma omp barrier
#pragma omp master
      secs[r] = now() - t0;
    }
    free(v);
  }
  qsort(secs, 5, sizeof(double), cmp);
  double gbs = (double)reps * (kib << 10) / secs[2] / 1e9;
  printf("l2 read %.1f GB/s per core (%d threads, %ld KiB each, %s, median of 5) chk=%g\n", gbs, nt,
         kib, wide ? "avx512" : "avx2", chk);
  return 0;
}
