// Qwen3 (the architecture of every Bonsai model), written against the Backend interface.
//
//   x = embed(tokens)
//   for each layer:
//     h = rmsnorm(x) ; q,k,v = h Wq, h Wk, h Wv ; q,k = rope(headnorm(q)), rope(headnorm(k)) -> KV cache
//     x = x + attention(q, cache) Wo
//     h = rmsnorm(x) ; x = x + (silu(h Wgate) * (h Wup)) Wdown
//   logits = rmsnorm(x) Wlm
//
// A Session owns one sequence's KV cache and position, so several sequences can share a model.

import type { AttnShape, Backend, Buf, KVCache, Q1Weight, RopeSpec } from "../backend/backend.ts";
import type { Checkpoint } from "../io/checkpoint.ts";
import type { ModelConfig } from "../io/config.ts";
import { ropeSpec } from "./rope.ts";
import { concatRows } from "../quant/q1.ts";
import { sampleHost, type SamplingParams } from "../backend/gpu-sample.ts";

// Projections that read the same input are stacked into one weight, so one launch serves them:
// qkv = rows of Wq, Wk, Wv; gateUp = rows of Wgate, Wup.
interface Layer {
  inputNorm: Buf; postNorm: Buf; qNorm: Buf; kNorm: Buf;
  qkv: Q1Weight; o: Q1Weight; gateUp: Q1Weight; down: Q1Weight;
}

/** One sequence: its KV cache and how many positions are filled. */
export class Session {
  pos = 0;
  private disposed = false;
  constructor(readonly kv: KVCache, private readonly backend: Backend) {}
  get ctx(): number { return this.kv.ctx; }
  reset(): void { this.pos = 0; }
  /** Frees the KV cache; the session cannot be used after. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.backend.freeKV(this.kv);
  }
  get isDisposed(): boolean { return this.disposed; }
}

export class ContextError extends Error {}

/** Rows of activations processed per pass in prefill by default; bounds scratch memory (~150 MB
 *  for the 8B). 512, not 128: with 128 rows the 8B's down and o projections launched 64 blocks of
 *  the tiled matmul on a 132-SM GPU (bench/RESULTS.md, sixth session). */
export const PREFILL_CHUNK = 512;
/** Rows of logits computed per pass when every position's logits are asked for. */
const LOGIT_ROWS = 128;

export interface Qwen3Options {
  /** Rows per prefill pass (default PREFILL_CHUNK). */
  prefillChunk?: number;
}

export class Qwen3 {
  readonly rope: RopeSpec;
  readonly shape: AttnShape;
  private readonly embed: Q1Weight;
  private readonly lmHead: Q1Weight;
  private readonly norm: Buf;
  private readonly layers: Layer[] = [];
  /** Rows per prefill pass. */
  readonly chunk: number;
  // scratch activations, [chunk, dim] each
  private readonly x: Buf; private readonly h: Buf; private readonly tmp: Buf;
  private readonly qkv: Buf; private readonly gu: Buf; // the stacked projections' outputs
  private readonly q: Buf; private readonly k: Buf; private readonly v: Buf; private readonly att: Buf;
  private readonly g: Buf;
  private logitsBuf: Buf; // [1, vocab], grown to [LOGIT_ROWS, vocab] when all positions are asked for
  private busy: Promise<void> = Promise.resolve();

