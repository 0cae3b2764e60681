/**
 * The Redis connection as the other adapters use it: one command connection and one
 * subscriber connection (both node-redis v5), behind one circuit breaker. When Redis is
 * unreachable every guarded call fails at once with BreakerOpenError, so callers fall back
 * to PostgreSQL without paying a connect or command timeout each time. Every (re)connect
 * opens the breaker; recovery then runs the registered checks of the server (a restarted or
 * failed-over Redis may hold older data) while every call still fails fast, then the
 * recovery tasks (cache repair) while writes go through, before reads go to Redis again.
 * A standalone server that stops answering (a call without a reply for the command timeout)
 * is treated like a broken connection: the connection is replaced, failing every call in
 * flight on it, and the breaker opens (`replaceStalled`).
 */
import type { RedisClientType, RedisClusterType } from 'redis';
import type { SharedCacheHealth } from '../../core/cache-tiers.js';
import type { DependencyHealth, HealthCheck, Lifecycle } from '../../core/ports.js';
import { NO_TRACING, type Tracing } from '../../core/tracing.js';
import { CircuitBreaker, type BreakerState, type CallKind } from './circuit-breaker.js';
import { withTimeout } from './lua-script.js';
import {
  commandsOf,
  createRedisConnection,
  createRedisSubscriber,
  isClusterUrl,
  RedisKeys,
  type RedisConnection,
  type RedisConnectionOptions,
} from './connection.js';
import { redisServer, tracedRedis } from './traced-redis.js';

export interface GuardedRedisOptions extends RedisConnectionOptions {
  keyPrefix: string;
  /** Called when the breaker changes state (for logs and metrics). */
  onStateChange?: (state: BreakerState, cause?: unknown) => void;
  /** Consecutive failed calls that open the breaker (default 3). */
  failureThreshold?: number;
  /** First wait before a recovery attempt (default 500 ms). */
  cooldownMs?: number;
  /** Commands sent on the command connection are spans (the subscriber's are not). */
  tracing?: Tracing;
}

/** The oldest Redis with every command the adapters use (GETEX: 6.2). */
export const MIN_REDIS_VERSION = '6.2';

/** Whether a Redis version string ("7.0.15") is at least MIN_REDIS_VERSION. */
export function redisVersionSupported(version: string): boolean {
  const [major = 0, minor = 0] = version.split('.').map((p) => Number.parseInt(p, 10) || 0);
  const [minMajor = 0, minMinor = 0] = MIN_REDIS_VERSION.split('.').map(Number);
  return major > minMajor || (major === minMajor && minor >= minMinor);
}

export class GuardedRedis implements Lifecycle, SharedCacheHealth {
  readonly connection: RedisConnection;
  readonly commands: RedisClientType;
  readonly subscriber: RedisClientType;
  readonly keys: RedisKeys;
  readonly breaker: CircuitBreaker;
  readonly cluster: boolean;
  private readonly recoveryTasks: Array<() => Promise<void>> = [];
  private readonly serverChecks: Array<() => Promise<void>> = [];
  private connectedOnce = false;
  private starting: Promise<void> | null = null;
  private closing: Promise<void> | null = null;
  private lastError: string | null = null;
  private readonly commandTimeoutMs: number;
  /** Reply deadlines per call: a Cluster's (one connection per node). */
  private readonly deadlines: Deadlines;
  /** Reply deadlines of the one command connection: a standalone server's. */
  private readonly watch: StallWatch | null;
  /** While a stalled connection's calls are failed: the error they fail with. */
  private stallCause: RedisTimeoutError | null = null;

