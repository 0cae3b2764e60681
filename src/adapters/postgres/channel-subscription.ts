import type { SqlDatabase } from './database.js';

/**
 * One LISTEN on a channel for the lifetime of an adapter: `start` subscribes once (concurrent
 * and repeated calls share it), `stop` unsubscribes.
 */
export class ChannelSubscription {
  private unlisten: (() => Promise<void>) | null = null;
  private listening: Promise<void> | null = null;

  constructor(
    private readonly db: SqlDatabase,
    private readonly channel: string,
    private readonly onPayload: (payload: string) => void,
  ) {}

  start(): Promise<void> {
    this.listening ??= this.db.listen(this.channel, this.onPayload).then((unlisten) => {
      this.unlisten = unlisten;
    });
    return this.listening;
  }

  async stop(): Promise<void> {
    await this.unlisten?.();
  }
}
