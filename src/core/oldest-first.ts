/**
 * The oldest entry of a Map used as a queue in insertion order, for bounded maps that evict
 * their oldest entries (the near cache's LRU, the in-process rate limiter). One iterator is
 * kept across calls: every entry before its place was taken (and removed by the caller), and
 * an entry deleted and set again moves to the end, so its next entry is always the oldest.
 * A new iterator per call (`map.keys().next()`) would step over every slot deleted since the
 * map last rehashed (V8 keeps them until then): 8.8 µs per eviction at 10,000 entries, 20–110
 * µs at 100,000; the kept iterator steps over each slot once.
 */
export class OldestFirst<T> {
  private cursor: Iterator<T> | null = null;

  /** `iterate`: a new iterator over the map in insertion order (its keys, or its values when they name their key). */
  constructor(private readonly iterate: () => Iterator<T>) {}

  /** The oldest entry, which the caller must delete from the map; undefined when it is empty. */
  take(): T | undefined {
    this.cursor ??= this.iterate();
    let next = this.cursor.next();
    // Done: every entry it could see is gone (an ended iterator sees none added later).
    if (next.done) next = (this.cursor = this.iterate()).next();
    return next.done ? undefined : next.value;
  }

  /** After the map was cleared: start again from its first entry. */
  reset(): void {
    this.cursor = null;
  }
}
