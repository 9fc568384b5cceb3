// The CPU 1-bit matvec / matmul against dequantize-then-multiply, exact on integer-valued data.
import { describe, expect, test } from "bun:test";
import { CpuBackend } from "../src/backend/cpu/index.ts";
import { dequantQ1, type Q1Host } from "../src/quant/q1.ts";
import { Rng } from "../src/util/rng.ts";
import { exactQ1, smallInts } from "./helpers.ts";
import { bmmaSmemPlan, QMV_BMMA_SMEM_CAP, QMV_BMMA_SOLO_SMEM } from "../cuda/qmv_q1_bmma.ts";
import { soloSmem } from "../src/backend/cuda/solo.ts";
import { ccReason } from "../src/backend/cuda/device.ts";
import { matmulVariantFromEnv } from "../src/backend/checks.ts";

function naive(w: Q1Host, x: Float32Array, M: number): Float32Array {
  const d = dequantQ1(w), out = new Float32Array(M * w.rows);
  for (let m = 0; m < M; m++) for (let r = 0; r < w.rows; r++) {
    let acc = 0;
    for (let k = 0; k < w.cols; k++) acc += d[r * w.cols + k]! * x[m * w.cols + k]!;
    out[m * w.rows + r] = acc;
  }
  return out;
}

const cases: { name: string; N: number; K: number; M: number; affine?: boolean }[] = [
  { name: "K < 2048 (tail only): N 37, K 1152", N: 37, K: 1152, M: 1 },
  { name: "K = 640", N: 64, K: 640, M: 1, affine: true },
  { name: "K = 4096 with N % 4 = 2", N: 18, K: 4096, M: 1 },
  { name: "matmul M = 3, K = 384, N 5", N: 5, K: 384, M: 3, affine: true },
];

describe("cpu qmv / qmm, exact", () => {
  for (const c of cases) {
    test(c.name, () => {
      const rng = new Rng(c.N * 31 + c.K), b = new CpuBackend();
      const w = exactQ1(rng, c.N, c.K, c.affine), x = smallInts(rng, c.M * c.K);
      const out = b.alloc(c.M * c.N);
      b.matmul(out, b.upload(x), b.uploadQ1(w), c.M);
      return b.read(out).then((got) => expect(got).toEqual(naive(w, x, c.M)));
    });
  }

  test("the LM head shape: 151669 rows (K = 128), spot rows exact", async () => {
    const rng = new Rng(5), b = new CpuBackend(), N = 151669, K = 128;
    const w = exactQ1(rng, N, K), x = smallInts(rng, K);
    const out = b.alloc(N);
    b.matmul(out, b.upload(x), b.uploadQ1(w), 1);
    const got = await b.read(out);
    for (const r of [0, 1, 75834, N - 2, N - 1]) {
      const row = { rows: 1, cols: K, words: w.words.subarray(r * 4, r * 4 + 4), scales: w.scales.subarray(r, r + 1), biases: w.biases.subarray(r, r + 1) };
      expect(got[r]).toBe(naive(row, x, 1)[0]!);
    }
  });

  test("a buffer too small is refused before any work", () => {
    const b = new CpuBackend(), w = b.uploadQ1(exactQ1(new Rng(1), 8, 128));
    expect(() => b.matmul(b.alloc(7), b.alloc(128), w, 1)).toThrow(/out holds 7 values but 8 are needed/);
    expect(() => b.matmul(b.alloc(8), b.alloc(127), w, 1)).toThrow(/x holds 127/);
  });
});

describe("bmma matvec: what a GPU's shared memory allows (bmmaSmemPlan, no GPU needed)", () => {
  // (per-block opt-in, per-SM) bytes as the driver reports them
  test("H100 / H200 (sm_90, 227 / 228 KiB): bmma, and solo launches of 116 KiB", () => {
    expect(bmmaSmemPlan(9, 232448, 233472)).toEqual({ bmma: true, solo: true, maxDynamic: QMV_BMMA_SOLO_SMEM });
  });
  test("a consumer Blackwell (sm_120, 99 / 100 KiB): no bmma (its 113 KiB blocks would not fit), so no solo", () => {
    expect(bmmaSmemPlan(12, 101376, 102400)).toEqual({ bmma: false, solo: false, maxDynamic: QMV_BMMA_SMEM_CAP });
  });
  test("A100 (sm_80): no bmma; an SM so large that two solo blocks fit: bmma without solo", () => {
    expect(bmmaSmemPlan(8, 166912, 167936).bmma).toBe(false);
    expect(bmmaSmemPlan(9, 300 * 1024, 300 * 1024)).toEqual({ bmma: true, solo: false, maxDynamic: QMV_BMMA_SMEM_CAP });
  });
});

describe("solo launches: the shared memory that keeps a block alone on its SM (soloSmem, no GPU needed)", () => {
  // two blocks fit on an SM when 2 x (smem + the driver's 1 KiB per block) <= the SM's shared memory
  const twoFit = (s: number, perSm: number) => 2 * (s + 1024) <= perSm;
  test("H100 / H200 (227 / 228 KiB): 114 KiB, which one block may take and two may not", () => {
    const s = soloSmem(232448, 233472);
    expect(s).toBe(114 * 1024);
    expect(twoFit(s, 233472)).toBe(false);
    expect(twoFit(s - 1024, 233472)).toBe(true); // the smallest such size, in KiB steps
  });
  test("A100 (163 / 164 KiB) and sm_86 (99 / 100 KiB): half the SM, rounded down to KiB", () => {
    expect(soloSmem(166912, 167936)).toBe(82 * 1024);
    expect(twoFit(soloSmem(101376, 102400), 102400)).toBe(false);
  });
  test("an SM whose half is more than a block may take: 0 (no solo launches)", () => {
    expect(soloSmem(48 * 1024, 228 * 1024)).toBe(0);
  });
});

describe("CUDA backend: the GPUs it runs on (ccReason, no GPU needed)", () => {
  test("sm_80 and newer run; a Turing card gets a sentence naming it and what is needed", () => {
    for (const [arch, major] of [["sm_80", 8], ["sm_86", 8], ["sm_90", 9], ["sm_120", 12]] as const) expect(ccReason({ name: "GPU", arch, ccMajor: major })).toBeNull();
    expect(ccReason({ name: "Tesla T4", arch: "sm_75", ccMajor: 7 })).toBe("Tesla T4 is sm_75; bunsai's CUDA kernels need compute capability 8.0 or newer (Ampere, Ada, Hopper, Blackwell)");
  });
});

describe("BUNSAI_QMM_X: how the prefill matmul takes x (matmulVariantFromEnv, no GPU needed)", () => {
  test("unset: hilo; hilo or f16 as given; anything else is refused naming the variable and the choices", () => {
    const prev = process.env.BUNSAI_QMM_X;
    try {
      delete process.env.BUNSAI_QMM_X;
      expect(matmulVariantFromEnv()).toBe("hilo");
      process.env.BUNSAI_QMM_X = "f16";
      expect(matmulVariantFromEnv()).toBe("f16");
      process.env.BUNSAI_QMM_X = "fp8";
      expect(() => matmulVariantFromEnv()).toThrow('BUNSAI_QMM_X must be one of hilo, f16, got "fp8"');
    } finally {
      if (prev === undefined) delete process.env.BUNSAI_QMM_X; else process.env.BUNSAI_QMM_X = prev;
    }
  });
});
