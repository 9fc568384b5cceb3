// The CPU reference backend: pure TypeScript, f32 buffers. Slow, readable, and the oracle.

import { checkCopy2d, checkSwigluRows, needLen, type AttnShape, type Backend, type Buf, type KVCache, type Q1Weight, type RopeSpec } from "../backend.ts";
import { checkQ1Shape, q1ScalesF32, type Q1Host } from "../../quant/q1.ts";
import { qmm, type Q1Cpu } from "./qmv.ts";
import * as ops from "./ops.ts";

class CpuBuf implements Buf {
  constructor(readonly data: Float32Array) {}
  get length(): number { return this.data.length; }
}

class CpuQ1 implements Q1Weight {
  constructor(readonly q: Q1Cpu) {}
  get rows(): number { return this.q.rows; }
  get cols(): number { return this.q.cols; }
}

class CpuKV implements KVCache {
  readonly k: Float32Array[] = [];
  readonly v: Float32Array[] = [];
  constructor(readonly layers: number, readonly ctx: number, readonly nKvHeads: number, readonly headDim: number) {
    for (let l = 0; l < layers; l++) {
      this.k.push(new Float32Array(ctx * nKvHeads * headDim));
      this.v.push(new Float32Array(ctx * nKvHeads * headDim));
    }
  }
}

const data = (b: Buf): Float32Array => {
  if (!(b instanceof CpuBuf)) throw new Error("cpu backend: buffer belongs to another backend");
  return b.data;
};
const q1 = (w: Q1Weight): Q1Cpu => {
  if (!(w instanceof CpuQ1)) throw new Error("cpu backend: weight belongs to another backend");
  return w.q;
};
const kv = (c: KVCache): CpuKV => {
  if (!(c instanceof CpuKV)) throw new Error("cpu backend: KV cache belongs to another backend");
  if (c.k.length !== c.layers) throw new Error("cpu backend: KV cache was freed");
  return c;
};

export class CpuBackend implements Backend {
  readonly name = "cpu" as const;
  readonly device = "CPU (TypeScript reference, f32)";
  private pos = 0;
  private tokens: Int32Array<ArrayBufferLike> = new Int32Array(0);

  alloc(length: number): Buf { return new CpuBuf(new Float32Array(length)); }
  upload(d: Float32Array): Buf { return new CpuBuf(Float32Array.from(d)); }
  slice(buf: Buf, offset: number, length: number): Buf {
    needLen("slice", "buffer", buf, offset + length);
    return new CpuBuf(data(buf).subarray(offset, offset + length));
  }
  uploadQ1(w: Q1Host): Q1Weight {
    checkQ1Shape(w.rows, w.cols);
    const { scales, biases } = q1ScalesF32(w);
    const bytes = new Uint8Array(w.words.buffer, w.words.byteOffset, w.words.byteLength);
    return new CpuQ1({ rows: w.rows, cols: w.cols, bytes, scales, biases });
  }
  allocKV(layers: number, ctx: number, nKvHeads: number, headDim: number): KVCache {
    return new CpuKV(layers, ctx, nKvHeads, headDim);
  }
  freeKV(cache: KVCache): void {
    if (!(cache instanceof CpuKV)) throw new Error("freeKV: KV cache belongs to another backend");
    const c = cache;
    c.k.length = 0; // drop the arrays; kv() refuses a freed cache
    c.v.length = 0;
  }
  async read(buf: Buf): Promise<Float32Array> { return Float32Array.from(data(buf)); }

  setStep(pos: number, tokens: Int32Array): void {
    if (!Number.isInteger(pos) || pos < 0) throw new Error(`setStep: bad position ${pos}`);
    this.pos = pos;
    this.tokens = tokens;
  }

  embed(out: Buf, table: Q1Weight): void {
    const t = q1(table), o = data(out), T = this.tokens.length, K = t.cols, groups = K / 128;
    needLen("embed", "out", out, T * K);
    for (let i = 0; i < T; i++) {
      const id = this.tokens[i]!;
      if (id < 0 || id >= t.rows) throw new Error(`embed: token id ${id} outside the vocabulary (0..${t.rows - 1})`);
      for (let k = 0; k < K; k++) {
        const bit = (t.bytes[id * (K / 8) + (k >> 3)]! >> (k & 7)) & 1;
        const g = id * groups + (k >> 7);
        o[i * K + k] = bit ? t.scales[g]! + t.biases[g]! : t.biases[g]!;
      }
    }
  }

