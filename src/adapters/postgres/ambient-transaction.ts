/**
 * An ambient transaction: `withinTransaction(fn)` runs `fn` in one transaction, and every
 * statement any adapter issues on this database while `fn` runs (in its async context) goes
 * to that transaction, a nested `transaction()` included (it joins the outer one). This is how
 * an idempotent call (core/idempotency.ts) makes the operation's own writes and its stored
 * answer commit together without each repository knowing about it.
 *
 * Once `fn` has settled, the context is closed: work it left running (a timer, a detached
 * promise) that issues a statement later goes to the pool again, never to a finished
 * transaction.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { SqlDatabase, SqlExecutor, TransactionOptions } from './database.js';

interface Ambient {
  tx: SqlExecutor;
  open: boolean;
}

export interface AmbientDatabase extends SqlDatabase {
  /**
   * Runs `fn` in a transaction that every statement on this database inside it joins. A
   * conflict runs `fn` again (it must only do database work, or work its caller undoes); a
   * call inside an ambient transaction joins it.
   */
  withinTransaction<T>(fn: (tx: SqlExecutor) => Promise<T>, options?: TransactionOptions): Promise<T>;
}

export function ambientDatabase(db: SqlDatabase): AmbientDatabase {
  const storage = new AsyncLocalStorage<Ambient>();
  const current = (): Ambient | null => {
    const a = storage.getStore();
    return a?.open ? a : null;
  };
  const transaction = <T>(fn: (tx: SqlExecutor) => Promise<T>, options?: TransactionOptions): Promise<T> => {
    const outer = current();
    // Joined: a conflict aborts the whole outer transaction, which its own retry runs again.
    if (outer) return fn(outer.tx);
    return db.transaction(fn, options);
  };
  return {
    get kind() {
      return db.kind;
    },
    query<R>(text: string, params?: readonly unknown[]): Promise<R[]> {
      const a = current();
      return a ? a.tx.query<R>(text, params) : db.query<R>(text, params);
    },
    exec(script: string): Promise<void> {
      const a = current();
      return a ? a.tx.exec(script) : db.exec(script);
    },
    transaction,
    withinTransaction<T>(fn: (tx: SqlExecutor) => Promise<T>, options?: TransactionOptions): Promise<T> {
      if (current()) return transaction(fn, options);
      return db.transaction(async (tx) => {
        const ambient: Ambient = { tx, open: true };
        try {
          return await storage.run(ambient, () => fn(tx));
        } finally {
          ambient.open = false;
        }
      }, options);
    },
    get listening() {
      return db.listening;
    },
    get inTransaction() {
      return current() !== null;
    },
    listen: (channel, onPayload, onReset) => db.listen(channel, onPayload, onReset),
    ready: () => db.ready(),
    close: () => db.close(),
  };
}
