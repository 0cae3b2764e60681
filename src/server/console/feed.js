// One connection to /v1/events for the whole console: pages subscribe to it (live statuses,
// the events page, the overview's chart) instead of each opening its own. It starts with the
// events committed from the moment the console connected and resumes after a cut.
import { follow } from './api.js';

const KEEP = 1000;
const subscribers = new Set();
const stateListeners = new Set();
/** The latest events, oldest first (at most KEEP). */
export const recent = [];
let controller = null;
let state = 'idle';

export function feedState() {
  return state;
}

export function onFeedState(listener) {
  stateListeners.add(listener);
  listener(state);
  return () => stateListeners.delete(listener);
}

/** Calls `listener(event)` for every event from now on; returns the unsubscribe function. */
export function subscribe(listener) {
  subscribers.add(listener);
  return () => subscribers.delete(listener);
}

function setState(next) {
  state = next;
  for (const l of stateListeners) l(next);
}

export function startFeed() {
  stopFeed();
  controller = new AbortController();
  const { signal } = controller;
  void follow('/v1/events', {
    signal,
    onState: (s) => setState(s),
    onEvent: ({ data }) => {
      // An event read before the abort belongs to the key that was just dropped.
      if (signal.aborted) return true;
      if (!data || typeof data !== 'object' || typeof data.type !== 'string') return false;
      const event = { ...data, received_at: Date.now() };
      recent.push(event);
      if (recent.length > KEEP) recent.splice(0, recent.length - KEEP);
      for (const s of subscribers) {
        try {
          s(event);
        } catch (err) {
          console.error(err);
        }
      }
      return false;
    },
  });
}

/** Stops the feed and forgets its events: the next key may be another tenant's. */
export function stopFeed() {
  controller?.abort();
  controller = null;
  recent.length = 0;
  setState('idle');
}