  rmsnorm(out: Buf, x: Buf, weight: Buf, rows: number, dim: number, eps: number): void {
    needLen("rmsnorm", "x", x, rows * dim);
    needLen("rmsnorm", "out", out, rows * dim);
    needLen("rmsnorm", "weight", weight, dim);
    ops.rmsnorm(data(out), data(x), data(weight), rows, dim, eps);
  }

  addRmsnorm(x: Buf, delta: Buf, weight: Buf, out: Buf, rows: number, dim: number, eps: number): void {
    this.add(x, x, delta, rows * dim);
    this.rmsnorm(out, x, weight, rows, dim, eps);
  }

  matmul(out: Buf, x: Buf, w: Q1Weight, M: number): void {
    needLen("matmul", "x", x, M * w.cols);
    needLen("matmul", "out", out, M * w.rows);
    qmm(data(out), data(x), q1(w), M);
  }

  qkNormRopeAppend(
    q: Buf, k: Buf, v: Buf, qNorm: Buf, kNorm: Buf, eps: number,
    rope: RopeSpec, shape: AttnShape, cache: KVCache, layer: number, T: number,
  ): void {
    const { nHeads, nKvHeads, headDim: d } = shape, c = kv(cache);
    needLen("qkNormRopeAppend", "q", q, T * nHeads * d);
    needLen("qkNormRopeAppend", "k", k, T * nKvHeads * d);
    needLen("qkNormRopeAppend", "v", v, T * nKvHeads * d);
    if (this.pos + T > c.ctx) throw new Error(`context full: positions up to ${this.pos + T} but the KV cache holds ${c.ctx}`);
    const qd = data(q), kd = data(k), vd = data(v), kc = c.k[layer]!, vc = c.v[layer]!;
    const kRow = new Float32Array(nKvHeads * d);
    for (let t = 0; t < T; t++) {
      const p = this.pos + t;
      const qr = qd.subarray(t * nHeads * d, (t + 1) * nHeads * d);
      ops.rmsnorm(qr, qr, data(qNorm), nHeads, d, eps);
      for (let h = 0; h < nHeads; h++) ops.ropeHead(qr, h * d, d, p, rope.invFreq, rope.attentionFactor);
      ops.rmsnorm(kRow, kd.subarray(t * nKvHeads * d), data(kNorm), nKvHeads, d, eps);
      for (let h = 0; h < nKvHeads; h++) ops.ropeHead(kRow, h * d, d, p, rope.invFreq, rope.attentionFactor);
      kc.set(kRow, p * nKvHeads * d);
      vc.set(vd.subarray(t * nKvHeads * d, (t + 1) * nKvHeads * d), p * nKvHeads * d);
    }
  }

  attention(out: Buf, q: Buf, shape: AttnShape, cache: KVCache, layer: number, T: number): void {
    const { nHeads, nKvHeads, headDim } = shape, c = kv(cache);
    needLen("attention", "q", q, T * nHeads * headDim);
    needLen("attention", "out", out, T * nHeads * headDim);
    ops.attention(data(out), data(q), c.k[layer]!, c.v[layer]!, T, this.pos, nHeads, nKvHeads, headDim);
  }

  swigluRows(out: Buf, gu: Buf, rows: number, n: number): void {
    checkSwigluRows(out, gu, rows, n);
    const o = data(out), g = data(gu);
    for (let r = 0; r < rows; r++) ops.swiglu(o.subarray(r * n, (r + 1) * n), g.subarray(2 * r * n, (2 * r + 1) * n), g.subarray((2 * r + 1) * n, (2 * r + 2) * n), n);
  }
  swiglu(out: Buf, gate: Buf, up: Buf, n: number): void {
    needLen("swiglu", "gate", gate, n); needLen("swiglu", "up", up, n); needLen("swiglu", "out", out, n);
    ops.swiglu(data(out), data(gate), data(up), n);
  }

  copy2d(dst: Buf, dstStride: number, src: Buf, srcStride: number, rows: number, cols: number): void {
    checkCopy2d(dst, dstStride, src, srcStride, rows, cols);
    const d = data(dst), s = data(src);
    for (let r = 0; r < rows; r++) d.set(s.subarray(r * srcStride, r * srcStride + cols), r * dstStride);
  }

  add(out: Buf, a: Buf, b: Buf, n: number): void {
    needLen("add", "a", a, n); needLen("add", "b", b, n); needLen("add", "out", out, n);
    ops.add(data(out), data(a), data(b), n);
  }

  dispose(): void {}
}
