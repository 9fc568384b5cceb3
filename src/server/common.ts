// Small pieces every generation endpoint needs: the loaded model, the model id check, the request
// body (size-limited JSON), the client-gone signal, ids and usage.

import type { GenerationStats } from "../generate.ts";
import type { Model } from "../index.ts";
import { ApiError } from "./errors.ts";
import type { ServerState } from "./state.ts";

export function requireModel(state: ServerState): Model {
  if (state.model) return state.model;
  throw new ApiError(503, state.loadError ? `the model failed to load: ${state.loadError}` : "the model is still loading; retry shortly", null, "model_loading");
}

/** 404 for a model id this server does not serve (absent = the one it serves). */
export function checkModelId(state: ServerState, id: string | undefined): void {
  if (id === undefined || id === state.opts.modelId) return;
  throw new ApiError(404, `the model "${id}" does not exist; this server serves "${state.opts.modelId}"`, "model", "model_not_found");
}

/** The body as JSON, refusing more than `limit` bytes without reading them all. */
export async function readJson(req: Request, limit: number): Promise<unknown> {
  const tooBig = () => new ApiError(413, `the request body is larger than the limit of ${limit} bytes`, null, "request_too_large");
  const declared = Number(req.headers.get("content-length") ?? NaN);
  if (declared > limit) throw tooBig();
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (req.body) {
    for await (const c of req.body) {
      size += c.byteLength;
      if (size > limit) throw tooBig();
      chunks.push(c);
    }
  }
  const text = new TextDecoder().decode(Buffer.concat(chunks));
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ApiError(400, `the request body is not valid JSON (${(e as Error).message})`, null, "invalid_json");
  }
}

/** An abort controller that fires when the client disconnects. */
export function clientGone(req: Request): AbortController {
  const ac = new AbortController();
  if (req.signal.aborted) ac.abort();
  else req.signal.addEventListener("abort", () => ac.abort(), { once: true });
  return ac;
}

export function randomId(prefix: string): string {
  return `${prefix}-${crypto.randomUUID().replaceAll("-", "")}`;
}

export function finishReason(s: GenerationStats): "stop" | "length" {
  return s.finishReason === "length" ? "length" : "stop";
}

export function usage(s: GenerationStats): { prompt_tokens: number; completion_tokens: number; total_tokens: number } {
  return { prompt_tokens: s.promptTokens, completion_tokens: s.generatedTokens, total_tokens: s.promptTokens + s.generatedTokens };
}

/** Drains a generator to its return value (after an abort it ends at the next step). */
export async function drain<T, R>(g: AsyncGenerator<T, R>, each: (v: T) => void): Promise<R> {
  for (;;) {
    const r = await g.next();
    if (r.done) return r.value;
    each(r.value);
  }
}
