// POST /v1/chat/completions: chat template in, assistant message out (reasoning split off into
// `reasoning_content`), whole or as `chat.completion.chunk` events.

import { ApiError } from "./errors.ts";
import { checkModelId, clientGone, drain, finishReason, randomId, readJson, requireModel, usage } from "./common.ts";
import { startGeneration } from "./generation.ts";
import { chatLogprob, type ChatLogprob } from "./logprobs.ts";
import { ReasoningSplitter, type Split } from "./reasoning.ts";
import { chatPromptIds, prepare } from "./request.ts";
import { chatRequest, checkSupported, parse } from "./schema.ts";
import { sseResponse } from "./sse.ts";
import type { ServerState } from "./state.ts";

export async function chatCompletions(state: ServerState, req: Request): Promise<Response> {
  const model = requireModel(state);
  const r = parse(chatRequest, await readJson(req, state.opts.bodyLimit));
  checkSupported(r);
  checkModelId(state, r.model);
  if (r.top_logprobs !== undefined && !r.logprobs) throw new ApiError(400, "top_logprobs: logprobs must be true when top_logprobs is set", "top_logprobs", "invalid_value");
  const p = prepare(state, r, chatPromptIds(model, r), r.logprobs ? (r.top_logprobs ?? 0) : undefined);
  const abort = clientGone(req);
  const steps = startGeneration(state, model, p.ids, { ...p.opts, signal: abort.signal });
  const base = { id: randomId("chatcmpl"), created: Math.floor(Date.now() / 1000), model: state.opts.modelId, system_fingerprint: "bunsai" };
  const splitter = new ReasoningSplitter();
  const wantLogprobs = r.logprobs === true;

  if (r.stream) {
    const chunk = (delta: Record<string, string>, logprobs: ChatLogprob[] | null, finish: string | null) => ({
      ...base, object: "chat.completion.chunk",
      choices: [{ index: 0, delta, logprobs: logprobs && { content: logprobs }, finish_reason: finish }],
    });
    const delta = (s: Split) => ({ ...(s.reasoning && { reasoning_content: s.reasoning }), ...(s.content && { content: s.content }) });
    return sseResponse(async (send) => {
      send(chunk({ role: "assistant", content: "" }, null, null));
      const stats = await drain(steps, (step) => {
        const d = delta(splitter.push(step.text));
        const lp = wantLogprobs ? chatLogprob(model.tokenizer, step) : null;
        if (Object.keys(d).length > 0 || lp) send(chunk(d, lp ? [lp] : wantLogprobs ? [] : null, null));
      });
      if (stats.finishReason === "abort") return;
      const rest = delta(splitter.flush());
      if (Object.keys(rest).length > 0) send(chunk(rest, null, null));
      send(chunk({}, null, finishReason(stats)));
      if (r.stream_options?.include_usage) send({ ...base, object: "chat.completion.chunk", choices: [], usage: usage(stats) });
    }, abort, state.opts.keepAliveMs);
  }

  let reasoning = "", content = "";
  const lps: ChatLogprob[] = [];
  const take = (s: Split) => { reasoning += s.reasoning; content += s.content; };
  const stats = await drain(steps, (step) => {
    take(splitter.push(step.text));
    const lp = wantLogprobs ? chatLogprob(model.tokenizer, step) : null;
    if (lp) lps.push(lp);
  });
  take(splitter.flush());
  return Response.json({
    ...base, object: "chat.completion",
    choices: [{
      index: 0,
      message: { role: "assistant", content, ...(reasoning && { reasoning_content: reasoning }) },
      logprobs: wantLogprobs ? { content: lps } : null,
      finish_reason: finishReason(stats),
    }],
    usage: usage(stats),
  });
}
