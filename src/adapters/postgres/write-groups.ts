/**
 * Group commit for one kind of write: calls that arrive while earlier groups are still in
 * flight wait together and go as one statement (one round trip, one commit), the way the
 * run output writer groups many runs' events. Under load a group carries what queued during
 * one round trip; a call that finds a free slot goes at once (after the current microtasks,
 * so a burst issued together stays together), alone, by its single statement. Nothing waits
 * on a timer.
 *
 * - Two calls with the same key (one session) never share a group: the statement sees one
 *   snapshot, so a later call would not see the earlier one's row.
 * - A call inside a caller's transaction never joins a group (its write must commit with
 *   that transaction); the caller runs it alone.
 * - When a group's statement fails for an input reason (a value the database refused), every
 *   call of it runs again alone, so each gets its own outcome. When the database is not there
 *   (`UnavailableError`), every call gets that error: the statement may have committed, and a
 *   retry must not turn a created session into "already exists".
 * - Async context: a call that goes alone runs in its caller's context (its span, its
 *   logger fields); a group runs in its first caller's, so its one statement is traced in
 *   that caller's trace. The scheduling itself runs in the context the groups were built in,
 *   so no caller's context is carried on from one group to the next.
 */
import { AsyncResource } from 'node:async_hooks';
import { UnavailableError } from '../../core/errors.js';

export interface WriteGroupOptions<I, O> {
  /** One call by its single statement (a group of one, and each call of a failed group). */
  one(input: I): Promise<O>;
  /** A group of two or more: one result per input, in input order. */
  many(inputs: readonly I[]): Promise<O[]>;
  /** The row a call writes; calls with the same key go in different groups. */
  key(input: I): string;
  /** Groups in flight at once (each holds one connection while it runs). */
  maxInFlight?: number;
  /** Calls per group at most. */
  maxGroup?: number;
}

export interface WriteGroupStats {
  /** Statements sent: groups, and calls that went alone. */
  groups: number;
  /** Calls they carried. */
  calls: number;
}

interface Pending<I, O> {
  input: I;
  /** The caller's async context. */
  scope: AsyncResource;
  resolve(value: O): void;
  reject(err: unknown): void;
}

export class WriteGroups<I, O> {
  private queue: Pending<I, O>[] = [];
  private inFlight = 0;
  private scheduled = false;
  private readonly maxInFlight: number;
  private readonly maxGroup: number;
  readonly stats: WriteGroupStats = { groups: 0, calls: 0 };
  /** The context the groups were built in, where the scheduling runs. */
  private readonly home = new AsyncResource('agent-sessions.write-groups');

  constructor(private readonly options: WriteGroupOptions<I, O>) {
    this.maxInFlight = options.maxInFlight ?? 4;
    this.maxGroup = options.maxGroup ?? 16;
  }

  submit(input: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ input, scope: new AsyncResource('agent-sessions.write'), resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight >= this.maxInFlight || this.queue.length === 0) return;
    this.scheduled = true;
    queueMicrotask(() =>
      this.home.runInAsyncScope(() => {
        this.scheduled = false;
        this.flush();
      }),
    );
  }

  private flush(): void {
    while (this.inFlight < this.maxInFlight && this.queue.length > 0) {
      const group: Pending<I, O>[] = [];
      const later: Pending<I, O>[] = [];
      const keys = new Set<string>();
      for (const p of this.queue) {
        const key = this.options.key(p.input);
        if (group.length >= this.maxGroup || keys.has(key)) {
          later.push(p);
        } else {
          keys.add(key);
          group.push(p);
        }
      }
      this.queue = later;
      this.inFlight++;
      const first = group[0] as Pending<I, O>;
      void first.scope.runInAsyncScope(() => this.send(group)).finally(() => {
        this.inFlight--;
        this.schedule();
      });
    }
  }

  private async send(group: Pending<I, O>[]): Promise<void> {
    this.stats.groups++;
    this.stats.calls += group.length;
    if (group.length === 1) {
      await this.alone(group[0] as Pending<I, O>);
      return;
    }
    let results: O[];
    try {
      results = await this.options.many(group.map((p) => p.input));
    } catch (err) {
      if (err instanceof UnavailableError) {
        for (const p of group) p.reject(err);
      } else {
        await Promise.all(group.map((p) => this.alone(p)));
      }
      return;
    }
    group.forEach((p, i) => p.resolve(results[i] as O));
  }

  private async alone(p: Pending<I, O>): Promise<void> {
    try {
      p.resolve(await p.scope.runInAsyncScope(() => this.options.one(p.input)));
    } catch (err) {
      p.reject(err);
    }
  }
}
