// The shape and size checks every GPU backend makes before it encodes an op, in one place.
// Each backend adds its own ownership and overlap checks (they depend on how it addresses memory).
// All of this runs before any FFI call: a bad pointer in a launch would kill the process.

import { needLen, type AttnShape, type Buf, type KVCache, type Q1Weight, type RopeSpec } from "./backend.ts";
import type { SamplingParams } from "./gpu-sample.ts";

export function checkInt(op: string, what: string, v: number, min = 1): void {
  if (!Number.isInteger(v) || v < min || v >= 2 ** 31) throw new Error(`${op}: ${what} must be an integer >= ${min}, got ${v}`);
}

/** A KV cache used by attention-side ops: the layer exists, and the shape is one the kernels serve. */
export function checkKvShape(op: string, c: KVCache, layer: number, shape: AttnShape): void {
  if (!Number.isInteger(layer) || layer < 0 || layer >= c.layers) throw new Error(`${op}: layer ${layer} outside 0..${c.layers - 1}`);
  if (shape.nKvHeads !== c.nKvHeads || shape.headDim !== c.headDim) throw new Error(`${op}: cache is [${c.nKvHeads} kv heads, ${c.headDim}] but the shape says [${shape.nKvHeads}, ${shape.headDim}]`);
  const { nHeads, nKvHeads, headDim } = shape;
  // headDim: attention_partial_f32 has cases for 64, 128 and 256 only
  if (!(nHeads % nKvHeads === 0) || ![64, 128, 256].includes(headDim)) {
    throw new Error(`${op}: unsupported shape (heads ${nHeads} must be a multiple of kv heads ${nKvHeads}; headDim ${headDim} must be 64, 128 or 256)`);
  }
}

export function checkNorm(op: string, out: Buf, x: Buf, weight: Buf, rows: number, dim: number, delta?: Buf): void {
  checkInt(op, "rows", rows); checkInt(op, "dim", dim);
  needLen(op, "x", x, rows * dim); needLen(op, "out", out, rows * dim); needLen(op, "weight", weight, dim);
  if (delta) needLen(op, "delta", delta, rows * dim);
}

export function checkMatmul(out: Buf, x: Buf, w: Q1Weight, M: number): void {
  checkInt("matmul", "M", M);
  needLen("matmul", "x", x, M * w.cols); needLen("matmul", "out", out, M * w.rows);
}

/** Smallest KV span an attention launch covers (see attentionSpan). 4096: on the H200 a 4096-position
 *  grid decoded as fast as an 832-position one (8B 675 vs 672 tok/s, 2026-11-22). */
export const ATT_SPAN_MIN = 4096;
/** Most bytes of attention partials (f32 [rows, heads, chunks, headDim + 2]) one launch writes: a
 *  prefill pass's queries go in sub-batches of at most this much (a 512-row pass at 32k positions
 *  would take 8.7 GB for the 8B). */
export const ATT_PARTIALS_MAX = 512 * 2 ** 20;
/** Queries per attention sub-batch: as many as fit `budget` bytes of partials, at least 1. */
export function attentionRowsPerBatch(T: number, nHeads: number, chunks: number, headDim: number, budget: number): number {
  return Math.max(1, Math.min(T, Math.floor(budget / (4 * nHeads * chunks * (headDim + 2)))));
}
/** Cache positions an attention launch's grid covers when the step ends at position `end`: at least
 *  `end`, as a power of two from ATT_SPAN_MIN, at most the cache's ctx. A grid sized by the cache
 *  alone made every short step of a 32k-position cache launch 1,024 chunks per kv head, most of them
 *  empty (8B decode 675 -> 634, 1.7B 1,370 -> 1,213 tok/s). Powers of two so that a captured decode
 *  graph stays valid for many steps: CUDA re-captures it when the span changes. */
export function attentionSpan(ctx: number, end: number): number {
  let s = ATT_SPAN_MIN;
  while (s < end) s *= 2;
  return Math.min(ctx, s);
}

/** The span of an attention launch over T tokens: attentionSpan for a decode step (T = 1, the
 *  step a graph replays), exactly `end` for a prefill pass, which no graph replays (a 512-token
 *  prompt in a 4096-position session launched 8x the chunks it needed). */
export function attentionLaunchSpan(ctx: number, end: number, T: number): number {
  return T === 1 ? attentionSpan(ctx, end) : Math.min(ctx, end);
}

/** Which attention kernels a launch takes. The split kernels (attention_partial_f32, then a merge of
 *  the partials) serve every step; a prefill pass (T > 1) may take the tiled attention_prefill_f32
 *  instead. "serial" / "long": the split kernels with attention_combine_f32 / _long_f32 for every
 *  step; "tiled": attention_prefill_f32 for every prefill pass it has a case for, the "auto" merge
 *  otherwise; "auto": the long merge once a step ends past `longFrom` positions, and the tiled kernel
 *  where prefillTiled says so. */