  constructor(readonly config: ModelConfig, readonly backend: Backend, ckpt: Checkpoint, opts: Qwen3Options = {}) {
    const c = config, w = ckpt.weights, b = backend;
    const chunk = opts.prefillChunk ?? PREFILL_CHUNK;
    if (!Number.isInteger(chunk) || chunk < 1) throw new Error(`Qwen3: prefillChunk must be an integer >= 1, got ${chunk}`);
    this.chunk = chunk;
    this.rope = ropeSpec(c);
    this.shape = { nHeads: c.numHeads, nKvHeads: c.numKvHeads, headDim: c.headDim };
    this.embed = b.uploadQ1(w.embed);
    this.lmHead = c.tieWordEmbeddings ? this.embed : b.uploadQ1(w.lmHead);
    this.norm = b.upload(w.norm);
    for (const l of w.layers) {
      this.layers.push({
        inputNorm: b.upload(l.inputNorm), postNorm: b.upload(l.postNorm),
        qNorm: b.upload(l.qNorm), kNorm: b.upload(l.kNorm),
        qkv: b.uploadQ1(concatRows([l.q, l.k, l.v])), o: b.uploadQ1(l.o),
        gateUp: b.uploadQ1(concatRows([l.gate, l.up])), down: b.uploadQ1(l.down),
      });
    }
    const qDim = c.numHeads * c.headDim, kvDim = c.numKvHeads * c.headDim;
    this.x = b.alloc(chunk * c.hiddenSize); this.h = b.alloc(chunk * c.hiddenSize); this.tmp = b.alloc(chunk * c.hiddenSize);
    this.qkv = b.alloc(chunk * (qDim + 2 * kvDim)); this.gu = b.alloc(chunk * 2 * c.intermediateSize);
    this.q = b.alloc(chunk * qDim); this.att = b.alloc(chunk * qDim);
    this.k = b.alloc(chunk * kvDim); this.v = b.alloc(chunk * kvDim);
    this.g = b.alloc(chunk * c.intermediateSize);
    this.logitsBuf = b.alloc(c.vocabSize);
  }

  /** A new sequence with a KV cache of `ctx` positions. */
  newSession(ctx = Math.min(this.config.maxPositionEmbeddings, 4096)): Session {
    if (!Number.isInteger(ctx) || ctx < 1) throw new ContextError(`context size must be a positive integer, got ${ctx}`);
    const c = this.config;
    return new Session(this.backend.allocKV(c.numLayers, ctx, c.numKvHeads, c.headDim), this.backend);
  }

  /**
   * Runs `ids` through the model after what `session` already holds and returns logits:
   * the last position's [vocab], or [ids.length, vocab] with allPositions.
   */
  async forward(session: Session, ids: ArrayLike<number>, opts: { allPositions?: boolean } = {}): Promise<Float32Array> {
    return this.locked(() => this.forwardLocked(session, ids, opts.allPositions ?? false));
  }

  /** Runs fn when no other forward is running: they all share the scratch buffers. FIFO. */
  private async locked<T>(fn: () => Promise<T>): Promise<T> {
    const prev = this.busy;
    let done!: () => void;
    this.busy = new Promise((r) => (done = r));
    await prev;
    try {
      return await fn();
    } finally {
      done();
    }
  }

  /** Refuses a step that the session cannot take, before any work is enqueued. */
  private checkStep(session: Session, ids: ArrayLike<number>): void {
    const n = ids.length, V = this.config.vocabSize;
    if (session.isDisposed) throw new Error("forward: the session was disposed");
    if (n === 0) throw new Error("forward: no tokens given");
    if (session.pos + n > session.ctx) {
      throw new ContextError(`context full: ${session.pos} tokens held + ${n} new > context size ${session.ctx}`);
    }
    for (let i = 0; i < n; i++) {
      const id = ids[i]!;
      if (!Number.isInteger(id) || id < 0 || id >= V) throw new Error(`forward: token id ${id} at index ${i} is outside the vocabulary (0..${V - 1})`);
    }
  }

  private async forwardLocked(session: Session, ids: ArrayLike<number>, all: boolean): Promise<Float32Array> {
    this.checkStep(session, ids);
    const n = ids.length, V = this.config.vocabSize, H = this.config.hiddenSize, b = this.backend;
    const lr = Math.min(LOGIT_ROWS, this.chunk);
    if (all && this.logitsBuf.length < lr * V) this.logitsBuf = b.alloc(lr * V);
    const out = new Float32Array(all ? n * V : V);
    for (let start = 0; start < n; start += this.chunk) {
      const T = Math.min(this.chunk, n - start);
      const tokens = Int32Array.from({ length: T }, (_, i) => ids[start + i]!);
      this.layersPass(session, tokens);
      if (all) {
        for (let r = 0; r < T; r += lr) {
          const rows = Math.min(lr, T - r);
          this.head(b.slice(this.h, r * H, rows * H), rows);
          out.set(await b.read(b.slice(this.logitsBuf, 0, rows * V)), (start + r) * V);
        }
      } else if (start + T === n) {
        this.head(b.slice(this.h, (T - 1) * H, H), 1);
        out.set(await this.backend.read(this.backend.slice(this.logitsBuf, 0, V)));
      }
    }
    return out;
  }

