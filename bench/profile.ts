// Where one decode step's (or one prefill's) GPU time goes, op by op, on CUDA.
//   bun run bench -- profile --preset 8b|1.7b [--pos 128,2048] [--prefill 512 [--ctx N]]
// --prefill N profiles one forward pass over an N-token prompt instead of decode steps, in a session
// of --ctx positions (default N + 8).
// An event is recorded after every backend op of one decode step (no graph), so each op's time is
// the gap between consecutive events. The step is enqueued behind a long memset, so the gaps are
// GPU time, not launch gaps. Summed per op and shape.

import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CudaBackend } from "../src/backend/cuda/index.ts";
import type { Backend, Q1Weight } from "../src/backend/backend.ts";
import { loadCheckpoint } from "../src/io/checkpoint.ts";
import { makeModel, PRESETS } from "../src/model/make.ts";
import { Qwen3 } from "../src/model/qwen3.ts";

const OPS = new Set(["embed", "rmsnorm", "addRmsnorm", "matmul", "qkNormRopeAppend", "attention", "swiglu", "swigluRows", "add", "sampleToken"]);
const arg = (argv: string[], k: string, d: string) => { const i = argv.indexOf(k); return i >= 0 && argv[i + 1] ? argv[i + 1]! : d; };

export async function benchProfile(argv: string[]): Promise<void> {
  const preset = arg(argv, "--preset", "8b");
  const positions = arg(argv, "--pos", "128,2048").split(",").map(Number);
  const prefill = Number(arg(argv, "--prefill", "0"));
  if (!Number.isInteger(prefill) || prefill < 0) throw new Error(`--prefill must be a whole number of tokens, got ${arg(argv, "--prefill", "0")}`);
  const spec = PRESETS[preset];
  if (!spec) throw new Error(`unknown preset ${preset}`);
  const dir = join(process.env.BUNSAI_BENCH_DIR ?? tmpdir(), `bunsai-bench-${preset}`);
  if (!existsSync(join(dir, "model.safetensors"))) await makeModel(dir, spec, 0);
  const ck = loadCheckpoint(dir);
  const b = new CudaBackend();
  const cu = b.cu, stream = (b as unknown as { stream: bigint }).stream;
  const BLOCK_BYTES = 8 * 2 ** 30, blocker = cu.alloc(BLOCK_BYTES);
  let marks: { label: string; ev: bigint }[] | null = null;
  const proxy = new Proxy(b, {
    get(t, p) {
      if (p === "replayable" && marks) return undefined; // run the step op by op
      const v = Reflect.get(t, p, t);
      if (typeof v !== "function") return v;
      return (...args: unknown[]) => {
        const out = v.apply(t, args);
        if (marks && OPS.has(String(p))) {
          const ev = cu.createEvent();
          cu.record(ev, stream);
          const w = p === "matmul" ? (args[2] as Q1Weight) : null;
          marks.push({ label: w ? `matmul ${w.cols}->${w.rows}` : String(p), ev });
        }
        return out;
      };
    },
  }) as Backend;
  const model = new Qwen3(ck.config, proxy, ck);
  const greedy = { temperature: 0, topK: 0, topP: 1 };
  const ids = (n: number) => Array.from({ length: n }, (_, i) => (i * 7919 + 13) % 151000);
  // One run of `work` with an event after every backend op; prints the GPU time per op and shape.
  const profile = async (title: string, work: () => Promise<void>): Promise<void> => {
    const start = cu.createEvent();
    b.sync();
    // keep the GPU busy (~10 ms of memset) while the ops are enqueued, so they then run back to
    // back and the gaps between events are GPU time, not the JS launch rate
    for (let i = 0; i < 4; i++) cu.memsetD8Async(blocker, i, BLOCK_BYTES, stream);
    marks = [];
    cu.record(start, stream);
    const t0 = performance.now();
    await work();
    const wall = performance.now() - t0;
    const m = marks;
    marks = null;
    const per = new Map<string, { us: number; n: number }>();
    let prev = start, total = 0;
    for (const { label, ev } of m) {
      const us = cu.elapsed(prev, ev) * 1000;
      total += us;
      const e = per.get(label) ?? { us: 0, n: 0 };
      e.us += us; e.n++;
      per.set(label, e);
      prev = ev;
    }
    console.log(`\n${title}: ${total.toFixed(0)} µs GPU (host wall ${(wall * 1000).toFixed(0)} µs), ${m.length} ops`);
    for (const [label, e] of [...per].sort((a, c) => c[1].us - a[1].us)) {
      console.log(`  ${label.padEnd(26)} ${e.us.toFixed(1).padStart(9)} µs  ${String(e.n).padStart(4)} x  ${(e.us / e.n).toFixed(2).padStart(7)} µs each  ${((100 * e.us) / total).toFixed(1).padStart(5)} %`);
    }
    for (const { ev } of m) cu.destroyEvent(ev);
    cu.destroyEvent(start);
  };
  if (prefill > 0) {
    console.log(`GPU: ${b.info.name}; preset ${preset}; per-op GPU time of one ${prefill}-token prefill (events between ops)`);
    const ctx = Number(arg(argv, "--ctx", String(prefill + 8)));
    if (!Number.isInteger(ctx) || ctx < prefill) throw new Error(`--ctx must be a whole number >= --prefill (${prefill}), got ${arg(argv, "--ctx", "")}`);
    const s = model.newSession(ctx);
    await model.forward(s, ids(Math.min(prefill, 128))); // kernels compiled, buffers grown
    s.reset();
    await profile(`prefill of ${prefill} tokens (session of ${ctx} positions)`, async () => { await model.forward(s, ids(prefill)); });
    s.dispose();
    cu.free(blocker);
    model.dispose();
    return;
  }
  console.log(`GPU: ${b.info.name}; preset ${preset}; per-op GPU time of one decode step (events between ops, no graph)`);
  for (const pos of positions) {
    const s = model.newSession(pos + 64);
    await model.forward(s, ids(pos));
    let tok = 785;
    for (let i = 0; i < 4; i++) tok = await model.nextToken(s, tok, greedy); // graphs + caches warm
    await profile(`context ${pos + 5}`, async () => { tok = await model.nextToken(s, tok, greedy); });
    s.dispose();
    // graph-replayed step for comparison
    const g = model.newSession(pos + 64);
    await model.forward(g, ids(pos));
    for (let i = 0; i < 8; i++) tok = await model.nextToken(g, tok, greedy);
    const tg = performance.now();
    for (let i = 0; i < 32; i++) tok = await model.nextToken(g, tok, greedy);
    console.log(`  graph-replayed decode at this context: ${(((performance.now() - tg) / 32) * 1000).toFixed(0)} µs/token`);
    g.dispose();
  }
  cu.free(blocker);
  model.dispose();
}
