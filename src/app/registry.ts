/**
 * Which parts each `Sessions` was made of. Kept apart from the facade so that the public
 * declarations never name the parts' types (they reach adapters and their drivers).
 */
const PARTS = new WeakMap<object, unknown>();

export function registerParts(sessions: object, parts: unknown): void {
  PARTS.set(sessions, parts);
}

export function registeredParts(sessions: object): unknown {
  const parts = PARTS.get(sessions);
  if (parts === undefined) throw new Error('not a Sessions made by createSessions');
  return parts;
}
