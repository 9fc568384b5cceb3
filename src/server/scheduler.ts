// Admission for generations: at most `maxActive` run at once (each with its own KV session); up to
// `maxQueued` more wait in FIFO order; beyond that a request is refused at once (503).
// Fair interleaving of the running ones comes from the model's FIFO forward lock.

import { ApiError } from "./errors.ts";

interface Waiter {
  grant: (release: () => void) => void;
  fail: (e: Error) => void;
}

export class Scheduler {
  private active = 0;
  private readonly queue: Waiter[] = [];

  constructor(readonly maxActive: number, readonly maxQueued: number) {}

  get activeCount(): number { return this.active; }
  get queueDepth(): number { return this.queue.length; }

  /**
   * Throws a 503 now when neither a slot nor a queue place is free (so it can be answered before
   * a stream starts); otherwise resolves with a release function once a slot is ours.
   */
  acquire(signal?: AbortSignal): Promise<() => void> {
    if (this.active < this.maxActive) {
      this.active++;
      return Promise.resolve(this.releaser());
    }
    if (this.queue.length >= this.maxQueued) {
      throw new ApiError(503, `the server is busy: ${this.active} requests running and ${this.queue.length} queued; retry later`, null, "server_busy");
    }
    return new Promise((resolve, reject) => {
      const w: Waiter = { grant: resolve, fail: reject };
      this.queue.push(w);
      signal?.addEventListener("abort", () => {
        const i = this.queue.indexOf(w);
        if (i >= 0) { this.queue.splice(i, 1); reject(new DOMException("the client went away while queued", "AbortError")); }
      }, { once: true });
    });
  }

  private releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const next = this.queue.shift();
      if (next) next.grant(this.releaser()); // the slot passes straight on
      else this.active--;
    };
  }
}
