// What every handler shares: the model (null while it loads), its admission scheduler and metrics.

import type { Model } from "../index.ts";
import type { Session } from "../model/qwen3.ts";
import { Metrics } from "./metrics.ts";
import { Scheduler } from "./scheduler.ts";

export interface ServerOptions {
  modelId: string; // the id clients name in `model`
  maxConcurrency: number; // generations running at once
  maxQueue: number; // requests waiting beyond those
  ctx?: number; // tokens per sequence (prompt + completion); default min(model max, 4096)
  apiKey?: string; // when set, /v1/* requires `Authorization: Bearer <key>`
  bodyLimit: number; // bytes
  keepAliveMs: number; // SSE comment interval while a stream has nothing to say
}

export class ServerState {
  model: Model | null = null;
  loadError: string | null = null;
  readonly scheduler: Scheduler;
  readonly metrics: Metrics;
  readonly started = Math.floor(Date.now() / 1000);

  constructor(readonly opts: ServerOptions) {
    this.scheduler = new Scheduler(opts.maxConcurrency, opts.maxQueue);
    this.metrics = new Metrics(() => ({ active: this.scheduler.activeCount, queued: this.scheduler.queueDepth, loaded: this.model !== null }));
  }

  /**
   * KV slots: at most maxConcurrency sessions of `ctx` positions, reused from request to request, so
   * their memory is allocated once and a GPU backend's captured decode step is replayed, not re-captured.
   */
  private readonly freeSessions: Session[] = [];
  takeSession(model: Model): Session {
    const s = this.freeSessions.pop() ?? model.model.newSession(this.ctx);
    s.reset();
    return s;
  }
  returnSession(s: Session): void { this.freeSessions.push(s); }

  /** Context size of one sequence. */
  get ctx(): number {
    const max = this.model?.config.maxPositionEmbeddings ?? 4096;
    return Math.min(max, this.opts.ctx ?? 4096);
  }
}
