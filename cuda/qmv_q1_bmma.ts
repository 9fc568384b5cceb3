// qmv_q1_bmma: the decode matvec on Hopper, y[N] = W[N, K] x[K], with binary tensor cores.
// CUDA only (sm_90+): Apple GPUs have no binary matrix unit, so this kernel has no Metal twin;
// Metal keeps qmv_q1_f32 (the nibble-table kernel), which CUDA also keeps as variant "fast".
//
// Numerics: x is quantized per 128-column group g to 16-bit integers with a power-of-two step:
//   E = biased f32 exponent of max|x_k| over the group (at least 15), d = 2^(E - 141),
//   q_k = round-half-even(x_k / d) clamped to [-32768, 32767]   (|q| >= 16384 for the largest),
// so x_hat = d*q keeps 15-16 significant bits per group (rel. error <= 2^-15 of the group's max);
// integer and power-of-two-fraction inputs are kept exactly. src/quant/x16.ts is the host twin.
// With w = s*bit + b:   y = sum_g  s_g * d_g * I_g + b_g * d_g * Q_g,
//   I_g = sum over set bits k of q_k   (exact integer, from binary MMAs),   Q_g = sum_k q_k.
// I_g = sum_p c_p * popc(bits & plane_p(q)) with c_p = 2^p (p < 15), c_15 = -2^15 (two's complement).
// Every integer is exact; the f32 work is one product and two FMAs per (row, group), and the bias
// term one FMA per (row, group) for the whole quad.
// (x NaN/Inf are not propagated: fmaxf drops NaN and the clamp bounds Inf; the f32 kernels do.)
//
// Tensor-core steps, per group and 16 rows:
// 1. mma.sync m16n8k128 .b1 AND+POPC, twice. A = 16 weight rows x the group's 128 bits, B = 8 bit
//    planes of q (columns) x 128; the two MMAs cover the 16 planes. C[row][plane] = popcounts.
//    Fragments (checked on the H200): lane l holds A rows l/4 (a0) and l/4 + 8 (a1), bits
//    32*(l%4)..+31; B column l/4, bits 32*(l%4)..; C: c0,c1 = row l/4, columns 2*(l%4) + {0,1};
//    c2,c3 = row l/4 + 8.
// 2. The plane weighting, sum_p c_p * popc_p, by one f16 MMA (m16n8k16, f32 accumulation). A
//    popcount (<= 128) read as f16 bits is the subnormal popc * 2^-24, exact, and the binary MMAs' C
//    layout is exactly m16n8k16's A layout (rows l/4, l/4 + 8; k = planes 2c, 2c+1 of the first and
//    8+2c, 9+2c of the second, c = l%4), so four byte-permutes turn the eight popcounts of a lane
//    into its A fragment. B holds the plane weights (powers of two) in the columns of one group:
//    four groups share one accumulator, group j in columns 2j (planes 0-7) and 2j + 1 (planes 8-15,
//    weights / 256), so lane c ends the batch with group c's two sums for its two rows (lo + 256 hi,
//    exact in f32) and does the f32 work only for that group. Each sum has at most 15 significant
//    bits, and every product is a power of two times a popcount, so the MMA's sums are exact (a
//    scratch test of 2.5 M random and extreme popcount patterns on the H200 came back exact, and
//    the oracle tests, incl. all-ones rows against the sign plane, compare exactly). Before (until 2026-11-22), each lane weighted its own quarter of
//    the planes with six integer ops and two int-to-float conversions per group: down 2.78 -> 2.70 us.
// So lane l sums, for rows l/4 and l/4 + 8, the groups 4b + l%4 of its warp; the four lanes of a quad
// are summed by shuffles at the end of each row tile, or (DEFER, PW <= 3) only once per row, in the
// epilogue, from all 32 lanes' partials in shared memory.
//
// Work split. Rows go in tiles of 16. Block b (256 threads, 8 warps; <= 128 registers and
// <= 113 KiB of shared memory, so two blocks fit on an SM; the host launches one per SM, or two
// when each SM would stream >= 8 tiles, e.g. the LM head and the 8B's stacked gate+up) owns a contiguous
// range of row tiles; warp w owns the group pairs [PW*w, PW*w + PW) of every tile
// (PW = ceil(ceil(G/2) / 8), so K <= 8 * 6 * 256 = 12288). Per tile and warp: one ldmatrix.x4
// per group pair (A fragments of two groups; for a pair of tiles, all four are loaded before any
// is used), four binary MMAs and two f16 MMAs (the plane weighting); the 8 warps' partial sums meet in shared
// memory and 16 threads write y in a fixed order.
//
// Memory. Weights never wait for x: each tile (16 rows of packed bits, their scales and biases) is
// a stage in shared memory, filled with 16-byte cp.async chunks by all 256 threads, whose landing
// each thread signals on the stage's mbarrier (cp.async.mbarrier.arrive.noinc; 256 arrivals per
// phase). The first S stages are issued at entry, before griddepcontrol.wait,
// and the kernel lets its dependent start at entry too, so under programmatic dependent launch the
// next kernel's weights stream in while this one finishes. A consumed stage is refilled with the
// tile S ahead. Row stride in a stage: RS = K/8 (+16 when G is even) so RS/16 is odd and the 8 row
// addresses of each ldmatrix phase hit 8 different 16-byte bank groups.
// x is quantized once, by the small kernel qmv_x16_prep launched just before (one warp per group:
// lane l reads x[128g + 32j + l], j < 4; bit p of q_j over the 32 lanes is word 4p + j of the
// group's planes, which is exactly the B fragment order: lane l of the matvec needs word l (MMA of
// planes 0-7) and word 32 + l (planes 8-15), stored side by side), as llama.cpp quantizes
// activations before its matvecs.
// Quantizing inside every matvec block was tried first: 132 blocks redoing ~150 warp instructions
// per group made the matvec 2-3x slower than the nibble-table kernel.
// Pipeline: a stage's "full" mbarrier counts the 256 threads' cp.async landings; its "empty"
// mbarrier counts the 8 warps that consumed it (each also wrote its 16 partial sums to slot
// i % (S + 4)). When the block's tiles all fit (n <= S: every Bonsai shape but the LM head) they
// are all queued at entry and no warp waits for another until one barrier at the end. Otherwise:
// warps take tiles two at a time (independent chains interleave); before waiting
// for a pair, a warp finishes the previous pair: waits for each tile's empty barrier, warp j % 8
// writes y of tile j from the 8 partials in a fixed order, and every thread queues its share of
// tile j + S. No block-wide barrier in the loop.
// Shared memory (dynamic): [full[16], empty[16] mbarriers: 256 bytes][S stages][S + 4 slots of
// 16 rows x 8 warps floats, x 4 quarters under DEFER]. qmvBmmaLayout() computes the same numbers.
// Speed (bench/RESULTS.md, H200, back-to-back): gate/up 63 %, down 61 % of HBM bandwidth and the
// LM head 81 %, for the matvec alone (before the f16-MMA plane weighting: 60 / 59 / 76 %). What sets the time per launch (%globaltimer stamps, 2026-11-22): the
// weights of launch k+1 land while launch k computes (a block that only streams the same bytes this
// way reaches 91 %), so the period is the x-dependent chain from griddepcontrol.wait returning to
// the last block's exit (x's fragments from L2: 0.32 us, 0.54 us at K = 12288; the tiles ~1.2 us;
// the epilogue ~0.2 us; measured before the f16-MMA weighting) plus ~0.5-0.7 us until the next
// launch's wait returns. The tile work is bound by the SM's instruction throughput, not latency:
// 16 warps, interleaving two tiles group pair by group pair, or a third block per SM were all
// slower; moving the plane weighting to the tensor cores (fewer instructions) was faster.
// Host requirements: K a multiple of 128, K <= 12288; the scale and bias buffers must have 16 bytes
// of slack after their end (the last partial tile's copy is rounded up to 16 bytes), and all three
// weight buffers must be 16-byte aligned.