  constructor(private readonly options: GuardedRedisOptions) {
    this.commandTimeoutMs = options.commandTimeoutMs ?? 1_000;
    this.deadlines = new Deadlines(this.commandTimeoutMs);
    const tracing = options.tracing ?? NO_TRACING;
    const connection = createRedisConnection(options);
    this.connection = tracing.enabled ? tracedRedis(connection, tracing, redisServer(options.url, isClusterUrl(options))) : connection;
    this.commands = commandsOf(this.connection);
    this.subscriber = createRedisSubscriber(options);
    this.keys = new RedisKeys(options.keyPrefix);
    this.cluster = isClusterUrl(options);
    this.watch = this.cluster ? null : new StallWatch(this.commandTimeoutMs, () => this.replaceStalled(connection as RedisClientType));
    this.breaker = new CircuitBreaker({
      name: 'redis',
      // Closed by ready(), after the version check and the server checks (repairs others left).
      startOpen: true,
      failureThreshold: options.failureThreshold ?? 3,
      cooldownMs: options.cooldownMs ?? 500,
      probe: async () => {
        await this.probe();
        for (const check of this.serverChecks) await check();
      },
      recover: async () => {
        for (const task of this.recoveryTasks) await task();
      },
      onStateChange: (state, cause) => {
        if (cause) this.lastError = (cause as Error).message ?? String(cause);
        options.onStateChange?.(state, cause);
      },
    });
    // A broken connection opens the breaker at once: no call should wait to find out.
    const down = (err: unknown) => {
      this.lastError = (err as Error)?.message ?? String(err);
      this.breaker.trip(err);
    };
    const events = connection as unknown as NodeJS.EventEmitter;
    if (this.cluster) {
      events.on('node-error', down);
      events.on('error', down);
    } else {
      events.on('error', down);
      events.on('ready', () => {
        // The first connection is ready()'s to check.
        if (!this.connectedOnce) return;
        // A new connection may lead to a different server (restarted, failed over), even if
        // no error was reported for the old one: nothing goes to it before the checks ran.
        if (this.connectedOnce && this.breaker.isClosed) this.breaker.trip(new Error('redis reconnected'));
        void this.breaker.recover();
      });
    }
    this.subscriber.on('error', () => undefined);
  }

  /** The key prefix: what `clearKeyspace` deletes, and what the server check is recorded for. */
  get keyspace(): string {
    return this.keys.prefix;
  }

  /** Work to finish after an outage before Redis serves reads again (e.g. cache repair). */
  onRecovery(task: () => Promise<void>): void {
    this.recoveryTasks.push(task);
  }

  /**
   * Work that must finish before any call goes to a server this instance (re)connected to,
   * e.g. clearing a Redis that came back with older data. It runs while every call still
   * fails fast; a failure keeps the breaker open.
   */
  onServerCheck(check: () => Promise<void>): void {
    this.serverChecks.push(check);
  }

  /**
   * Which server(s) the commands go to: the run_id of the standalone server, or of every
   * Cluster master. A restart or a failover changes it.
   */
  async serverIdentity(): Promise<string> {
    const ids: string[] = [];
    for (const node of await this.masters()) {
      const info = String(await this.guard(node.info('server')));
      const runId = /run_id:(\w+)/.exec(info)?.[1];
      if (!runId) throw new Error('redis INFO server has no run_id');
      ids.push(runId);
    }
    return ids.sort().join(',');
  }

  /**
   * Deletes every key under the prefix on every master (SCAN + UNLINK, one key per UNLINK
   * so that a Cluster node never sees keys of two slots in one command). Around the breaker:
   * it is part of the breaker's own recovery. Resolves to the number of keys deleted.
   */
  async clearKeyspace(): Promise<number> {
    const match = `${this.keys.prefix.replace(/[*?[\]\\]/g, (c) => `\\${c}`)}*`;
    let deleted = 0;
    for (const node of await this.masters()) {
      let cursor = '0';
      do {
        const reply = await this.guard(node.scan(cursor, { MATCH: match, COUNT: 1_000 }));
        cursor = String(reply.cursor);
        const counts = await this.guard(Promise.all(reply.keys.map((k) => node.unlink(k))));
        deleted += counts.reduce((n, c) => n + Number(c), 0);
      } while (cursor !== '0');
    }
    return deleted;
  }

  private async masters(): Promise<RedisClientType[]> {
    if (!this.cluster) return [this.commands];
    const cluster = this.connection as RedisClusterType;
    return Promise.all(cluster.masters.map((m) => cluster.nodeClient(m) as unknown as Promise<RedisClientType>));
  }