export type AttentionVariant = "auto" | "serial" | "long" | "tiled";
export const ATTENTION_VARIANTS: readonly AttentionVariant[] = ["auto", "serial", "long", "tiled"];
/** BUNSAI_ATTENTION, if set, picks the kernels for every attention launch (for comparing them). */
export function attentionVariantFromEnv(): AttentionVariant {
  const v = process.env.BUNSAI_ATTENTION;
  if (v === undefined) return "auto";
  if (!(ATTENTION_VARIANTS as readonly string[]).includes(v)) throw new Error(`BUNSAI_ATTENTION must be one of ${ATTENTION_VARIANTS.join(", ")}, got "${v}"`);
  return v as AttentionVariant;
}
/** How the prefill matmul (qmm_q1_f32) takes x: "hilo" splits it into two f16 halves (~22
 *  significant bits, f32-level results; the default), "f16" rounds it to f16 (half the tensor-core
 *  work: 8B prefill +21 % on an H200, ~1e-3 relative error). BUNSAI_QMM_X picks one. */
export type MatmulVariant = "hilo" | "f16";
export const MATMUL_VARIANTS: readonly MatmulVariant[] = ["hilo", "f16"];
export function matmulVariantFromEnv(): MatmulVariant {
  const v = process.env.BUNSAI_QMM_X;
  if (v === undefined) return "hilo";
  if (!(MATMUL_VARIANTS as readonly string[]).includes(v)) throw new Error(`BUNSAI_QMM_X must be one of ${MATMUL_VARIANTS.join(", ")}, got "${v}"`);
  return v as MatmulVariant;
}
export function longMerge(variant: AttentionVariant, end: number, longFrom: number): boolean {
  return variant === "long" || ((variant === "auto" || variant === "tiled") && end > longFrom);
}
/** (query, head) rows from which "auto" takes the tiled prefill kernel. Its blocks each walk every
 *  key up to their queries, so a short pass over a long context is faster split across positions.
 *  H200, 8B shapes (32 heads), us per layer split / tiled: T = 64 at 0: 12 / 15, 128 at 0: 26 / 25,
 *  64 at 4000: 513 / 663, 128 at 4000: 1,019 / 673; 1.7B (16 heads): 128 at 0: 16 / 25, 256 at 0:
 *  47 / 45, 128 at 4000: 600 / 672, 256 at 4000: 1,207 / 693 (bench/RESULTS.md, seventh session). */
export const PREFILL_TILED_ROWS = 3072;
/** Whether a pass of T queries takes the tiled prefill kernel: T > 1, a head_dim it has a case for,
 *  and G = nHeads / nKv dividing its tile of `rows` (query, head) rows; under "auto" also at least
 *  PREFILL_TILED_ROWS rows. */
export function prefillTiled(variant: AttentionVariant, T: number, shape: AttnShape, rows: number, dims: readonly number[]): boolean {
  const G = shape.nHeads / shape.nKvHeads;
  if (T < 2 || !dims.includes(shape.headDim) || rows % G !== 0) return false;
  return variant === "tiled" || (variant === "auto" && T * shape.nHeads >= PREFILL_TILED_ROWS);
}
/** Threads per dim for attention_combine_long_f32: the largest power of two <= cap whose block of
 *  perDim * headDim threads fits maxThreads (the kernel is instantiated for 8, 4 and 2 only); 0 if
 *  not even 2 fit (then the serial merge must be used). */
export function longMergePerDim(maxThreads: number, headDim: number, cap: number): number {
  let q = 1;
  while (q * 2 <= cap && q * 2 * headDim <= maxThreads) q *= 2;
  return q >= 2 ? q : 0;
}

/** T must match the step, and positions pos .. pos + T - 1 must fit the cache. */
export function checkStepT(op: string, T: number, stepT: number, pos: number, c: KVCache): void {
  checkInt(op, "T", T);
  if (T !== stepT) throw new Error(`${op}: T = ${T} but setStep gave ${stepT} tokens`);
  if (pos + T > c.ctx) throw new Error(`context full: positions up to ${pos + T} but the KV cache holds ${c.ctx}`);
}

export function checkQkNormRope(op: string, q: Buf, k: Buf, v: Buf, qNorm: Buf, kNorm: Buf, rope: RopeSpec, shape: AttnShape, T: number): void {
  const { nHeads, nKvHeads, headDim: D } = shape;
  needLen(op, "q", q, T * nHeads * D); needLen(op, "k", k, T * nKvHeads * D); needLen(op, "v", v, T * nKvHeads * D);
  needLen(op, "qNorm", qNorm, D); needLen(op, "kNorm", kNorm, D);
  if (rope.headDim !== D || rope.invFreq.length !== D / 2) throw new Error(`${op}: RoPE table is for headDim ${rope.headDim} (${rope.invFreq.length} freqs), shape has ${D}`);
}

export function checkElementwise(op: string, out: Buf, a: Buf, b: Buf, n: number): void {
  checkInt(op, "n", n);
  needLen(op, "a", a, n); needLen(op, "b", b, n); needLen(op, "out", out, n);
}

export function checkSample(logits: Buf, n: number, params: SamplingParams, rand: number): void {
  checkInt("sampleToken", "n", n);
  needLen("sampleToken", "logits", logits, n);
  if (!(rand >= 0 && rand < 1)) throw new Error(`sampleToken: rand must be in [0, 1), got ${rand}`);
  if (!(params.temperature > 0)) return;
  if (!Number.isInteger(params.topK) || params.topK < 0) throw new Error(`sampleToken: topK must be an integer >= 0, got ${params.topK}`);
  if (!(params.topP > 0 && params.topP <= 1)) throw new Error(`sampleToken: topP must be in (0, 1], got ${params.topP}`);
}
