// The one interface every compute backend implements (CPU reference, CUDA, Metal).
// The model (src/model/qwen3.ts) only ever talks to this; it never names a backend.
//
// Conventions
// - Activations are f32 row-major; a "[T, D]" buffer holds T rows of D values.
// - Every op only *enqueues* work. `read` is the one call that waits for the device.
// - Per-step values (the first position of this step, the token ids) are set once per step with
//   `setStep`, and read by the ops from there (on a GPU: from device memory), so one decode step is
//   a fixed sequence of launches that a captured graph can replay.
// - Dims are passed explicitly so a backend can validate every buffer before an FFI call.

import type { Q1Host } from "../quant/q1.ts";
import type { SamplingParams } from "./gpu-sample.ts";

/** A buffer of f32 values on the backend's device. CPU: backed by a Float32Array. */
export interface Buf {
  readonly length: number; // elements (f32)
}

/** A 1-bit weight uploaded to the device, still packed: [rows = out features, cols = in features]. */
export interface Q1Weight {
  readonly rows: number;
  readonly cols: number;
}

/** Rotary embedding tables: per-pair inverse frequencies and the cos/sin multiplier (YaRN). */
export interface RopeSpec {
  readonly headDim: number;
  readonly invFreq: Float32Array; // [headDim / 2]
  readonly attentionFactor: number; // 1 unless YaRN
}

/** One sequence's KV cache: [layers][ctx, nKvHeads, headDim] for k and for v. */
export interface KVCache {
  readonly layers: number;
  readonly ctx: number;
  readonly nKvHeads: number;
  readonly headDim: number;
}

/** Static attention shape for one model. */
export interface AttnShape {
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
}

export type BackendName = "cpu" | "cuda" | "metal";

export interface Backend {
  readonly name: BackendName;
  /** Human-readable device name, e.g. "NVIDIA H200" or "CPU (TypeScript, f32)". */
  readonly device: string;

  // ---- memory ---------------------------------------------------------------------------------
  alloc(length: number): Buf;
  upload(data: Float32Array): Buf;
  /** A view of `length` elements starting at element `offset` of `buf` (no copy). */
  slice(buf: Buf, offset: number, length: number): Buf;
  uploadQ1(w: Q1Host): Q1Weight;
  allocKV(layers: number, ctx: number, nKvHeads: number, headDim: number): KVCache;
  /** Frees a KV cache now (and anything the backend keeps for it, e.g. a captured graph). */
  freeKV(cache: KVCache): void;
  /** Waits for all enqueued work and copies `buf` to the host. */
  read(buf: Buf): Promise<Float32Array>;

  // ---- per step -------------------------------------------------------------------------------
  /** This step processes `tokens.length` tokens at positions pos .. pos + T - 1. */
  setStep(pos: number, tokens: Int32Array): void;

  // ---- ops ------------------------------------------------------------------------------------
  /** out[T, cols] = dequantized rows of `table` for the step's tokens. */
  embed(out: Buf, table: Q1Weight): void;
  /** out[rows, dim] = x * rsqrt(mean(x^2) + eps) * weight[dim]. out may equal x. */
  rmsnorm(out: Buf, x: Buf, weight: Buf, rows: number, dim: number, eps: number): void;
  /** The residual add fused with the norm after it: x[rows, dim] += delta; out = rmsnorm(x) * weight. */
  addRmsnorm(x: Buf, delta: Buf, weight: Buf, out: Buf, rows: number, dim: number, eps: number): void;
  /** out[M, w.rows] = x[M, w.cols] @ dequant(w)^T. M = 1 is the decode matvec. */
  matmul(out: Buf, x: Buf, w: Q1Weight, M: number): void;
  /**
   * For the step's T tokens: RMSNorm each q head and k head over headDim (weights qNorm/kNorm),
   * rotate both with RoPE at positions pos + t, then write k and v into `cache` at those positions.
   * q[T, nHeads*headDim] is updated in place; k[T, nKv*headDim] and v[T, nKv*headDim] are read.
   */
  qkNormRopeAppend(
    q: Buf, k: Buf, v: Buf, qNorm: Buf, kNorm: Buf, eps: number,
    rope: RopeSpec, shape: AttnShape, cache: KVCache, layer: number, T: number,
  ): void;
  /** Causal GQA attention of q[T, nHeads*headDim] over cache positions 0 .. pos + t. */
  attention(out: Buf, q: Buf, shape: AttnShape, cache: KVCache, layer: number, T: number): void;
  /** out[n] = silu(gate[n]) * up[n]. */
  swiglu(out: Buf, gate: Buf, up: Buf, n: number): void;
  /** SwiGLU of a stacked [gate | up] projection output: out[r, i] = silu(gu[r, i]) * gu[r, n + i],
   *  gu [rows, 2n], out [rows, n], not overlapping gu (a prefill pass: no copies of the halves). */
  swigluRows(out: Buf, gu: Buf, rows: number, n: number): void;
  /** dst[r * dstStride + c] = src[r * srcStride + c] for r < rows, c < cols (strides in elements). */
  copy2d(dst: Buf, dstStride: number, src: Buf, srcStride: number, rows: number, cols: number): void;
  /** out[n] = a[n] + b[n]. out may equal a. */
  add(out: Buf, a: Buf, b: Buf, n: number): void;