  /**
   * Runs commands through the breaker, failing after the command timeout. node-redis's own
   * `timeout` command option only covers the wait to be written, not the wait for a reply,
   * so a server that hangs (rather than refusing connections) would hold callers forever.
   * `then` and `failed`, when given, see the reply or the error inside the one callback the
   * call has anyway (a cache read's decode and error count).
   */
  run<T, U = T>(
    fn: (redis: RedisClientType) => Promise<T>,
    kind: CallKind = 'read',
    then?: (reply: T) => U | Promise<U>,
    failed?: (err: unknown) => void,
  ): Promise<U> {
    if (!this.breaker.isClosed) return this.mapped(this.breaker.run(() => this.guard(fn(this.commands)), kind), then, failed);
    // Closed (every cache read): the breaker hears the outcome from the call's own callbacks.
    let pending: Promise<T>;
    try {
      pending = fn(this.commands);
    } catch (err) {
      this.breaker.failure(err);
      failed?.(err);
      return Promise.reject(err as Error);
    }
    if (this.watch === null) return this.mapped(this.deadlines.wrap(pending, this.breaker), then, failed);
    return this.watched(this.watch, pending, this.breaker, then, failed);
  }

  private mapped<T, U>(called: Promise<T>, then?: (reply: T) => U | Promise<U>, failed?: (err: unknown) => void): Promise<U> {
    if (!then && !failed) return called as unknown as Promise<U>;
    return called.then(then ?? ((reply) => reply as unknown as U), (err: unknown) => {
      failed?.(err);
      throw err;
    });
  }

  /** Runs commands with the timeout but around the breaker (for its own recovery work). */
  runUnguarded<T>(fn: (redis: RedisClientType) => Promise<T>): Promise<T> {
    return this.guard(fn(this.commands));
  }

  /** A call under its reply deadline, outside the breaker (on a Cluster: on any node). */
  private guard<T>(pending: Promise<T>): Promise<T> {
    return this.watch === null ? this.deadlines.wrap(pending) : this.watched(this.watch, pending);
  }

  /**
   * `pending` under the command connection's deadline, with one callback for the reply and
   * one for the error: `outcome` (the breaker) hears how it ended, `then` maps the reply.
   */
  private watched<T, U = T>(
    watch: StallWatch,
    pending: Promise<T>,
    outcome?: CallOutcome,
    then?: (reply: T) => U | Promise<U>,
    failed?: (err: unknown) => void,
  ): Promise<U> {
    watch.begin();
    return pending.then(
      (reply) => {
        watch.end();
        outcome?.success();
        return then ? then(reply) : (reply as unknown as U);
      },
      (err: unknown) => {
        watch.end();
        const cause = this.stallCause ?? err;
        tell(outcome, { cause });
        failed?.(cause);
        throw cause;
      },
    );
  }

  /**
   * The command connection had a call without a reply for the command timeout: the server
   * hangs (stopped, swapping, a long script) or the network lost the way. Replies on one
   * connection come in order, so every later call waits behind it: the connection is
   * replaced, which fails every call in flight at once (with RedisTimeoutError), and the
   * breaker opens, as it does when a connection breaks. The new connection's `ready` runs
   * the recovery (a server that hung may have missed invalidations). A late reply can then
   * never arrive: it had only the old socket to come on.
   */
  private replaceStalled(client: RedisClientType): void {
    if (this.closing || !client.isReady) return;
    const cause = new RedisTimeoutError(`no reply from redis within ${this.commandTimeoutMs} ms`);
    // Also when the breaker is open already (its listener records it only on a change).
    this.lastError = cause.message;
    try {
      this.breaker.trip(cause);
    } catch {
      // A listener's error (a log or metric callback): the state change stands.
    }
    // destroy() rejects every command in flight; their callbacks run before the next macrotask.
    this.stallCause = cause;
    setImmediate(() => {
      if (this.stallCause === cause) this.stallCause = null;
    });
    client.destroy();
    client.connect().catch(() => undefined);
  }

