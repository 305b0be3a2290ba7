// FMA peak of the widest vector ISA this CPU has (AVX-512 or AVX2+FMA), as
// ../shared/anchors/peak_flops.c measures it (12 independent FMA chains a thread), but chosen
// at run time, so that it runs on a CPU without AVX-512 too (that anchor runs its AVX-512 loop
// first and dies of SIGILL there). Prints "avx512 peak X GFLOP/s ..." or "avx2 peak ...".
//   gcc -O2 -fopenmp benches/compare/peak_flops.c -o target/peak_flops
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <time.h>

static const long ITERS = 200000000;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

__attribute__((target("avx512f,fma"))) static float chains512(void) {
  __m512 a[12], b = _mm512_set1_ps(1.0000001f), c = _mm512_set1_ps(1e-9f);
  for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps((float)i);
  for (long it = 0; it < ITERS; it++) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], b, c);
  }
  float s = 0;
  for (int i = 0; i < 12; i++) s += _mm512_reduce_add_ps(a[i]);
  return s;
}

__attribute__((target("avx2,fma"))) static float chains256(void) {
  __m256 a[12], b = _mm256_set1_ps(1.0000001f), c = _mm256_set1_ps(1e-9f);
  for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps((float)i);
  for (long it = 0; it < ITERS; it++) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], b, c);
  }
  float s = 0, t[8];
  for (int i = 0; i < 12; i++) {
    _mm256_storeu_ps(t, a[i]);
    for (int j = 0; j < 8; j++) s += t[j];
  }
  return s;
}

int main(void) {
  int wide = __builtin_cpu_supports("avx512f");
  int lanes = wide ? 16 : 8;
  double total = 0, t0 = now();
#pragma omp parallel reduction(+ : total)
  total += wide ? chains512() : chains256();
  double dt = now() - t0;
  int nt = omp_get_max_threads();
  double per_core = ITERS * 12.0 * lanes * 2 / dt / 1e9;
  printf("threads=%d %s peak %.1f GFLOP/s (%.1f per core) chk=%g\n", nt, wide ? "avx512" : "avx2",
         nt * per_core, per_core, total);
  return 0;
}
