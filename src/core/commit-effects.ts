/**
 * Effects that must wait for a commit. Inside an idempotent call (core/idempotency.ts) an
 * operation's writes join one transaction that commits only after the operation returned, so
 * what the services do "after the write" (set a cache, publish live output, signal another
 * instance, launch a run) would otherwise happen for a write that is not committed yet, or
 * never will be. The services hand such work to `afterCommit`: outside a unit it runs at once
 * (the write already committed), inside one it runs once the unit committed, and not at all if
 * it rolled back (`onRollback` then undoes local preparations).
 */
import { AsyncLocalStorage } from 'node:async_hooks';

type Effect = () => Promise<void> | void;

/** The effects of one attempt at a unit of work. */
export class CommitEffects {
  private readonly committed: Effect[] = [];
  private readonly rolledBack: Effect[] = [];
  private state: 'open' | 'committed' | 'rolled-back' = 'open';

  /** Queued while open; run at once once committed (work the unit left running); dropped once rolled back. */
  async afterCommit(effect: Effect): Promise<void> {
    if (this.state === 'open') this.committed.push(effect);
    else if (this.state === 'committed') await effect();
  }

  onRollback(effect: Effect): void {
    if (this.state === 'open') this.rolledBack.push(effect);
  }

  /** Runs the queued effects in order; one that fails does not stop the others (they are best effort, like a cache write). */
  async commit(onError: (err: unknown) => void = () => undefined): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'committed';
    for (const effect of this.committed.splice(0)) {
      try {
        await effect();
      } catch (err) {
        onError(err);
      }
    }
  }

  rollback(): void {
    if (this.state !== 'open') return;
    this.state = 'rolled-back';
    this.committed.length = 0;
    for (const effect of this.rolledBack.splice(0)) {
      try {
        void Promise.resolve(effect()).catch(() => undefined);
      } catch {
        // Undoing a local preparation is best effort.
      }
    }
  }
}

const current = new AsyncLocalStorage<CommitEffects>();

/** Runs `fn` with its effects collected in `effects` (see `afterCommit`). */
export function collectingEffects<T>(effects: CommitEffects, fn: () => Promise<T>): Promise<T> {
  return current.run(effects, fn);
}

/** Runs `effect` now, or after the commit of the unit of work this call is part of. */
export async function afterCommit(effect: Effect): Promise<void> {
  const unit = current.getStore();
  if (!unit) {
    await effect();
    return;
  }
  await unit.afterCommit(effect);
}

/** Registers undo work for a rollback of the unit of work this call is part of (nothing outside one). */
export function onRollback(effect: Effect): void {
  current.getStore()?.onRollback(effect);
}