import { COMMON, type KernelFile } from "./common.ts";

export const QMV_BMMA_THREADS = 256;
export const QMV_BMMA_MAX_K = 12288;
/** Bytes of the quantized-x buffer (qmv_x16_prep's output) for in-features K. */
export const x16Bytes = (K: number): number => (K / 128) * (256 + 8);
/** Most shared memory a block takes, so that two (this and the next kernel's) fit on one SM. */
export const QMV_BMMA_SMEM_CAP = 113 * 1024;
/** Shared memory a "solo" launch (src/backend/cuda/index.ts qmvBmma) asks for at least, so that two
 *  of its blocks never share an SM: 2 x (116 + 1 reserved) KiB > the H100/H200's 228 KiB. */
export const QMV_BMMA_SOLO_SMEM = 116 * 1024;

/** What this device's shared memory allows: the bmma matvec at all (sm_90+ and QMV_BMMA_SMEM_CAP
 *  per block: not on a GPU with ~100 KiB per SM, like sm_120), and solo launches (two solo blocks
 *  must not fit on one SM, with the 1 KiB the driver reserves per block). */
export function bmmaSmemPlan(ccMajor: number, smemPerBlockOptin: number, smemPerSm: number): { bmma: boolean; solo: boolean; maxDynamic: number } {
  const bmma = ccMajor >= 9 && smemPerBlockOptin >= QMV_BMMA_SMEM_CAP;
  const solo = bmma && QMV_BMMA_SOLO_SMEM <= smemPerBlockOptin && 2 * (QMV_BMMA_SOLO_SMEM + 1024) > smemPerSm;
  return { bmma, solo, maxDynamic: solo ? QMV_BMMA_SOLO_SMEM : QMV_BMMA_SMEM_CAP };
}
const MAX_STAGES = 16;

