// The OpenAI-compatible server over real HTTP on 127.0.0.1, driven by the official openai client
// where it can be, by raw fetch where the point is a malformed request.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { makeModel, PRESETS } from "../src/model/make.ts";
import { startServer, type RunningServer } from "../src/server/server.ts";
import { ReasoningSplitter } from "../src/server/reasoning.ts";
import type { ChatMessage, GenerateOptions } from "../src/index.ts";

let dir: string;
let main: RunningServer; // 4 slots, ctx 256
let busy: RunningServer; // 1 slot, 1 queue place, API key, fast keep-alives (10 ms)
let client: OpenAI;
const KEY = "sk-test-key";

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "bunsai-server-"));
  await makeModel(join(dir, "tiny"), PRESETS.tiny!, 7);
  main = startServer({ modelPath: join(dir, "tiny"), backend: "cpu", port: 0, maxConcurrency: 4, maxQueue: 8, ctx: 256 });
  // keep-alives every 10 ms: the queued-stream test needs several while "first" holds the slot, and a
  // fast CPU decodes the tiny model's 200 tokens in ~100 ms (a 40 ms interval once flaked on a 16-core machine)
  busy = startServer({ modelPath: join(dir, "tiny"), backend: "cpu", port: 0, maxConcurrency: 1, maxQueue: 1, ctx: 256, apiKey: KEY, keepAliveMs: 10 });
  await Promise.all([main.ready, busy.ready]);
  client = new OpenAI({ baseURL: `${main.url}/v1`, apiKey: "unused", maxRetries: 0, timeout: 30_000 });
});

