// How fast a one-row GEMV streams its weights from L2, beside l2_read.c's plain sum: 512 KiB
// (one core's share of the batch-1 LSTM 100, 1, 256's W_hh at 2 threads) as 16 packed panels
// of K = 256 steps by 32 floats, read as the AVX-512 one-row kernel reads them (8 panels a
// call: each k step 2 zmm of each panel, 8 streams 32 KiB apart, one FMA with the broadcast
// input each), and as one stream (the 8 panels' 32 floats of a k step side by side). Each
// variant is the median of 7 timings of 4000 passes. Needs AVX-512 F.
//   gcc -O2 benches/compare/gemv_l2.c -o target/gemv_l2 && target/gemv_l2
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define K 256
#define PANELS 16
#define REPS 4000

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

// The one-row kernel's order: `p` panels a call, each panel K x 32 floats.
__attribute__((target("avx512f"), noinline)) static float by_panels(const float *b,
                                                                     const float *x, int p) {
  float s = 0;
  for (int c0 = 0; c0 < PANELS; c0 += p) {
    __m512 acc[16];
    for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
    for (int k = 0; k < K; k++) {
      __m512 xv = _mm512_set1_ps(x[k]);
      for (int j = 0; j < p; j++) {
        const float *q = b + (long)(c0 + j) * K * 32 + k * 32;
        acc[2 * j] = _mm512_fmadd_ps(xv, _mm512_load_ps(q), acc[2 * j]);
        acc[2 * j + 1] = _mm512_fmadd_ps(xv, _mm512_load_ps(q + 16), acc[2 * j + 1]);
      }
    }
    for (int i = 1; i < 2 * p; i++) acc[0] = _mm512_add_ps(acc[0], acc[i]);
    s += _mm512_reduce_add_ps(acc[0]);
  }
  return s;
}

// One stream: per k step the 8 panels' 256 floats are contiguous.
__attribute__((target("avx512f"), noinline)) static float one_stream(const float *b,
                                                                      const float *x) {
  float s = 0;
  for (int c0 = 0; c0 < PANELS; c0 += 8) {
    __m512 acc[16];
    for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
    const float *q = b + (long)c0 * K * 32;
    for (int k = 0; k < K; k++) {
      __m512 xv = _mm512_set1_ps(x[k]);
      for (int j = 0; j < 16; j++)
        acc[j] = _mm512_fmadd_ps(xv, _mm512_load_ps(q + k * 256 + 16 * j), acc[j]);
    }
    for (int i = 1; i < 16; i++) acc[0] = _mm512_add_ps(acc[0], acc[i]);
    s += _mm512_reduce_add_ps(acc[0]);
  }
  return s;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(void) {
  if (!__builtin_cpu_supports("avx512f")) {
    fprintf(stderr, "gemv_l2: needs AVX-512 F\n");
    return 2;
  }
  long n = (long)PANELS * K * 32;
  float *b = aligned_alloc(64, n * sizeof(float)), x[K];
  for (long i = 0; i < n; i++) b[i] = 1e-3f;
  for (int k = 0; k < K; k++) x[k] = 1e-3f;
  const char *name[] = {"8 panels a call (8 streams)", "4 panels a call", "one stream"};
  float chk = 0;
  for (int v = 0; v < 3; v++) {
    double t[7];
    for (int r = 0; r < 7; r++) {
      double t0 = now();
      for (int i = 0; i < REPS; i++) chk += v == 2 ? one_stream(b, x) : by_panels(b, x, v ? 4 : 8);
      t[r] = now() - t0;
    }
    qsort(t, 7, sizeof(double), cmp);
    printf("gemv from L2, %s: %.1f GB/s, %.2f us per 512 KiB\n", name[v],
           (double)REPS * n * 4 / t[3] / 1e9, t[3] / REPS * 1e6);
  }
  printf("chk %g\n", chk);
  free(b);
  return 0;
}
