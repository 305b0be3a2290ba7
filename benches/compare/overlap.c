// Whether a batch-1 step's GEMV, which streams W_hh from L3 and leaves the FMA units mostly
// idle, hides compute-bound work run in the same loop: the projection's tiles of later steps.
// 100 steps of h (1x512) times W_hh (512x2048, 64 panels of 32 columns, 4 MiB), beside TILES
// projection tiles a step (8 rows x 32 columns x k 512 over a panel of W_ih, 4 MiB as well;
// 8 a step is one step's share of the projection at batch 1). Prints the GEMV alone, the tiles
// alone, both one after the other, and both fused (one tile inside the k loop of every other
// group of 4 GEMV panels). Not needed by the tests; see RESULTS.md (Zen 4, 2026-12-04).
//   gcc -O3 -mavx512f -mfma benches/compare/overlap.c -o target/overlap && target/overlap 8
// (-O3: at -O2 gcc keeps the tile's accumulators in memory, and the tile runs at half speed.)
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { K = 512, NP = 64, PW = 32, GROUP = 4, STEPS = 100 };
static float *W, *Wi, *x, *y, *A, *C;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

// One k step of the GEMV over GROUP panels from p0.
#define GEMV_STEP(k)                                                          \
  do {                                                                        \
    __m512 xv = _mm512_set1_ps(x[k]);                                         \
    for (int j = 0; j < GROUP; j++) {                                         \
      const float *w = W + (size_t)(p0 + j) * K * PW + (k) * PW;              \
      a[2 * j] = _mm512_fmadd_ps(xv, _mm512_load_ps(w), a[2 * j]);            \
      a[2 * j + 1] = _mm512_fmadd_ps(xv, _mm512_load_ps(w + 16), a[2 * j + 1]); \
    }                                                                         \
  } while (0)

// One k step of the 8x32 tile over panel q of W_ih.
#define TILE_STEP(k)                                                          \
  do {                                                                        \
    const float *w = Wi + (size_t)q * K * PW + (k) * PW;                      \
    __m512 b0 = _mm512_load_ps(w), b1 = _mm512_load_ps(w + 16);               \
    for (int r = 0; r < 8; r++) {                                             \
      __m512 av = _mm512_set1_ps(A[r * K + (k)]);                             \
      c[2 * r] = _mm512_fmadd_ps(av, b0, c[2 * r]);                           \
      c[2 * r + 1] = _mm512_fmadd_ps(av, b1, c[2 * r + 1]);                   \
    }                                                                         \
  } while (0)

static void gemv_group(int p0) {
  __m512 a[2 * GROUP];
  for (int i = 0; i < 2 * GROUP; i++) a[i] = _mm512_setzero_ps();
  for (int k = 0; k < K; k++) GEMV_STEP(k);
  for (int i = 0; i < 2 * GROUP; i++) _mm512_store_ps(y + p0 * PW + 16 * i, a[i]);
}

static void tile(int q) {
  __m512 c[16];
  for (int i = 0; i < 16; i++) c[i] = _mm512_setzero_ps();
  for (int k = 0; k < K; k++) TILE_STEP(k);
  for (int i = 0; i < 16; i++) _mm512_store_ps(C + q * 256 + 16 * i, c[i]);
}

static void fused(int p0, int q) {
  __m512 a[2 * GROUP], c[16];
  for (int i = 0; i < 2 * GROUP; i++) a[i] = _mm512_setzero_ps();
  for (int i = 0; i < 16; i++) c[i] = _mm512_setzero_ps();
  for (int k = 0; k < K; k++) {
    GEMV_STEP(k);
    TILE_STEP(k);
  }
  for (int i = 0; i < 2 * GROUP; i++) _mm512_store_ps(y + p0 * PW + 16 * i, a[i]);
  for (int i = 0; i < 16; i++) _mm512_store_ps(C + q * 256 + 16 * i, c[i]);
}

static float checksum(void) {
  float s = 0;
  for (int i = 0; i < NP * PW; i++) s += y[i];
  for (int i = 0; i < NP * 256; i++) s += C[i];
  return s;
}

int main(int argc, char **argv) {
  int tiles = argc > 1 ? atoi(argv[1]) : 8, groups = NP / GROUP;
  if (tiles < 1 || tiles > groups) {
    fprintf(stderr, "usage: overlap [TILES a step, 1..%d]\n", groups);
    return 2;
  }
  W = aligned_alloc(64, (size_t)NP * K * PW * 4);
  Wi = aligned_alloc(64, (size_t)NP * K * PW * 4);
  x = aligned_alloc(64, K * 4);
  y = aligned_alloc(64, NP * PW * 4);
  A = aligned_alloc(64, 8 * K * 4);
  C = aligned_alloc(64, NP * 256 * 4);
  for (size_t i = 0; i < (size_t)NP * K * PW; i++) W[i] = (i % 7) * 1e-3f, Wi[i] = (i % 5) * 1e-3f;
  for (int i = 0; i < K; i++) x[i] = 1e-3f * (i % 11);
  for (int i = 0; i < 8 * K; i++) A[i] = 2e-3f * (i % 3);
  for (int round = 0; round < 5; round++) {
    double t[5];
    float sum[2];
    t[0] = now();
    for (int s = 0; s < STEPS; s++)
      for (int g = 0; g < groups; g++) gemv_group(g * GROUP);
    t[1] = now();
    for (int s = 0, q = 0; s < STEPS; s++)
      for (int i = 0; i < tiles; i++, q = (q + 1) % NP) tile(q);
    t[2] = now();
    for (int s = 0, q = 0; s < STEPS; s++) {
      for (int g = 0; g < groups; g++) gemv_group(g * GROUP);
      for (int i = 0; i < tiles; i++, q = (q + 1) % NP) tile(q);
    }
    t[3] = now();
    sum[0] = checksum();
    for (int s = 0, q = 0; s < STEPS; s++) {
      // Tile i rides group i * groups / tiles.
      for (int g = 0, i = 0; g < groups; g++) {
        if (i < tiles && g == i * groups / tiles) {
          fused(g * GROUP, q);
          i++, q = (q + 1) % NP;
        } else {
          gemv_group(g * GROUP);
        }
      }
    }
    t[4] = now();
    sum[1] = checksum();
    double ms[4];
    for (int i = 0; i < 4; i++) ms[i] = (t[i + 1] - t[i]) * 1e3;
    printf("gemv %.2f ms (%.0f GB/s)  tiles %.2f ms (%.0f GFLOP/s)  in turn %.2f ms  fused %.2f ms"
           "  (%.3fx)%s\n",
           ms[0], STEPS * 4.0 * NP * K * PW / ms[0] / 1e6, ms[1],
           STEPS * tiles * 2.0 * 8 * K * PW / ms[1] / 1e6, ms[2], ms[3], ms[3] / ms[2],
           sum[0] == sum[1] ? "" : "  RESULTS DIFFER");
  }
  return 0;
}
