/**
 * Signals over Redis pub/sub: one channel per instance (`<prefix>signals:<instance id>`), on
 * the shared subscriber connection. Pub/sub is fire-and-forget and publishes go through the
 * circuit breaker, so a signal lost or refused while Redis is down is delivered by the
 * owner's next heartbeat instead. Start never waits for Redis: the subscription is made once
 * the subscriber is ready, and node-redis renews it after every reconnect.
 */
import type { RunSignal, SignalBus } from '../../core/runs.js';
import type { GuardedRedis } from './guarded-redis.js';

export class RedisSignalBus implements SignalBus {
  readonly name = 'redis';
  private readonly listeners = new Map<string, (message: string) => void>();
  private onReady: (() => void) | null = null;

  constructor(
    private readonly redis: GuardedRedis,
    private readonly onError: (err: unknown) => void = () => undefined,
  ) {}

  private channel(owner: string): string {
    return this.redis.keys.global(`signals:${owner}`);
  }

  async ready(): Promise<void> {
    if (this.onReady) return;
    this.onReady = () => {
      for (const [owner, listener] of this.listeners) void this.listen(owner, listener);
    };
    // A first connect (or one that failed at start) subscribes here; later reconnects are
    // resubscribed by node-redis itself, and subscribing twice with one listener is a no-op.
    this.redis.subscriber.on('ready', this.onReady);
  }

  async close(): Promise<void> {
    if (this.onReady) this.redis.subscriber.off('ready', this.onReady);
    this.onReady = null;
    const subscriber = this.redis.subscriber;
    for (const [owner, listener] of this.listeners) {
      if (subscriber.isReady) await subscriber.unsubscribe(this.channel(owner), listener).catch(() => undefined);
    }
    this.listeners.clear();
  }

  async publish(owner: string, signal: RunSignal): Promise<void> {
    await this.redis.run((r) => r.publish(this.channel(owner), JSON.stringify(signal)), 'write');
  }

  private async listen(owner: string, listener: (message: string) => void): Promise<void> {
    if (!this.redis.subscriber.isReady) return;
    await this.redis.subscriber.subscribe(this.channel(owner), listener).catch(this.onError);
  }

  async subscribe(owner: string, handler: (signal: RunSignal) => void): Promise<() => Promise<void>> {
    const listener = (message: string) => {
      let signal: RunSignal;
      try {
        signal = JSON.parse(message) as RunSignal;
      } catch {
        return;
      }
      handler(signal);
    };
    this.listeners.set(owner, listener);
    // Until the subscription is in place, signals reach this instance by heartbeat.
    await this.listen(owner, listener);
    return async () => {
      this.listeners.delete(owner);
      if (this.redis.subscriber.isReady) await this.redis.subscriber.unsubscribe(this.channel(owner), listener).catch(() => undefined);
    };
  }
}
