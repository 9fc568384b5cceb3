// The generation loop on the tiny model: stop strings (also split across tokens), EOS, max tokens,
// abort, and prefill chunking that does not change the numbers.
import { beforeAll, describe, expect, test } from "bun:test";
import { loadCheckpoint } from "../src/io/checkpoint.ts";
import { CpuBackend } from "../src/backend/cpu/index.ts";
import { Qwen3 } from "../src/model/qwen3.ts";
import { TextTokenizer } from "../src/tokenizer.ts";
import { generateSteps, PromptTooLongError, type GenerationStats, type Step } from "../src/generate.ts";
import { PRESETS } from "../src/model/make.ts";
import { maxAbsDiff, testModel } from "./helpers.ts";

let dir = "", model: Qwen3, tok: TextTokenizer;
const prompt = [785, 6722, 315, 9625, 374];
beforeAll(async () => {
  dir = await testModel("tiny-seed0", PRESETS.tiny!, 0);
  const ck = loadCheckpoint(dir);
  model = new Qwen3(ck.config, new CpuBackend(), ck);
  tok = TextTokenizer.load(dir, ck.config.eosTokenIds);
});

async function run(t: TextTokenizer, opts: Parameters<typeof generateSteps>[3]): Promise<{ steps: Step[]; stats: GenerationStats }> {
  const g = generateSteps(model, t, prompt, opts);
  const steps: Step[] = [];
  let r = await g.next();
  while (!r.done) { steps.push(r.value); r = await g.next(); }
  return { steps, stats: r.value };
}

describe("generateSteps", () => {
  test("max tokens, stats, and step texts that add up to the text", async () => {
    const { steps, stats } = await run(tok, { maxTokens: 12 });
    expect(stats.generatedTokens).toBe(12);
    expect(stats.finishReason).toBe("length");
    expect(steps.map((s) => s.text).join("")).toBe(stats.text);
    expect(stats.text).toBe(tok.decode(steps.filter((s) => s.token !== null).map((s) => s.token!)));
    expect(stats.promptTokens).toBe(5);
    expect(stats.promptTps).toBeGreaterThan(0);
    expect(stats.ttftMs).toBeGreaterThan(0);
  });

  test("a stop string split across two tokens cuts the text before it", async () => {
    const { steps, stats: full } = await run(tok, { maxTokens: 16 });
    // find a token boundary with text on both sides and build a stop string across it
    let at = -1, acc = "";
    for (let i = 0; i + 1 < steps.length; i++) {
      acc += steps[i]!.text;
      if (steps[i]!.text.length >= 2 && steps[i + 1]!.text.length >= 2 && i >= 2) { at = acc.length; break; }
    }
    expect(at).toBeGreaterThan(0);
    const stop = full.text.slice(at - 2, at + 2);
    const first = full.text.indexOf(stop);
    const { steps: s2, stats } = await run(tok, { maxTokens: 16, stop: ["never-there", stop] });
    expect(stats.finishReason).toBe("stop");
    expect(stats.text).toBe(full.text.slice(0, first));
    expect(s2.map((s) => s.text).join("")).toBe(stats.text);
  });

  test("an EOS id ends generation with finish reason stop", async () => {
    const { steps } = await run(tok, { maxTokens: 6 });
    const third = steps[2]!.token!;
    const t2 = TextTokenizer.load(dir, [third]);
    const { stats } = await run(t2, { maxTokens: 6 });
    expect(stats.finishReason).toBe("stop");
    expect(stats.generatedTokens).toBe(steps.findIndex((s) => s.token === third) + 1);
  });

  test("an aborted signal ends at the next step", async () => {
    const ac = new AbortController();
    const g = generateSteps(model, tok, prompt, { maxTokens: 50, signal: ac.signal });
    await g.next();
    ac.abort();
    let r = await g.next();
    while (!r.done) r = await g.next();
    expect(r.value.finishReason).toBe("abort");
    expect(r.value.generatedTokens).toBe(1);
  });

  test("a seed reproduces a sampled generation", async () => {
    const a = await run(tok, { maxTokens: 8, temperature: 0.9, topP: 0.95, seed: 11 });
    const b = await run(tok, { maxTokens: 8, temperature: 0.9, topP: 0.95, seed: 11 });
    expect(a.stats.text).toBe(b.stats.text);
  });

  test("a prompt longer than the context is refused with the counts", async () => {
    const g = generateSteps(model, tok, prompt, { maxTokens: 0, ctx: 3 });
    await expect(g.next()).rejects.toThrow(PromptTooLongError);
  });

  test("logprobs: each step's logprob is <= 0 and its top list is sorted", async () => {
    const { steps } = await run(tok, { maxTokens: 3, logprobs: 3 });
    for (const s of steps.filter((s) => s.token !== null)) {
      expect(s.logprob!).toBeLessThanOrEqual(0);
      expect(s.topLogprobs!.length).toBe(3);
      expect(s.topLogprobs![0]!.logprob).toBeGreaterThanOrEqual(s.topLogprobs![2]!.logprob);
      expect(s.topLogprobs![0]!.token).toBe(s.token!); // greedy picks the best
    }
  });
});

