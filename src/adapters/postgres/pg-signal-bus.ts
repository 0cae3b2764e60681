/**
 * Signals over PostgreSQL LISTEN/NOTIFY, for distributed mode without Redis. One channel
 * carries every instance's signals; each instance keeps those addressed to it. NOTIFY is
 * delivered at commit and not stored, so the durable path (the heartbeat) covers any loss.
 */
import type { RunSignal, SignalBus } from '../../core/runs.js';
import { SignalHandlers } from '../../core/signal-handlers.js';
import { ChannelSubscription } from './channel-subscription.js';
import type { SqlDatabase } from './database.js';
import { run, statements } from './sql.js';

const SQL = statements('notify');

const CHANNEL = 'agent_sessions_signals';

export class PgSignalBus implements SignalBus {
  readonly name = 'postgres';
  private readonly handlers = new SignalHandlers();
  private readonly subscription: ChannelSubscription;

  constructor(private readonly db: SqlDatabase) {
    this.subscription = new ChannelSubscription(db, CHANNEL, (payload) => this.dispatch(payload));
  }

  ready(): Promise<void> {
    return this.subscription.start();
  }

  async close(): Promise<void> {
    await this.subscription.stop();
    this.handlers.clear();
  }

  private dispatch(payload: string): void {
    let message: { to?: unknown; signal?: RunSignal };
    try {
      message = JSON.parse(payload) as { to?: unknown; signal?: RunSignal };
    } catch {
      return;
    }
    if (typeof message.to !== 'string' || !message.signal) return;
    for (const handler of this.handlers.of(message.to)) handler(message.signal);
  }

  async publish(owner: string, signal: RunSignal): Promise<void> {
    await run(this.db, SQL.notify, { channel: CHANNEL, payload: JSON.stringify({ to: owner, signal }) });
  }

  async subscribe(owner: string, handler: (signal: RunSignal) => void): Promise<() => Promise<void>> {
    await this.ready();
    return this.handlers.add(owner, handler);
  }

}
