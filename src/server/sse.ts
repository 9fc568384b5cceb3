// Server-sent events as OpenAI clients read them: `data: <json>\n\n` per chunk, `data: [DONE]` at
// the end, and `: keep-alive` comments while nothing else is sent (queueing, a long prefill) so
// proxies and clients do not give up. A client that goes away aborts `abort`.

import { errorBody, toApiError } from "./errors.ts";

export type Send = (chunk: unknown) => void;

export function sseResponse(produce: (send: Send) => Promise<void>, abort: AbortController, keepAliveMs: number): Response {
  const enc = new TextEncoder();
  let closed = false, last = Date.now(), timer: ReturnType<typeof setInterval> | undefined;
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      const write = (s: string) => {
        if (closed) return;
        try { controller.enqueue(enc.encode(s)); last = Date.now(); } catch { closed = true; abort.abort(); }
      };
      timer = setInterval(() => { if (Date.now() - last >= keepAliveMs) write(": keep-alive\n\n"); }, Math.max(10, keepAliveMs / 2));
      const send: Send = (chunk) => write(`data: ${JSON.stringify(chunk)}\n\n`);
      produce(send)
        .catch((e) => send(errorBody(toApiError(e)))) // headers are out: the error travels as an event
        .finally(() => {
          clearInterval(timer);
          write("data: [DONE]\n\n");
          if (!closed) { closed = true; try { controller.close(); } catch { /* already gone */ } }
        });
    },
    cancel() {
      closed = true;
      clearInterval(timer);
      abort.abort();
    },
  });
  return new Response(stream, {
    headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", connection: "keep-alive", "x-accel-buffering": "no" },
  });
}