  // ---- optional fast paths (GPU backends); callers fall back when absent ----------------------
  /**
   * Draws a token from logits[n] on the device, so only the id crosses to the host.
   * Same definition as `sampleHost` in ./gpu-sample.ts; `rand` is a uniform [0, 1) value from the caller.
   */
  sampleToken?(logits: Buf, n: number, params: SamplingParams, rand: number): Promise<number>;
  /**
   * Runs the launches `record` enqueues. A backend may capture them once per `key` (a CUDA graph)
   * and replay them on later calls without calling `record` again, so `record` must read every
   * per-step value from `setStep` and use the same buffers each time.
   */
  replayable?(key: object, record: () => void): void;
  /** Kernel variants a test or benchmark may switch between, e.g. { matvec: ["fast", "legacy"] }. */
  readonly kernelVariants?: Readonly<Record<string, readonly string[]>>;
  setKernelVariant?(op: string, variant: string): void;

  /** Frees everything this backend allocated. */
  dispose(): void;
}

/** The checks every backend's copy2d makes before touching memory. */
export function checkCopy2d(dst: Buf, dstStride: number, src: Buf, srcStride: number, rows: number, cols: number): void {
  for (const [k, v] of Object.entries({ dstStride, srcStride, rows, cols })) {
    if (!Number.isInteger(v) || v < 0 || v >= 2 ** 31) throw new Error(`copy2d: ${k} must be an integer >= 0, got ${v}`);
  }
  if (cols > dstStride || cols > srcStride) throw new Error(`copy2d: cols ${cols} exceed a stride (${srcStride} -> ${dstStride})`);
  if (rows === 0 || cols === 0) return;
  needLen("copy2d", "src", src, (rows - 1) * srcStride + cols);
  needLen("copy2d", "dst", dst, (rows - 1) * dstStride + cols);
}

export function checkSwigluRows(out: Buf, gu: Buf, rows: number, n: number): void {
  for (const [k, v] of Object.entries({ rows, n })) {
    if (!Number.isInteger(v) || v < 1 || v >= 2 ** 31) throw new Error(`swigluRows: ${k} must be an integer >= 1, got ${v}`);
  }
  if (rows * n * 2 >= 2 ** 31) throw new Error(`swigluRows: ${rows} x ${2 * n} too large for one call`);
  needLen("swigluRows", "gu", gu, rows * 2 * n); needLen("swigluRows", "out", out, rows * n);
}

/** Throws a clear error when a buffer is smaller than an op needs. Shared by every backend. */
export function needLen(op: string, what: string, buf: Buf, need: number): void {
  if (!Number.isInteger(need) || need < 0) throw new Error(`${op}: bad size for ${what}: ${need}`);
  if (buf.length < need) {
    throw new Error(`${op}: ${what} holds ${buf.length} values but ${need} are needed`);
  }
}