  /** Embedding and every transformer block for T tokens at positions session.pos .. +T-1. */
  private layersPass(session: Session, tokens: Int32Array): void {
    const b = this.backend, T = tokens.length;
    b.setStep(session.pos, tokens);
    // A decode step (T = 1) is the same launches every time: a GPU backend may capture and replay it.
    const body = () => this.blocks(session, T);
    if (T === 1 && b.replayable) b.replayable(session.kv, body);
    else body();
    session.pos += T;
  }

  /**
   * The launches of layersPass after setStep (reads position and tokens from the step only).
   * Each residual add is fused with the norm that follows it; on return h holds model.norm(x).
   */
  private blocks(session: Session, T: number): void {
    const b = this.backend, c = this.config, H = c.hiddenSize, I = c.intermediateSize, eps = c.rmsNormEps;
    const qDim = c.numHeads * c.headDim, kvDim = c.numKvHeads * c.headDim;
    const { x, h, tmp, qkv, gu, att, g } = this;
    b.embed(x, this.embed); // x[T, H]
    b.rmsnorm(h, x, this.layers[0]!.inputNorm, T, H, eps); // h[T, H]
    this.layers.forEach((L, i) => {
      b.matmul(qkv, h, L.qkv, T); // qkv[T, qDim + 2 kvDim]
      const [q, k, v] = this.split(qkv, T, [qDim, kvDim, kvDim], [this.q, this.k, this.v]);
      b.qkNormRopeAppend(q, k, v, L.qNorm, L.kNorm, eps, this.rope, this.shape, session.kv, i, T);
      b.attention(att, q, this.shape, session.kv, i, T); // att[T, nHeads*D]
      b.matmul(tmp, att, L.o, T); // tmp[T, H]
      b.addRmsnorm(x, tmp, L.postNorm, h, T, H, eps); // x += tmp; h = post-attention norm(x)
      b.matmul(gu, h, L.gateUp, T); // gu[T, 2I]
      if (T === 1) b.swiglu(g, b.slice(gu, 0, I), b.slice(gu, I, I), I); // g[1, I] (fused with x's quantization on CUDA)
      else b.swigluRows(g, gu, T, I); // g[T, I] from the stacked halves, no copies
      b.matmul(tmp, g, L.down, T); // tmp[T, H]
      const next = this.layers[i + 1]?.inputNorm ?? this.norm;
      b.addRmsnorm(x, tmp, next, h, T, H, eps); // x += tmp; h = next layer's input norm(x), or the final norm
    });
  }

  /**
   * The column blocks of a stacked projection's output [T, sum(widths)]: views when T = 1 (the
   * decode step copies nothing), else copied into the contiguous buffers `into`.
   */
  private split(src: Buf, T: number, widths: number[], into: Buf[]): Buf[] {
    const b = this.backend, total = widths.reduce((a, w) => a + w, 0);
    let off = 0;
    return widths.map((w, i) => {
      const part = T === 1 ? b.slice(src, off, w) : (b.copy2d(into[i]!, w, b.slice(src, off, src.length - off), total, T, w), into[i]!);
      off += w;
      return part;
    });
  }

  /** logits[rows, vocab] = hs[rows, H] Wlm (hs already through the final norm), into logitsBuf. */
  private head(hs: Buf, rows: number): void {
    this.backend.matmul(this.logitsBuf, hs, this.lmHead, rows);
  }

  /**
   * Feeds one token and returns the next, sampled on the device when the backend can (only the id
   * crosses to the host), else on the host with the same definition (src/backend/gpu-sample.ts).
   */
  async nextToken(session: Session, id: number, params: SamplingParams, rand = 0): Promise<number> {
    const b = this.backend;
    if (!b.sampleToken) return sampleHost(await this.forward(session, [id]), params, rand);
    return this.locked(async () => {
      this.checkStep(session, [id]);
      this.layersPass(session, Int32Array.of(id));
      this.head(b.slice(this.h, 0, this.config.hiddenSize), 1);
      return b.sampleToken!(this.logitsBuf, this.config.vocabSize, params, rand);
    });
  }

  dispose(): void { this.backend.dispose(); }
}