  /**
   * Connects both connections. A Redis that is down at start is not an error (it only makes
   * things slower): the breaker starts open and the client keeps reconnecting.
   */
  ready(): Promise<void> {
    this.starting ??= (async () => {
      const wait = this.options.connectTimeoutMs ?? 2_000;
      const connected = await withTimeout(this.connection.connect().then(() => true), wait + 500).catch(() => false);
      void withTimeout(this.subscriber.connect(), wait + 500).catch(() => undefined);
      this.connectedOnce = true;
      if (!connected) {
        // The breaker is open from the start; say why once, then the client keeps reconnecting.
        const reason = new Error(`redis unreachable at start${this.lastError ? ` (${this.lastError})` : ''}`);
        this.lastError = reason.message;
        this.options.onStateChange?.('open', reason);
        return;
      }
      await this.checkVersion();
      // Nothing can be stale yet in this process, but other instances may have left repairs.
      await this.breaker.recover();
    })();
    return this.starting;
  }

  private async checkVersion(): Promise<void> {
    let server: { info(section: string): Promise<unknown> } = this.commands;
    if (this.cluster) {
      const cluster = this.connection as RedisClusterType;
      const master = cluster.masters[0];
      if (!master) return;
      server = await cluster.nodeClient(master);
    }
    const info = await server.info('server').catch(() => '');
    const version = /redis_version:([\d.]+)/.exec(String(info))?.[1];
    if (version !== undefined && !redisVersionSupported(version)) {
      throw new Error(`Redis ${version} is too old: agent-sessions needs Redis ${MIN_REDIS_VERSION} or newer (GETEX)`);
    }
  }

  private async probe(): Promise<void> {
    // A keyed read works on a standalone server and on a Cluster alike.
    await withTimeout(this.commands.get(this.keys.global('probe')), this.commandTimeoutMs);
  }

  async check(): Promise<DependencyHealth> {
    const started = performance.now();
    try {
      if (this.breaker.state !== 'closed') throw new Error(`circuit ${this.breaker.state}: ${this.lastError ?? 'unreachable'}`);
      await this.probe();
      return { name: 'redis', ok: true, latencyMs: performance.now() - started };
    } catch (err) {
      return { name: 'redis', ok: false, latencyMs: performance.now() - started, error: (err as Error).message };
    }
  }

  healthCheck(): HealthCheck {
    return { name: 'redis', check: () => this.check() };
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      await Promise.all(
        [this.subscriber, this.connection].map(async (c) => {
          const client = c as unknown as { isOpen: boolean; isReady?: boolean; close(): Promise<void>; destroy(): void };
          if (!client.isOpen) return;
          // A client still trying to reach a dead server would wait for it to close politely.
          if (client.isReady === false || !this.breaker.isClosed) return client.destroy();
          await client.close().catch(() => client.destroy());
        }),
      );
    })();
    return this.closing;
  }
}

export class RedisTimeoutError extends Error {
  override name = 'RedisTimeoutError';
}

/** What a call's end tells (the circuit breaker). */
interface CallOutcome {
  success(): void;
  failure(cause: unknown): void;
}

/**
 * Tells the outcome after the caller's promise settled. The breaker changes its state before
 * it calls its listeners, so a listener that throws (a log or metric callback) leaves the
 * state right; its error is dropped rather than left unhandled in the reply's callback or
 * the deadline timer.
 */
function tell(outcome: CallOutcome | undefined, failure?: { cause: unknown }): void {
  try {
    if (failure) outcome?.failure(failure.cause);
    else outcome?.success();
  } catch {
    // See above: the state change stands.
  }
}

/**
 * Deadlines for in-flight calls on a Cluster (a connection per node, so a late call is that
 * call's failure, not its connection's: see StallWatch for a standalone server's), checked by
 * one timer instead of one timer per call (a hot path: every cache read). A call fails
 * between `ms` and `ms` + 1/10 of `ms` after it began.
 * Every call gets the same `ms`, so calls in the order they began are in the order of their
 * deadlines: a queue, from whose front the timer drops settled calls and fails late ones. (A
 * Set of in-flight calls, added to and deleted from on every call, cost a Redis hit about a
 * quarter of its throughput.)
 */