/** Shared-memory layout of one launch: stage bytes, stage count, total dynamic bytes. */
export function qmvBmmaLayout(N: number, K: number, grid: number): { stageBytes: number; stages: number; smem: number } {
  const G = K / 128;
  const RS = K / 8 + (G % 2 === 0 ? 16 : 0);
  const stageBytes = Math.ceil((16 * RS + 64 * G) / 128) * 128;
  // 256 bytes of mbarriers, then per stage: the stage and a partial-sum slot, + 4 slots. A slot holds
  // 16 rows x 8 warps partial sums, x 4 quarters when the kernel defers the quad sums (PW <= 3).
  const PW = Math.ceil(Math.ceil(G / 2) / 8), slot = PW <= 3 ? 2048 : 512, fixed = 256 + 4 * slot;
  const tilesPerBlock = Math.ceil(Math.ceil(N / 16) / grid);
  const fit = Math.floor((QMV_BMMA_SMEM_CAP - fixed) / (stageBytes + slot));
  const stages = Math.max(1, Math.min(MAX_STAGES, tilesPerBlock, fit));
  return { stageBytes, stages, smem: fixed + stages * (stageBytes + slot) };
}


/** Device code shared by every kernel that writes quantized x for qmv_q1_bmma (qmv_x16_prep here,
 *  the fused norms and SwiGLU of cuda/x16_fused.ts): x16_group(v, xq, g, G), called by a whole warp
 *  with lane l holding v[j] = x[128g + 32j + l], writes group g of xq: planes uint2 [G][32], where
 *  lane l's pair is (word l, word 32 + l) of the group's 64 plane words (word 4p + j = bit p of q
 *  over columns 128g + 32j + 0..31): the matvec's B fragments of its two MMAs, one 8-byte load per
 *  lane; then float2 [G] (d_g, d_g * sum(q)). The quantization is described at the top. */
export const X16_QUANT = /* cuda */ `
__device__ __forceinline__ void x16_group(const float (&v)[4], u32* __restrict__ xq, int g, int G) {
  const int lane = threadIdx.x & 31;
  const float m = warp_max(fmaxf(fmaxf(fabsf(v[0]), fabsf(v[1])), fmaxf(fabsf(v[2]), fabsf(v[3]))));
  const int E = max((__float_as_int(m) >> 23) & 255, 15);
  const float inv = __int_as_float((268 - E) << 23), d = __int_as_float((E - 14) << 23);
  int q[4], qs = 0;
  #pragma unroll
  for (int j = 0; j < 4; j++) { q[j] = min(__float2int_rn(v[j] * inv), 32767); qs += q[j]; }
  #pragma unroll
  for (int o = 16; o > 0; o >>= 1) qs += __shfl_xor_sync(FULL_MASK, qs, o);
  // Bit planes by two 32x32 bit transposes across the warp (5 shuffle rounds each): row = lane t's
  // q_{2u} | q_{2u+1} << 16, so after transpose u lane s holds plane s % 16 of block 2u + s / 16
  // over the 32 lanes; then lane l fetches its own words (plane l / 4, and 8 + l / 4, of block
  // l % 4) with two shuffles each. (64 ballots plus selects cost ~3x the instructions.)
  u32 X0 = (u32)(q[0] & 0xffff) | ((u32)q[1] << 16), X1 = (u32)(q[2] & 0xffff) | ((u32)q[3] << 16);
  #pragma unroll
  for (int sh = 16; sh > 0; sh >>= 1) {
    const u32 m = sh == 16 ? 0x0000ffffu : sh == 8 ? 0x00ff00ffu : sh == 4 ? 0x0f0f0f0fu : sh == 2 ? 0x33333333u : 0x55555555u;
    const u32 t0 = __shfl_xor_sync(FULL_MASK, X0, sh), t1 = __shfl_xor_sync(FULL_MASK, X1, sh);
    const bool top = (lane & sh) == 0;
    X0 = top ? ((X0 & m) | ((t0 & m) << sh)) : ((X0 & ~m) | ((t0 & ~m) >> sh));
    X1 = top ? ((X1 & m) | ((t1 & m) << sh)) : ((X1 & ~m) | ((t1 & ~m) >> sh));
  }
  const int sLo = (lane >> 2) + 16 * (lane & 1), sHi = sLo + 8;
  const u32 lo0 = __shfl_sync(FULL_MASK, X0, sLo), lo1 = __shfl_sync(FULL_MASK, X1, sLo);
  const u32 hi0 = __shfl_sync(FULL_MASK, X0, sHi), hi1 = __shfl_sync(FULL_MASK, X1, sHi);
  const u32 lo = (lane & 2) ? lo1 : lo0, hi = (lane & 2) ? hi1 : hi0;
  reinterpret_cast<uint2*>(xq)[32 * g + lane] = make_uint2(lo, hi);
  if (lane == 0) reinterpret_cast<float2*>(xq + 64 * G)[g] = make_float2(d, (float)qs * d);
}
`;

