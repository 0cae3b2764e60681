/** Signal handlers by owner instance id, shared by the signal buses that deliver in process. */
import type { RunSignal } from './runs.js';

export class SignalHandlers {
  private readonly byOwner = new Map<string, Set<(signal: RunSignal) => void>>();

  /** Adds a handler; resolves to the function that removes it. */
  add(owner: string, handler: (signal: RunSignal) => void): () => Promise<void> {
    let set = this.byOwner.get(owner);
    if (!set) {
      set = new Set();
      this.byOwner.set(owner, set);
    }
    set.add(handler);
    return async () => {
      set.delete(handler);
    };
  }

  of(owner: string): Iterable<(signal: RunSignal) => void> {
    return this.byOwner.get(owner) ?? [];
  }

  clear(): void {
    this.byOwner.clear();
  }
}
