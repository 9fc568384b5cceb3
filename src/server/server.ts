// Starts the HTTP server at once (so /health answers 503 while loading), then loads the model.
//
//   const s = await startServer({ modelPath: "models/Bonsai-1.7B", port: 0 });
//   await s.ready; fetch(`${s.url}/v1/models`); ... ; await s.stop();

import { basename, resolve } from "node:path";
import { loadModel, type BackendChoice, type Model } from "../index.ts";
import { createApp } from "./app.ts";
import { ServerState, type ServerOptions } from "./state.ts";

export interface StartOptions extends Partial<ServerOptions> {
  modelPath: string;
  backend?: BackendChoice;
  host?: string; // default 127.0.0.1: loopback only unless asked
  port?: number; // 0 = a free port
}

export interface RunningServer {
  url: string; // e.g. http://127.0.0.1:8080
  state: ServerState;
  ready: Promise<Model>; // rejects when the model fails to load
  stop(): Promise<void>;
}

export const DEFAULTS = { port: 8080, host: "127.0.0.1", maxConcurrency: 4, maxQueue: 64, bodyLimit: 1 << 20, keepAliveMs: 10_000 };

export function startServer(o: StartOptions): RunningServer {
  const state = new ServerState({
    modelId: o.modelId ?? basename(resolve(o.modelPath)),
    maxConcurrency: o.maxConcurrency ?? DEFAULTS.maxConcurrency,
    maxQueue: o.maxQueue ?? DEFAULTS.maxQueue,
    ctx: o.ctx,
    apiKey: o.apiKey,
    bodyLimit: o.bodyLimit ?? DEFAULTS.bodyLimit,
    keepAliveMs: o.keepAliveMs ?? DEFAULTS.keepAliveMs,
  });
  const app = createApp(state);
  const server = Bun.serve({
    hostname: o.host ?? DEFAULTS.host,
    port: o.port ?? DEFAULTS.port,
    idleTimeout: 60, // idle keep-alive connections; generations lift it per request below
    maxRequestBodySize: Math.max(state.opts.bodyLimit * 4, 64 << 20), // Bun refuses beyond this in its own shape; below it our 413 answers
    fetch(req, srv) {
      // A generation may run for minutes without a byte (a non-streamed answer): never time it out.
      if (req.method === "POST") srv.timeout(req, 0);
      return app.fetch(req);
    },
  });
  // loaded on a later tick, so the listener is up (and /health says 503) before the work starts
  const ready = Bun.sleep(0).then(() => loadModel(o.modelPath, { backend: o.backend ?? "auto" })).then(
    (m) => { state.model = m; return m; },
    (e) => { state.loadError = (e as Error).message; throw e; },
  );
  ready.catch(() => {}); // the caller decides what a failed load means
  return {
    url: `http://${server.hostname!.includes(":") ? `[${server.hostname}]` : server.hostname}:${server.port}`,
    state,
    ready,
    async stop() {
      await server.stop(true);
      await ready.then((m) => m.dispose(), () => {});
    },
  };
}
