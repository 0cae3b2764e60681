/**
 * Near-cache invalidation over Redis pub/sub. The Redis tier's casSet script publishes in the
 * same step as the write, so by the time a writer is acknowledged the message is already on
 * its way to every subscriber. Pub/sub does not queue for absent subscribers, so a dropped
 * connection makes the bus not live (near cache bypassed) and a reconnect clears the near cache.
 */
import type { RedisClientType } from 'redis';
import { eventLoopSettle, parseInvalidation, type InvalidationBus, type InvalidationHandlers } from '../../core/invalidation.js';

export class RedisInvalidationBus implements InvalidationBus {
  readonly kind = 'redis';
  private subscribed = false;
  private subscribing: Promise<void> | null = null;
  private closed = false;
  /** Messages are read by this process's event loop: two polls apply what has arrived. */
  readonly settle = eventLoopSettle();

  constructor(
    private readonly subscriber: RedisClientType,
    private readonly channel: string,
  ) {}

  get live(): boolean {
    return this.subscribed && !this.closed && this.subscriber.isReady;
  }

  async start(handlers: InvalidationHandlers): Promise<void> {
    const listener = (text: string) => {
      const m = parseInvalidation(text);
      if (m) handlers.onInvalidate(m.id, m.version);
    };
    const subscribe = () => {
      this.subscribing ??= this.subscriber
        .subscribe(this.channel, listener)
        .then(() => {
          this.subscribed = true;
          handlers.onReset();
        })
        .catch(() => undefined)
        .finally(() => {
          this.subscribing = null;
        });
      return this.subscribing;
    };
    this.subscriber.on('error', () => handlers.onReset());
    this.subscriber.on('end', () => handlers.onReset());
    this.subscriber.on('ready', () => {
      // Once subscribed, node-redis resubscribes by itself before it reports 'ready'; what
      // was published in between is gone, so start again from an empty near cache.
      if (this.subscribed) handlers.onReset();
      else void subscribe();
    });
    if (this.subscriber.isReady) await subscribe();
  }

  publish(): Promise<void> {
    return Promise.resolve();
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