afterAll(async () => {
  await Promise.all([main?.stop(), busy?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

/** The in-process output for the same request, with nothing else running. */
async function solo(prompt: ChatMessage[] | string, opts: GenerateOptions): Promise<string> {
  const m = main.state.model!;
  const ids = typeof prompt === "string" ? m.tokenizer.encode(prompt) : m.promptIds(prompt);
  const g = m.generate(ids, opts);
  for (;;) { const r = await g.next(); if (r.done) return r.value.text; }
}

const user = (content: string) => [{ role: "user" as const, content }];
type ErrorBody = { error: { message: string; type: string; param: string | null; code: string | null } };

async function metric(s: RunningServer, line: string): Promise<number> {
  const text = await (await fetch(`${s.url}/metrics`)).text();
  const hit = text.split("\n").find((l) => l.startsWith(line + " "));
  return hit ? Number(hit.slice(line.length + 1)) : 0;
}

/** Polls until `ok` holds (bounded). */
async function until(ok: () => Promise<boolean>, ms = 5000): Promise<void> {
  for (const end = Date.now() + ms; Date.now() < end;) {
    if (await ok()) return;
    await Bun.sleep(20);
  }
  throw new Error("condition not met in time");
}

describe("server: endpoints through the openai client", () => {
  test("health, models", async () => {
    expect((await fetch(`${main.url}/health`)).status).toBe(200);
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(["tiny"]);
  });

  test("chat completion at temperature 0 equals the in-process output; usage counts tokens", async () => {
    const r = await client.chat.completions.create({ model: "tiny", messages: user("Hello there"), max_tokens: 6, temperature: 0 });
    expect(r.object).toBe("chat.completion");
    expect(r.choices[0]!.message.role).toBe("assistant");
    expect(r.choices[0]!.message.content).toBe(await solo(user("Hello there"), { maxTokens: 6, temperature: 0 }));
    expect(r.choices[0]!.finish_reason).toBe("length");
    expect(r.usage!.completion_tokens).toBe(6);
    expect(r.usage!.prompt_tokens).toBe(main.state.model!.promptIds(user("Hello there")).length);
    expect(r.usage!.total_tokens).toBe(r.usage!.prompt_tokens + 6);
  });

  test("streamed chat: role chunk, deltas equal to the whole answer, finish reason, usage chunk", async () => {
    const whole = await client.chat.completions.create({ messages: user("Stream me"), max_tokens: 7, temperature: 0, model: "tiny" });
    const stream = await client.chat.completions.create({
      model: "tiny", messages: user("Stream me"), max_tokens: 7, temperature: 0, stream: true, stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    expect(chunks[0]!.choices[0]!.delta.role).toBe("assistant");
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? "").join("");
    expect(text).toBe(whole.choices[0]!.message.content!);
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toEqual({ prompt_tokens: whole.usage!.prompt_tokens, completion_tokens: 7, total_tokens: whole.usage!.prompt_tokens + 7 });
    expect(chunks.at(-2)!.choices[0]!.finish_reason).toBe("length");
  });

  test("completions, whole and streamed, with usage", async () => {
    const r = await client.completions.create({ model: "tiny", prompt: "Once upon a time", max_tokens: 5, temperature: 0 });
    expect(r.object).toBe("text_completion");
    expect(r.choices[0]!.text).toBe(await solo("Once upon a time", { maxTokens: 5, temperature: 0 }));
    expect(r.usage!.completion_tokens).toBe(5);
    const s = await client.completions.create({ model: "tiny", prompt: ["Once upon a time"], max_tokens: 5, temperature: 0, stream: true, stream_options: { include_usage: true } });
    let text = "", usage;
    for await (const c of s) { text += c.choices[0]?.text ?? ""; if (c.usage) usage = c.usage; }
    expect(text).toBe(r.choices[0]!.text);
    expect(usage).toEqual(r.usage);
  });

  test("stop sequences cut the text and finish with stop", async () => {
    const full = (await client.completions.create({ model: "tiny", prompt: "Stop here", max_tokens: 10, temperature: 0 })).choices[0]!.text;
    expect(full.length).toBeGreaterThan(4);
    const stop = full.slice(2, 4);
    const r = await client.completions.create({ model: "tiny", prompt: "Stop here", max_tokens: 10, temperature: 0, stop: [stop, "never-appears"] });
    expect(r.choices[0]!.text).toBe(full.slice(0, full.indexOf(stop)));
    expect(r.choices[0]!.finish_reason).toBe("stop");
    const c = await client.chat.completions.create({ model: "tiny", messages: user("Stop"), max_tokens: 10, temperature: 0, stop: "\u0000never" });
    expect(c.choices[0]!.finish_reason).toBe("length");
  });

  test("a seed reproduces a sampled answer", async () => {
    const ask = (seed: number) => client.chat.completions.create({ model: "tiny", messages: user("Seeded"), max_tokens: 8, temperature: 1, top_p: 0.95, seed });
    const [a, b, c] = [await ask(42), await ask(42), await ask(43)];
    expect(a.choices[0]!.message.content).toBe(b.choices[0]!.message.content);
    expect(a.choices[0]!.message.content).not.toBe(c.choices[0]!.message.content);
  });

  test("logprobs: chat top_logprobs and completions logprobs", async () => {
    const r = await client.chat.completions.create({ model: "tiny", messages: user("Probs"), max_tokens: 4, temperature: 0, logprobs: true, top_logprobs: 3 });
    const lp = r.choices[0]!.logprobs!.content!;
    expect(lp.length).toBe(4);
    for (const e of lp) {
      expect(e.logprob).toBeLessThanOrEqual(0);
      expect(e.top_logprobs.length).toBe(3);
      expect(e.top_logprobs[0]!.logprob).toBeCloseTo(e.logprob, 10); // greedy: the chosen token is the best
      expect(e.top_logprobs[0]!.token).toBe(e.token);
    }
    expect(lp.map((e) => e.token).join("")).toBe(r.choices[0]!.message.content!);
    const c = await client.completions.create({ model: "tiny", prompt: "Probs", max_tokens: 3, temperature: 0, logprobs: 2 });
    const l = c.choices[0]!.logprobs!;
    expect(l.tokens!.length).toBe(3);
    expect(l.token_logprobs!.length).toBe(3);
    expect(Object.keys(l.top_logprobs![0]!).length).toBeLessThanOrEqual(2);
    expect(l.text_offset![0]).toBe(0);
  });
  test("content-part arrays, developer role, and enable_thinking reach the chat template", async () => {
    const post = async (body: object) => (await (await fetch(`${main.url}/v1/chat/completions`, { method: "POST", body: JSON.stringify({ max_tokens: 1, temperature: 0, ...body }) })).json()) as { usage: { prompt_tokens: number } };
    const plain = await post({ messages: user("Hi there") });
    const parts = await post({ messages: [{ role: "user", content: [{ type: "text", text: "Hi " }, { type: "text", text: "there" }] }] });
    expect(parts.usage.prompt_tokens).toBe(plain.usage.prompt_tokens);
    const noThink = await post({ messages: user("Hi there"), chat_template_kwargs: { enable_thinking: false } });
    expect(noThink.usage.prompt_tokens).toBeGreaterThan(plain.usage.prompt_tokens); // the empty <think></think> block
    const dev = await post({ messages: [{ role: "developer", content: "Be brief." }, ...user("Hi there")] });
    expect(dev.usage.prompt_tokens).toBeGreaterThan(plain.usage.prompt_tokens);
  });
});

describe("server: concurrency and cancellation", () => {
  test("concurrent streams each equal their solo output (greedy and seeded)", async () => {
    const prompts = ["Alpha", "Bravo bravo", "Charlie is here", "Delta", "Echo echo echo", "Foxtrot"];
    const opts = (i: number) => (i % 2 === 0 ? { temperature: 0 } : { temperature: 0.9, seed: 100 + i });
    const want = [];
    for (const [i, p] of prompts.entries()) want.push(await solo(user(p), { maxTokens: 10, ...opts(i) }));
    // 6 requests on 4 slots: two wait in the queue; all interleave their decode steps
    const got = await Promise.all(prompts.map(async (p, i) => {
      const s = await client.chat.completions.create({ model: "tiny", messages: user(p), max_tokens: 10, stream: true, ...opts(i) });
      let text = "";
      for await (const c of s) text += c.choices[0]?.delta.content ?? "";
      return text;
    }));
    expect(got).toEqual(want);
  });

  test("a client aborting mid-stream frees its slot; metrics show it; others continue", async () => {
    const aborts = await metric(main, 'bunsai_generations_total{finish_reason="abort"}');
    const other = client.chat.completions.create({ model: "tiny", messages: user("Keep going"), max_tokens: 12, temperature: 0 });
    const s = await client.chat.completions.create({ model: "tiny", messages: user("Abort me"), max_tokens: 200, temperature: 0, stream: true });
    let n = 0;
    for await (const _ of s) if (++n === 3) break; // leaving the loop aborts the request
    await until(async () => (await metric(main, 'bunsai_generations_total{finish_reason="abort"}')) === aborts + 1);
    expect((await other).choices[0]!.message.content).toBe(await solo(user("Keep going"), { maxTokens: 12, temperature: 0 }));
    await until(async () => (await metric(main, "bunsai_active_requests")) === 0);
    expect(await metric(main, "bunsai_generation_tokens_total")).toBeGreaterThan(0);
  });

  test("a full queue answers 503; a queued stream gets keep-alives; an abort frees the slot", async () => {
    const auth = { "content-type": "application/json", authorization: `Bearer ${KEY}` };
    const post = (body: object, signal?: AbortSignal) => fetch(`${busy.url}/v1/chat/completions`, { method: "POST", headers: auth, body: JSON.stringify(body), signal });
    const long = new AbortController();
    const a = await post({ messages: user("first"), max_tokens: 200, temperature: 0, stream: true }, long.signal); // holds the slot
    expect(a.status).toBe(200);
    const b = await post({ messages: user("second"), max_tokens: 3, temperature: 0, stream: true }); // waits in the queue
    expect(b.status).toBe(200);
    const c = await post({ messages: user("third"), max_tokens: 3 });
    expect(c.status).toBe(503);
    expect(((await c.json()) as ErrorBody).error.code).toBe("server_busy");
    await Bun.sleep(50); // b sits in the queue past a few keep-alive intervals (10 ms)
    long.abort();
    const text = await b.text();
    expect(text).toContain(": keep-alive\n\n");
    expect(text).toContain('"finish_reason":"length"');
    expect(text.trimEnd().endsWith("data: [DONE]")).toBe(true);
    await until(async () => (await metric(busy, "bunsai_active_requests")) === 0 && (await metric(busy, "bunsai_queue_depth")) === 0);
  });
});

describe("server: client errors in OpenAI shape", () => {
  const raw = (path: string, body: string | object, headers: Record<string, string> = {}, s = () => main) =>
    fetch(`${s().url}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: typeof body === "string" ? body : JSON.stringify(body) });
  const chat = (extra: object) => ({ messages: user("hi"), max_tokens: 2, ...extra });
  const cases: [string, () => Promise<Response>, number, string | null][] = [
    ["invalid JSON", () => raw("/v1/chat/completions", "{not json"), 400, null],
    ["body not an object", () => raw("/v1/chat/completions", "[1,2]"), 400, null],
    ["wrong type", () => raw("/v1/chat/completions", chat({ temperature: "hot" })), 400, "temperature"],
    ["out of range", () => raw("/v1/chat/completions", chat({ temperature: 5 })), 400, "temperature"],
    ["max_tokens 0", () => raw("/v1/chat/completions", chat({ max_tokens: 0 })), 400, "max_tokens"],
    ["missing messages", () => raw("/v1/chat/completions", { max_tokens: 2 }), 400, "messages"],
    ["empty messages", () => raw("/v1/chat/completions", { messages: [] }), 400, "messages"],
    ["empty content", () => raw("/v1/chat/completions", { messages: user("") }), 400, "messages[0].content"],
    ["content of wrong type", () => raw("/v1/chat/completions", { messages: [{ role: "user", content: 5 }] }), 400, "messages[0].content"],
    ["image content part", () => raw("/v1/chat/completions", { messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }] }), 400, "messages[0].content[0]"],
    ["bad role", () => raw("/v1/chat/completions", { messages: [{ role: "robot", content: "x" }] }), 400, "messages[0].role"],
    ["missing prompt", () => raw("/v1/completions", { max_tokens: 2 }), 400, "prompt"],
    ["empty prompt", () => raw("/v1/completions", { prompt: "" }), 400, "prompt"],
    ["two prompts", () => raw("/v1/completions", { prompt: ["a", "b"] }), 400, "prompt"],
    ["body over 1 MiB", () => raw("/v1/chat/completions", { messages: user("x".repeat(1_100_000)) }), 413, null],
    ["prompt over the context", () => raw("/v1/completions", { prompt: "word ".repeat(400) }), 400, "prompt"],
    ["prompt + max_tokens over the context", () => raw("/v1/completions", { prompt: "hi", max_tokens: 1000 }), 400, "max_tokens"],
    ["unknown model", () => raw("/v1/chat/completions", chat({ model: "gpt-4o" })), 404, "model"],
    ["n = 2", () => raw("/v1/chat/completions", chat({ n: 2 })), 400, "n"],
    ["tools", () => raw("/v1/chat/completions", chat({ tools: [{ type: "function", function: { name: "f" } }] })), 400, "tools"],
    ["json mode", () => raw("/v1/chat/completions", chat({ response_format: { type: "json_object" } })), 400, "response_format"],
    ["best_of", () => raw("/v1/completions", { prompt: "x", best_of: 3 }), 400, "best_of"],
    ["echo", () => raw("/v1/completions", { prompt: "x", echo: true }), 400, "echo"],
    ["top_logprobs without logprobs", () => raw("/v1/chat/completions", chat({ top_logprobs: 2 })), 400, "top_logprobs"],
    ["no API key", () => raw("/v1/chat/completions", chat({}), {}, () => busy), 401, null],
    ["wrong API key", () => raw("/v1/chat/completions", chat({}), { authorization: "Bearer nope" }, () => busy), 401, null],
    ["unknown route", () => fetch(`${main.url}/v1/nothing`), 404, null],
    ["wrong method", () => fetch(`${main.url}/v1/chat/completions`), 404, null],
  ];
  for (const [name, send, status, param] of cases) {
    test(`${name} -> ${status}`, async () => {
      const r = await send();
      expect(r.status).toBe(status);
      const body = (await r.json()) as ErrorBody;
      expect(Object.keys(body)).toEqual(["error"]);
      expect(typeof body.error.message).toBe("string");
      expect(body.error.message).not.toContain("    at "); // no stack trace
      expect(typeof body.error.type).toBe("string");
      expect(body.error.param).toBe(param);
      expect("code" in body.error).toBe(true);
    });
  }

  test("the context error names the token counts", async () => {
    const body = (await (await raw("/v1/completions", { prompt: "word ".repeat(400) })).json()) as ErrorBody;
    expect(body.error.message).toMatch(/context holds 256 tokens, but the prompt has \d{3} tokens/);
    expect(body.error.code).toBe("context_length_exceeded");
  });

  test("the openai client surfaces errors as typed exceptions; the server stays healthy", async () => {
    const failure = (p: Promise<unknown>) => p.then(() => null, (e) => e);
    expect(await failure(client.chat.completions.create({ model: "tiny", messages: user("x"), n: 2 }))).toBeInstanceOf(OpenAI.BadRequestError);
    expect(await failure(client.chat.completions.create({ model: "other", messages: user("x") }))).toBeInstanceOf(OpenAI.NotFoundError);
    const keyed = new OpenAI({ baseURL: `${busy.url}/v1`, apiKey: KEY, maxRetries: 0 });
    expect((await keyed.chat.completions.create({ model: "tiny", messages: user("ok"), max_tokens: 2 })).choices[0]!.finish_reason).toBe("length");
    expect(await metric(main, 'bunsai_requests_total{endpoint="/v1/chat/completions",status="400"}')).toBeGreaterThan(0);
    expect(await metric(main, 'bunsai_requests_total{endpoint="/v1/chat/completions",status="500"}')).toBe(0);
  });

  test("while the model is not loaded: /health and /v1 answer 503", async () => {
    const s = startServer({ modelPath: join(dir, "missing"), backend: "cpu", port: 0 });
    try {
      await s.ready.catch(() => {});
      expect((await fetch(`${s.url}/health`)).status).toBe(503);
      const r = await fetch(`${s.url}/v1/completions`, { method: "POST", body: JSON.stringify({ prompt: "x" }) });
      expect(r.status).toBe(503);
      expect(((await r.json()) as ErrorBody).error.code).toBe("model_loading");
    } finally {
      await s.stop();
    }
  });
});

describe("server: reasoning split", () => {
  const run = (deltas: string[]) => {
    const s = new ReasoningSplitter();
    let reasoning = "", content = "";
    for (const d of [...deltas.map((x) => s.push(x)), s.flush()]) { reasoning += d.reasoning; content += d.content; }
    return { reasoning, content };
  };
  const text = "<think>\nLet me think.\n</think>\n\nThe answer is 4.";
  test("whole, and split at every character", () => {
    expect(run([text])).toEqual({ reasoning: "Let me think.", content: "The answer is 4." });
    expect(run([...text])).toEqual({ reasoning: "Let me think.", content: "The answer is 4." });
  });
  test("no think block, empty think block, unfinished think block", () => {
    expect(run(["Just ", "an answer."])).toEqual({ reasoning: "", content: "Just an answer." });
    expect(run(["<think>\n\n</think>\n\n", "Hi"])).toEqual({ reasoning: "", content: "Hi" });
    expect(run(["<think>still going"])).toEqual({ reasoning: "still going", content: "" });
    expect(run(["<thin", "g>"])).toEqual({ reasoning: "", content: "<thing>" });
  });
});
