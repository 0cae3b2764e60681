/**
 * How instances tell each other's near caches that a session changed. A message names a
 * session and the version that is now current; a receiver drops anything older. While the
 * bus is not `live` (its connection is down, so messages may be missed) the near cache is
 * bypassed, and `onReset` clears it when the connection returns.
 */
export interface InvalidationHandlers {
  onInvalidate(id: string, version: number): void;
  /** Messages may have been missed: forget everything. */
  onReset(): void;
}

export interface InvalidationBus {
  readonly kind: string;
  readonly live: boolean;
  start(handlers: InvalidationHandlers): Promise<void>;
  /**
   * Tells the other instances. A bus whose transport publishes as part of the cache write
   * itself (the Redis tier's script) has nothing to do here. `announced`: the write went
   * through the session repository. No bus reads it: the repository's statements no longer
   * notify themselves, and the PostgreSQL bus sends every message after the commit.
   */
  publish(id: string, version: number, options?: { announced?: boolean }): Promise<void>;
  /**
   * Resolves once the messages that have already reached this instance (are waiting on its
   * connection) have been handed to `onInvalidate`. A read calls it before it answers from
   * memory, and a writer after its own message came back, so that a message that arrived
   * first is applied first.
   */
  settle(): Promise<void>;
  /**
   * For a transport whose message is sent after the write committed, so that a writer that
   * dies in between leaves a committed write nobody was told of: the committed version of
   * each session among `ids` (a session without a row left out). The near cache checks its
   * entries with it periodically and drops the ones that are older. Absent when the message
   * cannot be lost once the write is committed (Redis: the cache write publishes it).
   */
  committedVersions?(ids: readonly string[]): Promise<Map<string, number>>;
  close(): Promise<void>;
}

export function formatInvalidation(id: string, version: number): string {
  return `${id} ${version}`;
}

export function parseInvalidation(text: string): { id: string; version: number } | null {
  const [id, version] = text.split(' ');
  const v = Number(version);
  return id && Number.isFinite(v) ? { id, version: v } : null;
}

/**
 * `settle` for a bus whose messages arrive on this process's sockets: resolves in a check
 * phase (a `setImmediate` callback) that follows a poll phase which began after the call, so
 * whatever had arrived on the sockets by the call has been read. From anywhere, that takes two
 * immediates: the first runs after the current poll phase (which may have begun before the
 * call: the sender may write another client's reply a few microseconds before our
 * subscriber's message), the second after the next one. A call made while the callback that
 * resolves a wait is running (its microtasks included: a read that follows a near hit) is
 * already past this iteration's poll phase, so one immediate does: it runs after the next.
 * Callers that start in the same turn share one wait, and a wait is never joined by a call
 * made after the poll phase it relies on began.
 */
export function eventLoopSettle(): () => Promise<void> {
  let gate: Promise<void> | null = null;
  /** True while a wait's resolving callback and its microtasks run (in a check phase). */
  let afterPoll = false;
  // The second immediate, queued with the first, runs right after the first callback's
  // microtasks: it closes the window and the wait opened in it.
  const resolveInNextCheck = (resolve: () => void) => {
    setImmediate(() => {
      afterPoll = true;
      resolve();
    });
    setImmediate(() => {
      afterPoll = false;
      gate = null;
    });
  };
  return () => {
    gate ??= afterPoll
      ? new Promise<void>(resolveInNextCheck)
      : new Promise<void>((resolve) =>
          setImmediate(() => {
            gate = null;
            resolveInNextCheck(resolve);
          }),
        );
    return gate;
  };
}
