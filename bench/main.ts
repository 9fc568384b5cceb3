// `bun run bench -- <name> [args]`: one dispatch table of benchmarks, each in its own file.

const BENCHES: Record<string, { about: string; run: (argv: string[]) => Promise<void> }> = {
  kernels: { about: "every Bonsai-8B matvec shape on the GPU: µs, GB/s, % of bandwidth (fast vs legacy)", run: async (a) => (await import("./kernels.ts")).benchKernels(a) },
  decode: { about: "decode / prefill tok/s of a random checkpoint (--preset 8b|1.7b|4b|tiny, --ctx N)", run: async (a) => (await import("./decode.ts")).benchDecode(a) },
  attention: { about: "prefill attention: split kernels vs the tiled attention_prefill_f32, µs per launch (--cases T:pos,...)", run: async (a) => (await import("./attention.ts")).benchAttention(a) },
  profile: { about: "per-op GPU time of one decode step (--preset 8b|1.7b, --pos 128,2048) or prefill (--prefill 512)", run: async (a) => (await import("./profile.ts")).benchProfile(a) },
  server: { about: "the OpenAI-compatible server under load", run: async (a) => (await import("./server.ts")).benchServer(a) },
};

const [name, ...rest] = process.argv.slice(2).filter((a, i) => !(i === 0 && a === "--"));
const b = name ? BENCHES[name] : undefined;
if (!b) {
  console.error(`usage: bun run bench -- <${Object.keys(BENCHES).join("|")}> [args]`);
  for (const [k, v] of Object.entries(BENCHES)) console.error(`  ${k.padEnd(8)} ${v.about}`);
  process.exit(name ? 1 : 0);
}
await b.run(rest);
export {};