describe("KV cache lifetime", () => {
  test("a generation frees the session it made, also when stopped early; a freed session is refused", async () => {
    let freed = 0;
    class Counting extends CpuBackend { override freeKV(c: Parameters<CpuBackend["freeKV"]>[0]) { freed++; super.freeKV(c); } }
    const ck = loadCheckpoint(dir);
    const m = new Qwen3(ck.config, new Counting(), ck);
    const g = generateSteps(m, tok, prompt, { maxTokens: 2 });
    for (let r = await g.next(); !r.done; r = await g.next());
    expect(freed).toBe(1);
    const g2 = generateSteps(m, tok, prompt, { maxTokens: 50 });
    await g2.next();
    await g2.return(undefined as never); // a consumer that stops early (a client that left)
    expect(freed).toBe(2);
    const s = m.newSession(8);
    s.dispose();
    await expect(m.forward(s, [1])).rejects.toThrow(/session was disposed/);
  });
});

describe("prefill chunking (rows per pass) does not change the numbers", () => {
  test("300 tokens at once in passes of 128 vs 150 then 150 one at a time", async () => {
    const ck = loadCheckpoint(dir), m = new Qwen3(ck.config, new CpuBackend(), ck, { prefillChunk: 128 });
    const ids = Array.from({ length: 300 }, (_, i) => (i * 104729) % 150000);
    const a = await m.forward(m.newSession(300), ids);
    const s = m.newSession(300);
    let b = await m.forward(s, ids.slice(0, 150));
    for (const id of ids.slice(150)) b = await m.forward(s, [id]);
    expect(maxAbsDiff(a, b)).toBeLessThan(1e-4);
  }, 60_000);
  // (the default pass computes the 130 positions' logits 128 rows at a time; passes of 60 rows: 60, 60, 10)
  test("every position's logits: passes of 60 rows vs the default (one pass), 130 tokens", async () => {
    const ck = loadCheckpoint(dir), m60 = new Qwen3(ck.config, new CpuBackend(), ck, { prefillChunk: 60 });
    const ids = Array.from({ length: 130 }, (_, i) => (i * 7919 + 3) % 150000);
    const a = await model.forward(model.newSession(130), ids, { allPositions: true });
    const b = await m60.forward(m60.newSession(130), ids, { allPositions: true });
    expect(model.chunk).toBe(512);
    expect(a.length).toBe(130 * ck.config.vocabSize);
    expect(maxAbsDiff(a, b)).toBeLessThan(1e-4);
  }, 60_000);
  test("a prefill chunk that is not a positive integer is refused", () => {
    const ck = loadCheckpoint(dir);
    expect(() => new Qwen3(ck.config, new CpuBackend(), ck, { prefillChunk: 0 })).toThrow(/prefillChunk must be an integer >= 1, got 0/);
  });
});
