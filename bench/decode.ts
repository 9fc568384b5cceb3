// Decode and prefill speed of a random checkpoint with the exact Bonsai shapes, on CUDA.
//   bun run bench -- decode --preset 8b|4b|1.7b|tiny [--tokens 256] [--prefill 512] [--ctx N]
// Decode: greedy, the step replayed from a captured CUDA graph, argmax on the GPU (4 bytes back per
// token), timed over --tokens tokens after 16 warm-up tokens. GB/s = weight bytes read per token
// (every 1-bit matrix but the gathered embedding, with f16 scales and biases) * tok/s.
// --ctx: the decode session's KV-cache size (default --tokens + 64 + 512); decoding still runs at
// positions 1-273, so a large --ctx shows what a big cache costs a short conversation.

import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CudaBackend } from "../src/backend/cuda/index.ts";
import { loadCheckpoint } from "../src/io/checkpoint.ts";
import { makeModel, PRESETS } from "../src/model/make.ts";
import { Qwen3 } from "../src/model/qwen3.ts";
import type { ModelConfig } from "../src/io/config.ts";

// llama.cpp on one H200, peers.md (pp512, tg128)
const LLAMA: Record<string, { decode: number; prefill: number }> = { "8b": { decode: 313.8, prefill: 8537 }, "1.7b": { decode: 659.7, prefill: 22578 } };

const arg = (argv: string[], k: string, d: string) => { const i = argv.indexOf(k); return i >= 0 && argv[i + 1] ? argv[i + 1]! : d; };

function weightBytesPerToken(c: ModelConfig): number {
  const m = (n: number, k: number) => (n * k) / 8 + 4 * n * (k / 128); // bits + f16 scale + f16 bias per group
  const q = c.numHeads * c.headDim, kv = c.numKvHeads * c.headDim, H = c.hiddenSize, I = c.intermediateSize;
  return c.numLayers * (m(q, H) + 2 * m(kv, H) + m(H, q) + 3 * m(I, H)) + m(c.vocabSize, H);
}

export async function benchDecode(argv: string[]): Promise<void> {
  const preset = arg(argv, "--preset", "8b"), nTok = Number(arg(argv, "--tokens", "256")), nPre = Number(arg(argv, "--prefill", "512"));
  const spec = PRESETS[preset];
  if (!spec) throw new Error(`unknown preset ${preset}; one of ${Object.keys(PRESETS).join(", ")}`);
  const dir = join(process.env.BUNSAI_BENCH_DIR ?? tmpdir(), `bunsai-bench-${preset}`);
  if (!existsSync(join(dir, "model.safetensors"))) {
    const t = performance.now();
    await makeModel(dir, spec, 0);
    console.log(`made random ${preset} checkpoint in ${((performance.now() - t) / 1e3).toFixed(1)} s`);
  }
  const t0 = performance.now();
  const ck = loadCheckpoint(dir);
  const b = new CudaBackend();
  const model = new Qwen3(ck.config, b, ck);
  b.sync();
  const loadS = (performance.now() - t0) / 1e3;
  const gpu = b.info.name, bw = b.info.bandwidth, bytes = weightBytesPerToken(ck.config);
  console.log(`GPU: ${gpu} (${b.info.arch}, ${b.info.sms} SMs, ${(bw / 1e9).toFixed(0)} GB/s theoretical); preset ${preset}; load ${loadS.toFixed(2)} s; kernels: ${b.compileStats.compiled} compiled, ${b.compileStats.cached} cached`);

  const greedy = { temperature: 0, topK: 0, topP: 1 };
  const ctx = Number(arg(argv, "--ctx", String(nPre + nTok + 64)));
  if (!Number.isInteger(ctx) || ctx < nTok + 32) throw new Error(`bench decode: --ctx must be an integer >= --tokens + 32 (${nTok + 32})`);
  const s = model.newSession(ctx);
  let tok = await model.nextToken(s, 785, greedy);
  for (let i = 0; i < 16; i++) tok = await model.nextToken(s, tok, greedy); // warm-up + graph capture
  const decode = async () => {
    const t = performance.now();
    for (let i = 0; i < nTok; i++) tok = await model.nextToken(s, tok, greedy);
    return nTok / ((performance.now() - t) / 1e3);
  };
  const tps = await decode();
  s.reset();
  process.env.BUNSAI_NO_GRAPH = "1";
  const tpsNoGraph = await decode();
  delete process.env.BUNSAI_NO_GRAPH;

  const ids = Array.from({ length: nPre }, (_, i) => (i * 7919 + 13) % 151000);
  const sp = model.newSession(nPre + 8);
  await model.forward(sp, ids.slice(0, 128)); // warm-up
  sp.reset();
  const tp = performance.now();
  await model.forward(sp, ids);
  const pps = nPre / ((performance.now() - tp) / 1e3);

  const mem = b.memoryStats();
  const gbs = (bytes * tps) / 1e9;
  const ref = LLAMA[preset];
  console.log(`decode: ${tps.toFixed(1)} tok/s over ${nTok} tokens (CUDA graph), ${tpsNoGraph.toFixed(1)} tok/s without graph; KV cache of ${ctx} positions`);
  console.log(`        ${(bytes / 1e9).toFixed(3)} GB weights/token -> ${gbs.toFixed(0)} GB/s = ${((100 * gbs * 1e9) / bw).toFixed(1)} % of ${gpu} bandwidth`);
  console.log(`prefill: ${pps.toFixed(0)} tok/s at ${nPre} tokens`);
  console.log(`memory: peak ${(mem.peak / 2 ** 30).toFixed(2)} GiB allocated by bunsai; device used ${((mem.deviceTotal - mem.deviceFree) / 2 ** 30).toFixed(2)} GiB of ${(mem.deviceTotal / 2 ** 30).toFixed(0)}`);
  if (ref) console.log(`vs llama.cpp (H200, peers.md): decode ${(tps / ref.decode).toFixed(2)}x of ${ref.decode}, prefill ${(pps / ref.prefill).toFixed(2)}x of ${ref.prefill}  [this run: ${gpu}]`);
  model.dispose();
}
