// The server seen from HTTP: starts it in-process on loopback, then measures
//   - single-stream decode tok/s, wall clock: (tokens(256) - tokens(32)) / (time(256) - time(32)),
//     which cancels out the request overhead and the prefill;
//   - throughput (completion tok/s over all clients), p50 / p99 latency and TTFT at 1, 4, 16 clients.
// Bounded: a fixed number of requests per level and a deadline after which no new request starts.
//
//   bun bench/server.ts [--model DIR] [--backend auto|cpu|cuda|metal] [--tokens 64] [--requests 2] [--max-seconds 120]
//   bun run bench -- server ...   (through bench/main.ts)

import { BACKEND_CHOICES, type BackendChoice } from "../src/backend/select.ts";
import { numFlag, parseFlags, runMain, UsageError } from "../src/cli/args.ts";
import { defaultModelPath } from "../src/cli/default-model.ts";
import { startServer } from "../src/server/server.ts";

const USAGE = `usage: bun bench/server.ts [--model DIR] [--backend ${BACKEND_CHOICES.join("|")}] [--tokens N] [--requests N] [--levels 1,4,16] [--max-seconds S]

  --tokens N       completion tokens per request in the concurrency runs (default 64)
  --requests N     requests per client at each concurrency level (default 2)
  --levels LIST    concurrency levels (default 1,4,16)
  --max-seconds S  no new request starts after this (default 120)`;

const PROMPT = "Count from one to one thousand, writing every number in words, one per line:";

interface Result { tokens: number; ms: number; ttftMs: number }

/** One streamed completion; counts tokens from the usage chunk. */
async function streamOnce(url: string, maxTokens: number): Promise<Result> {
  const t0 = performance.now();
  const r = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt: PROMPT, max_tokens: maxTokens, temperature: 0, stream: true, stream_options: { include_usage: true } }),
  });
  if (r.status !== 200) throw new Error(`bench: the server answered ${r.status}: ${await r.text()}`);
  let ttftMs = -1, tokens = 0, buf = "";
  const dec = new TextDecoder();
  for await (const bytes of r.body!) {
    buf += dec.decode(bytes, { stream: true });
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (!ev.startsWith("data: ") || ev === "data: [DONE]") continue;
      const j = JSON.parse(ev.slice(6));
      if (ttftMs < 0 && j.choices?.[0]?.text) ttftMs = performance.now() - t0;
      if (j.usage) tokens = j.usage.completion_tokens;
    }
  }
  return { tokens, ms: performance.now() - t0, ttftMs: Math.max(0, ttftMs) };
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
}

export async function benchServer(argv: string[]): Promise<void> {
  const { values: f } = parseFlags(argv, {
    model: { type: "string" }, backend: { type: "string" }, tokens: { type: "string" }, requests: { type: "string" },
    levels: { type: "string" }, "max-seconds": { type: "string" }, help: { type: "boolean" },
  }, USAGE);
  if (f.help) { console.log(USAGE); return; }
  const backend = (f.backend ?? "auto") as BackendChoice;
  if (!BACKEND_CHOICES.includes(backend)) throw new UsageError(`--backend must be one of ${BACKEND_CHOICES.join(", ")}, got "${f.backend}"`);
  const tokens = numFlag("tokens", f.tokens, 64, { int: true, min: 1, max: 4096 });
  const perClient = numFlag("requests", f.requests, 2, { int: true, min: 1, max: 100 });
  const maxSeconds = numFlag("max-seconds", f["max-seconds"], 120, { min: 1 });
  const levels = (f.levels ?? "1,4,16").split(",").map((v) => numFlag("levels", v, 1, { int: true, min: 1, max: 64 }));
  const modelPath = f.model ?? (await defaultModelPath());
  const deadline = performance.now() + maxSeconds * 1000;

  const server = startServer({ modelPath, backend, host: "127.0.0.1", port: 0, maxConcurrency: Math.max(...levels), maxQueue: 1024, ctx: 512 });
  try {
    const model = await server.ready;
    console.log(`server bench: ${server.state.opts.modelId} on ${model.backend.device} (backend ${model.backend.name}), ${server.url}`);
    await streamOnce(server.url, 4); // warm-up: first-call compilation, caches

    const short = await streamOnce(server.url, 32);
    const long = await streamOnce(server.url, 256);
    const dTok = long.tokens - short.tokens, dMs = long.ms - short.ms;
    const single = dTok > 0 && dMs > 0 ? (dTok / dMs) * 1000 : NaN;
    console.log(`single stream, wall clock from HTTP: ${single.toFixed(1)} tok/s  (${short.tokens} tok in ${short.ms.toFixed(0)} ms, ${long.tokens} tok in ${long.ms.toFixed(0)} ms)`);

    const rows: string[][] = [["clients", "requests", "tok/s", "p50 ms", "p99 ms", "ttft p50 ms", "ttft p99 ms"]];
    for (const c of levels) {
      if (performance.now() > deadline) { console.log(`(deadline reached; skipped ${c} clients)`); continue; }
      const results: Result[] = [];
      const t0 = performance.now();
      await Promise.all(Array.from({ length: c }, async () => {
        for (let i = 0; i < perClient && performance.now() < deadline; i++) results.push(await streamOnce(server.url, tokens));
      }));
      const wall = performance.now() - t0;
      const tok = results.reduce((a, r) => a + r.tokens, 0);
      const lat = results.map((r) => r.ms), ttft = results.map((r) => r.ttftMs);
      rows.push([String(c), String(results.length), ((tok / wall) * 1000).toFixed(1), pct(lat, 50).toFixed(0), pct(lat, 99).toFixed(0), pct(ttft, 50).toFixed(0), pct(ttft, 99).toFixed(0)]);
    }
    const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    console.log(`\n${model.backend.device}, ${tokens} completion tokens per request:`);
    for (const r of rows) console.log(r.map((v, i) => v.padStart(w[i]!)).join("  "));
  } finally {
    await server.stop();
  }
}

if (import.meta.main) await runMain(() => benchServer(process.argv.slice(2)));