export const qmv_q1_bmma: KernelFile = {
  file: "qmv_q1_bmma",
  kernels: ["qmv_x16_prep", "qmv_q1_bmma"],
  source: COMMON + X16_QUANT + /* cuda */ `
#if __CUDA_ARCH__ >= 900
__device__ __forceinline__ void mbar_init(u32 bar, u32 count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" :: "r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(u32 bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" :: "r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_wait(u32 bar, u32 parity) {
  u32 done;
  do {
    asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
                 : "=r"(done) : "r"(bar), "r"(parity) : "memory");
  } while (!done);
}
__device__ __forceinline__ void bmma(int (&c)[4], u32 a0, u32 a1, u32 b0) {
  asm volatile("mma.sync.aligned.m16n8k128.row.col.s32.b1.b1.s32.and.popc {%0,%1,%2,%3}, {%4,%5}, {%6}, {%0,%1,%2,%3};"
               : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3]) : "r"(a0), "r"(a1), "r"(b0));
}
__device__ __forceinline__ void hmma(float (&d)[4], u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]) : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

struct Tiles {
  const unsigned char* w; const unsigned char* sc; const unsigned char* bi;
  int N, K, G, rt0, S;
  u32 RS, stageBytes, bars, stages;
  // this thread's place in a tile copy: 16-byte chunk j0 of rows r0, r0 + rstep, ... (rstep = 256 / G
  // rows per pass; threads past rstep * G copy no bits)
  int r0, j0, rstep;
  __device__ __forceinline__ void init_copy() {
    rstep = ${QMV_BMMA_THREADS} / G;
    r0 = threadIdx.x / G; j0 = threadIdx.x - r0 * G;
    if (r0 >= rstep) r0 = 16; // idle for the bits
  }
  // Stage s <- row tile rt0 + i, by every thread of the block: 16-byte cp.async chunks (rows into
  // their padded slots, then scales, then biases), then an mbarrier arrival once they have landed.
  __device__ __forceinline__ void issue(int i, int s) const {
    const int rt = rt0 + i, nv = min(16, N - 16 * rt);
    const u32 st = stages + (u32)s * stageBytes, rowBytes = (u32)K >> 3;
    const unsigned char* src = w + (size_t)16 * rt * rowBytes + 16 * j0;
    for (int r = r0; r < nv; r += rstep)
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" :: "r"(st + (u32)r * RS + 16u * (u32)j0), "l"(src + (size_t)r * rowBytes) : "memory");
    const int ns = (nv * 2 * G + 15) >> 4; // chunks of scales (and of biases)
    const size_t sbOff = (size_t)32 * rt * G;
    for (int c = threadIdx.x; c < 2 * ns; c += ${QMV_BMMA_THREADS}) {
      const bool isb = c >= ns;
      const int j = isb ? c - ns : c;
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" :: "r"(st + 16u * RS + (isb ? 32u * (u32)G : 0u) + 16u * (u32)j),
                   "l"((isb ? bi : sc) + sbOff + 16 * j) : "memory");
    }
    asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];" :: "r"(full(s)) : "memory");
  }
  __device__ __forceinline__ u32 full(int s) const { return bars + 8u * (u32)s; }          // 256 arrivals: the data landed
  __device__ __forceinline__ u32 empty(int s) const { return bars + 128u + 8u * (u32)s; }  // 8 arrivals: every warp read it
};

// FULL: G even and every warp owns PW whole pairs (GP == 8 * PW), true of every Bonsai shape:
// the per-pair bounds checks and the odd-G scale path compile away.
template <int PW, bool FULL>
__device__ __forceinline__ void qmv_bmma_body(const Tiles& T, const u32* __restrict__ planes, const float2* __restrict__ dsx,
                                              float* __restrict__ y, int n, u32 red, const unsigned char* smem, u32 sbase) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, G = T.G, GP = (G + 1) >> 1;
  // ---- x: this warp's B fragments and group factors, written by qmv_x16_prep ----
  PDL_WAIT();
  u32 bf[2 * PW][2];
  #pragma unroll
  for (int gi = 0; gi < 2 * PW; gi++) {
    const int g = FULL ? 2 * PW * warp + gi : min(2 * PW * warp + gi, G - 1); // groups past G are never used
    const uint2 pl = reinterpret_cast<const uint2*>(planes)[32 * g + lane];
    bf[gi][0] = pl.x; bf[gi][1] = pl.y;
  }
  const int c = lane & 3, ra = lane >> 2;
  // Plane weighting on the tensor cores (see the top): a batch of 4 groups j = 0..3 owns columns 2j
  // (planes 0-7) and 2j + 1 (planes 8-15) of one m16n8k16 accumulator, so lane c ends a batch with
  // group c's two column sums for rows ra, ra + 8 and weights them itself: d_g * 2^16 (undoes B's
  // 2^8 and the subnormal 2^-24; 0 for a group past this warp's or past G).
  constexpr int NBT = (PW + 1) / 2; // batches of 4 groups
  float dl[NBT];
  #pragma unroll
  for (int b = 0; b < NBT; b++) {
    const int gl = 2 * PW * warp + 4 * b + c;
    dl[b] = (4 * b + c < 2 * PW && gl < G) ? dsx[min(gl, G - 1)].x * 65536.f : 0.f;
  }
  // B fragments: lane l holds column n = l / 4 (group n / 2 of a batch, planes 0-7 if n is even,
  // else 8-15) at k = planes 2c, 2c+1 (b0) and 8+2c, 9+2c (b1). The weights, times 2^8 to stay
  // clear of f16 subnormals: 2^(p+8) for p < 8; 2^p for 8 <= p < 15; -2^15 for the sign plane.
  // As f16 bits, a power of two 2^e is (e + 15) << 10.
  u32 Bw[4][2];
  {
    const int n = lane >> 2;
    auto w = [&](int k) -> u32 {
      if ((n & 1) != (k >= 8)) return 0u;
      return k == 15 ? 0xf800u : (u32)((k & 7) + 23) << 10;
    };
    const u32 h0 = w(2 * c) | (w(2 * c + 1) << 16), h1 = w(2 * c + 8) | (w(2 * c + 9) << 16);
    #pragma unroll
    for (int j = 0; j < 4; j++) { Bw[j][0] = (n >> 1) == j ? h0 : 0u; Bw[j][1] = (n >> 1) == j ? h1 : 0u; }
  }
  // Biases: b_g * sum(x_hat)_g per row and group once per quad, not once per lane: lane c takes the
  // warp's groups gi = c, c + 4, ... (sxb = the full sum, 0 past G). (The down projection had kept
  // a per-lane quarter sum per group, because picking the lane's sum out of a register array by c had
  // put the arrays in local memory; read from x's factors instead, the quad bias took it 2.90 ->
  // 2.81 us.)
  // DEFER (PW <= 3): the quad's four quarters are summed once per row at the end, not by shuffles in
  // every tile (gate/up 2.86 -> 2.78 us, LM head 28.9 -> 27.3 us; no gain for the down projection).
  constexpr bool DEFER = PW <= 3;
  constexpr u32 SLOT = DEFER ? 2048u : 512u; // bytes of one partial-sum slot
  constexpr int NB = (2 * PW + 3) / 4;
  float sxb[NB]; int gb[NB];
  #pragma unroll
  for (int k = 0; k < NB; k++) {
    const int g = 2 * PW * warp + c + 4 * k;
    gb[k] = min(g, G - 1);
    const float v = dsx[gb[k]].y;
    sxb[k] = (c + 4 * k < 2 * PW && g < G) ? v : 0.f;
  }
  // ldmatrix row address of this lane inside a stage: matrix lane/8 = (rows 8*(m&1).., group +(m>>1))
  const u32 ldOff = (u32)((lane & 7) + 8 * ((lane >> 3) & 1)) * T.RS + 16u * (u32)(lane >> 4);

  // A fragments of this warp's group pairs in stage st (loaded for both tiles of a pair before
  // either is computed, so the shared-memory latency overlaps).
  auto frags = [&](u32 st, u32 (&a)[PW][4]) {
    #pragma unroll
    for (int pi = 0; pi < PW; pi++)
      if (FULL || PW * warp + pi < GP) // warp-uniform
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                     : "=r"(a[pi][0]), "=r"(a[pi][1]), "=r"(a[pi][2]), "=r"(a[pi][3]) : "r"(st + ldOff + 32u * (u32)(PW * warp + pi)));
  };
  // This warp's share of one tile in stage st (fragments a): partial sums of rows ra and ra + 8,
  // per lane (a quarter of the warp's groups each; see DEFER for where the quad's quarters meet).
  auto tile = [&](u32 st, const u32 (&a)[PW][4], float& acc_a, float& acc_b) {
    const u16* scl = reinterpret_cast<const u16*>(smem + (st + 16u * T.RS - sbase));
    const u16* bil = scl + 16 * G;
    acc_a = 0.f; acc_b = 0.f;
    #pragma unroll
    for (int k = 0; k < NB; k++) {
      acc_a = fmaf(h2f(bil[ra * G + gb[k]]), sxb[k], acc_a);
      acc_b = fmaf(h2f(bil[(ra + 8) * G + gb[k]]), sxb[k], acc_b);
    }
    #pragma unroll
    for (int b = 0; b < NBT; b++) {
      float dd[4] = {0.f, 0.f, 0.f, 0.f};
      #pragma unroll
      for (int j = 0; j < 4; j++) {
        const int pi = 2 * b + (j >> 1), h = j & 1;
        if (pi >= PW) break;
        const int pr = PW * warp + pi, g = 2 * pr + h;
        if (!FULL && (pr >= GP || g >= G)) break; // warp-uniform
        int c0[4] = {0, 0, 0, 0}, c1[4] = {0, 0, 0, 0};
        bmma(c0, a[pi][2 * h], a[pi][2 * h + 1], bf[2 * pi + h][0]);
        bmma(c1, a[pi][2 * h], a[pi][2 * h + 1], bf[2 * pi + h][1]);
        // popcounts (<= 128) side by side as f16 bits: the A fragment of the plane-weighting MMA
        hmma(dd, __byte_perm(c0[0], c0[1], 0x5410), __byte_perm(c0[2], c0[3], 0x5410),
                 __byte_perm(c1[0], c1[1], 0x5410), __byte_perm(c1[2], c1[3], 0x5410), Bw[j][0], Bw[j][1]);
      }
      const int gl = min(2 * PW * warp + 4 * b + c, G - 1);
      const float sda = h2f(scl[ra * G + gl]) * dl[b], sdb = h2f(scl[(ra + 8) * G + gl]) * dl[b];
      acc_a = fmaf(fmaf(dd[1], 256.f, dd[0]), sda, acc_a); // lo + 256 hi: exact integers * 2^-16
      acc_b = fmaf(fmaf(dd[3], 256.f, dd[2]), sdb, acc_b);
    }
    if (!DEFER) {
      acc_a += __shfl_xor_sync(FULL_MASK, acc_a, 1); acc_a += __shfl_xor_sync(FULL_MASK, acc_a, 2);
      acc_b += __shfl_xor_sync(FULL_MASK, acc_b, 1); acc_b += __shfl_xor_sync(FULL_MASK, acc_b, 2);
    }
  };
  // Partial sums of a tile go to slot rs. DEFER: every lane stores its quarter, slot = [8 warps][16
  // rows][4 quarters]; otherwise lanes 4r (the quad's sum) store, slot = [16 rows][8 warps].
  auto put = [&](int rs, float acc_a, float acc_b) {
    if (DEFER) {
      const u32 rb = red + (u32)rs * SLOT + 256u * (u32)warp + 4u * (u32)lane;
      asm volatile("st.shared.f32 [%0], %1;" :: "r"(rb), "f"(acc_a) : "memory");
      asm volatile("st.shared.f32 [%0], %1;" :: "r"(rb + 128u), "f"(acc_b) : "memory");
    } else if (c == 0) {
      const u32 rb = red + (u32)rs * SLOT + 4u * (u32)warp;
      asm volatile("st.shared.f32 [%0], %1;" :: "r"(rb + 32u * ra), "f"(acc_a) : "memory");
      asm volatile("st.shared.f32 [%0], %1;" :: "r"(rb + 32u * (ra + 8)), "f"(acc_b) : "memory");
    }
  };
  // y of row l (< 16) of tile j: the partials in slot rs, summed in a fixed order (quarters of a
  // quad as the shuffles would, then warps 0..7).
  auto write_row = [&](int j, int rs, int l) {
    const int r = 16 * (T.rt0 + j) + l;
    if (r >= T.N) return;
    float v = 0.f;
    #pragma unroll
    for (int k = 0; k < (DEFER ? 8 : 2); k++) {
      float p0, p1, p2, p3;
      asm volatile("ld.shared.v4.f32 {%0,%1,%2,%3}, [%4];" : "=f"(p0), "=f"(p1), "=f"(p2), "=f"(p3)
                   : "r"(red + (u32)rs * SLOT + (DEFER ? 256u * k + 16u * l : 32u * l + 16u * k)) : "memory");
      if (DEFER) v += (p0 + p1) + (p2 + p3);
      else { v += p0; v += p1; v += p2; v += p3; }
    }
    y[r] = v;
  };
  // Tile j once all 8 warps arrived on its empty barrier (stage sp, parity ph): warp j % 8 sums
  // the partials (slot rs) and writes y in a fixed order; every thread queues its share of tile
  // j + S into the freed stage. Stage, parity and slot are counted, never divided.
  auto finish = [&](int j, int sp, u32 ph, int rs) {
    mbar_wait(T.empty(sp), ph);
    if (warp == (j & 7) && lane < 16) write_row(j, rs, lane);
    if (j + T.S < n) T.issue(j + T.S, sp);
  };
  const int R = T.S + 4; // partial-sum slots (a warp is at most one pair of tiles ahead of a finish)
  constexpr bool PAIRS = PW <= 3; // two tiles' state for PW > 3 would spill past 128 registers
  if (n <= T.S) {
    // Every tile of this block was queued at entry (stage i = tile i, phase 0): no stage is reused,
    // so no warp waits for another until the end; tile i's partials go to slot i.
    int i = 0;
    if (PAIRS) {
      for (; i + 1 < n; i += 2) {
        mbar_wait(T.full(i), 0u); mbar_wait(T.full(i + 1), 0u);
        float a0, b0, a1, b1;
        u32 A0[PW][4], A1[PW][4];
        const u32 st0 = T.stages + (u32)i * T.stageBytes, st1 = st0 + T.stageBytes;
        frags(st0, A0); frags(st1, A1);
        tile(st0, A0, a0, b0);
        tile(st1, A1, a1, b1);
        put(i, a0, b0); put(i + 1, a1, b1);
      }
    }
    for (; i < n; i++) {
      mbar_wait(T.full(i), 0u);
      float a0, b0;
      u32 A0[PW][4];
      frags(T.stages + (u32)i * T.stageBytes, A0);
      tile(T.stages + (u32)i * T.stageBytes, A0, a0, b0);
      put(i, a0, b0);
    }
    __syncthreads();
    for (int t = threadIdx.x; t < 16 * n; t += ${QMV_BMMA_THREADS}) write_row(t >> 4, t >> 4, t & 15);
    return;
  }
  int s = 0, rs = 0;
  u32 ph = 0;
  auto next = [&](int& s_, u32& ph_, int& rs_) { s_ = s; ph_ = ph; rs_ = rs; if (++s == T.S) { s = 0; ph ^= 1u; } if (++rs == R) rs = 0; };
  // Tiles go two at a time (PW <= 3), so that their independent chains interleave. The previous pair is
  // finished before waiting for this one (its refills are what this wait may need when S < 4).
  int pj = 0, pn = 0, ps0 = 0, ps1 = 0, pr0 = 0, pr1 = 0;
  u32 pph0 = 0, pph1 = 0;
  for (int i = 0; i < n; i += PAIRS ? 2 : 1) {
    if (pn > 0) finish(pj, ps0, pph0, pr0);
    if (pn > 1) finish(pj + 1, ps1, pph1, pr1);
    const bool two = PAIRS && i + 1 < n;
    int s0, r0, s1, r1; u32 ph0, ph1;
    next(s0, ph0, r0);
    if (two) next(s1, ph1, r1); else { s1 = s0; ph1 = ph0; r1 = r0; }
    mbar_wait(T.full(s0), ph0);
    if (two) mbar_wait(T.full(s1), ph1);
    float a0, b0, a1 = 0.f, b1 = 0.f;
    u32 A0[PW][4], A1[PW][4];
    frags(T.stages + (u32)s0 * T.stageBytes, A0);
    if (PAIRS) frags(T.stages + (u32)s1 * T.stageBytes, A1);
    tile(T.stages + (u32)s0 * T.stageBytes, A0, a0, b0);
    if (PAIRS) tile(T.stages + (u32)s1 * T.stageBytes, A1, a1, b1); // the same tile again when n is odd: not written
    put(r0, a0, b0);
    if (two) put(r1, a1, b1);
    __syncwarp();
    if (lane == 0) { mbar_arrive(T.empty(s0)); if (two) mbar_arrive(T.empty(s1)); }
    pj = i; pn = two ? 2 : 1; ps0 = s0; ps1 = s1; pph0 = ph0; pph1 = ph1; pr0 = r0; pr1 = r1;
  }
  if (pn > 0) finish(pj, ps0, pph0, pr0);
  if (pn > 1) finish(pj + 1, ps1, pph1, pr1);
}
#endif


// qmv_x16_prep: x [K] f32 -> xq (layout above x16_group). One warp per group.
extern "C" __global__ void __launch_bounds__(128) qmv_x16_prep(const float* __restrict__ x, u32* __restrict__ xq, int K) {
  PDL_LAUNCH(); // the matvec may start streaming its weights now
  PDL_WAIT();
  const int lane = threadIdx.x & 31, g = blockIdx.x * 4 + (threadIdx.x >> 5), G = K >> 7;
  if (g >= G) return;
  float v[4];
  #pragma unroll
  for (int j = 0; j < 4; j++) v[j] = x[128 * g + 32 * j + lane];
  x16_group(v, xq, g, G);
}

extern "C" __global__ void __launch_bounds__(${QMV_BMMA_THREADS}, 2) qmv_q1_bmma(
    const unsigned char* __restrict__ w, const u16* __restrict__ sc, const u16* __restrict__ bi,
    const u32* __restrict__ xq, float* __restrict__ y, int N, int K, int S) {
#if __CUDA_ARCH__ >= 900
  PDL_LAUNCH(); // the next kernel may start now: it waits for this one before touching its data
  extern __shared__ __align__(128) unsigned char smem[];
  const u32 sbase = (u32)__cvta_generic_to_shared(smem);
  const int G = K >> 7, GP = (G + 1) >> 1, PW = (GP + 7) >> 3;
  const int RT = (N + 15) >> 4;
  const int rt0 = (int)(blockIdx.x * (u32)RT / gridDim.x), rt1 = (int)((blockIdx.x + 1) * (u32)RT / gridDim.x); // RT * grid < 2^32
  Tiles T;
  T.w = w; T.sc = reinterpret_cast<const unsigned char*>(sc); T.bi = reinterpret_cast<const unsigned char*>(bi); T.N = N; T.K = K; T.G = G; T.rt0 = rt0; T.S = S;
  T.RS = (u32)(K >> 3) + ((G & 1) ? 0u : 16u);
  T.init_copy();
  T.stageBytes = (16u * T.RS + 64u * (u32)G + 127u) & ~127u;
  T.bars = sbase;
  T.stages = sbase + 256u;
  const u32 red = T.stages + (u32)S * T.stageBytes;
  const float2* dsx = reinterpret_cast<const float2*>(xq + 64 * G);
  const int n = rt1 - rt0;
  if (threadIdx.x == 0) {
    for (int s = 0; s < S; s++) { mbar_init(T.full(s), ${QMV_BMMA_THREADS}); mbar_init(T.empty(s), ${QMV_BMMA_THREADS / 32}); }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  for (int i = 0; i < min(S, n); i++) T.issue(i, i);
  const bool full = (G & 1) == 0 && GP == 8 * PW;
  switch (PW * 2 + (full ? 1 : 0)) {
    case 2: qmv_bmma_body<1, false>(T, xq, dsx, y, n, red, smem, sbase); break;
    case 3: qmv_bmma_body<1, true>(T, xq, dsx, y, n, red, smem, sbase); break;
    case 4: qmv_bmma_body<2, false>(T, xq, dsx, y, n, red, smem, sbase); break;
    case 5: qmv_bmma_body<2, true>(T, xq, dsx, y, n, red, smem, sbase); break;
    case 6: qmv_bmma_body<3, false>(T, xq, dsx, y, n, red, smem, sbase); break;
    case 7: qmv_bmma_body<3, true>(T, xq, dsx, y, n, red, smem, sbase); break;
    case 8: qmv_bmma_body<4, false>(T, xq, dsx, y, n, red, smem, sbase); break;
    case 9: qmv_bmma_body<4, true>(T, xq, dsx, y, n, red, smem, sbase); break;
    case 10: qmv_bmma_body<5, false>(T, xq, dsx, y, n, red, smem, sbase); break;
    case 11: qmv_bmma_body<5, true>(T, xq, dsx, y, n, red, smem, sbase); break;
    case 12: qmv_bmma_body<6, false>(T, xq, dsx, y, n, red, smem, sbase); break;
    default: qmv_bmma_body<6, true>(T, xq, dsx, y, n, red, smem, sbase); break;
  }
#else
  __trap();
#endif
}
`,
};
