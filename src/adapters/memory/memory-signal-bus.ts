/**
 * Signals within one process (embedded mode): delivered on the next microtask to the
 * handlers subscribed under the owner's instance id.
 */
import type { RunSignal, SignalBus } from '../../core/runs.js';
import { SignalHandlers } from '../../core/signal-handlers.js';

export class MemorySignalBus implements SignalBus {
  readonly name = 'memory';
  private readonly handlers = new SignalHandlers();

  async ready(): Promise<void> {}

  async close(): Promise<void> {
    this.handlers.clear();
  }

  async publish(owner: string, signal: RunSignal): Promise<void> {
    for (const handler of this.handlers.of(owner)) queueMicrotask(() => handler(signal));
  }

  async subscribe(owner: string, handler: (signal: RunSignal) => void): Promise<() => Promise<void>> {
    return this.handlers.add(owner, handler);
  }

}