class Deadlines {
  /** Calls in the order they began; `fail` is null once the call settled. */
  private queue: Array<{ at: number; fail: (() => void) | null }> = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly ms: number) {}

  /** `promise`, failed after the deadline; `outcome` hears how each call ended, timeouts included. */
  wrap<T>(promise: Promise<T>, outcome?: CallOutcome): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const entry: { at: number; fail: (() => void) | null } = {
        at: performance.now() + this.ms,
        fail: () => {
          const err = new RedisTimeoutError(`no reply from redis within ${this.ms} ms`);
          // The caller's promise settles first: whatever the breaker's listeners do, it settles.
          reject(err);
          tell(outcome, { cause: err });
        },
      };
      this.queue.push(entry);
      this.timer ??= this.start();
      promise.then(
        (v) => {
          // Settled already (timed out): a late reply changes nothing, in the breaker neither.
          if (entry.fail === null) return;
          entry.fail = null;
          resolve(v);
          tell(outcome);
        },
        (err: unknown) => {
          if (entry.fail === null) return;
          entry.fail = null;
          reject(err as Error);
          tell(outcome, { cause: err });
        },
      );
    });
  }

  private start(): NodeJS.Timeout {
    const timer = setInterval(() => {
      const now = performance.now();
      let done = 0;
      for (const entry of this.queue) {
        if (entry.fail !== null && entry.at > now) break;
        done++;
        const fail = entry.fail;
        entry.fail = null;
        fail?.();
      }
      if (done > 0) this.queue = this.queue.slice(done);
      if (this.queue.length === 0) {
        clearInterval(timer);
        this.timer = null;
      }
    }, Math.max(5, Math.floor(this.ms / 10)));
    timer.unref();
    return timer;
  }
}

/**
 * The reply deadline of one connection's calls, at the cost of two counters per call (a hot
 * path: every cache read; a promise per call to fail it through cost a Redis hit about a
 * seventh of its throughput). A server answers one connection's commands in order, so
 * what a call waits for, every later call waits behind: when any call has had no reply for
 * `ms`, the connection stalled and `onStall` replaces it, failing every call in flight.
 * Every tenth of `ms` while calls are in flight a mark records how many had begun; a mark
 * older than `ms` with fewer calls ended than had begun by then is a stall, unless the
 * replies were waiting for this event loop (busy for longer than `ms`): that is checked
 * after the loop has read its sockets. A call thus fails between `ms` and `ms` + 1/5 of `ms`
 * after it began.
 */
class StallWatch {
  private begun = 0;
  private ended = 0;
  /** Oldest first: when, and how many calls had begun by then. */
  private marks: Array<{ at: number; begun: number }> = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly ms: number,
    private readonly onStall: () => void,
  ) {}

  begin(): void {
    this.begun++;
    this.timer ??= this.start();
  }

  end(): void {
    this.ended++;
  }

  private start(): NodeJS.Timeout {
    const timer = setInterval(() => {
      if (this.ended >= this.begun) {
        clearInterval(timer);
        this.timer = null;
        this.marks = [];
        return;
      }
      const now = performance.now();
      this.marks.push({ at: now, begun: this.begun });
      let settled = 0;
      while (settled < this.marks.length && (this.marks[settled] as { begun: number }).begun <= this.ended) settled++;
      if (settled > 0) this.marks = this.marks.slice(settled);
      const oldest = this.marks[0];
      if (oldest === undefined || now - oldest.at < this.ms) return;
      setImmediate(() => {
        if (this.ended >= oldest.begun || this.marks[0] !== oldest) return;
        this.marks = [];
        this.onStall();
      });
    }, Math.max(5, Math.floor(this.ms / 10)));
    timer.unref();
    return timer;
  }
}
