/** The Lua scripts of the session cache and session leases (see scripts/*.lua for each header). */
import { LuaScript } from './lua-script.js';

export const SCRIPTS = {
  casSet: LuaScript.load('casSet-1'),
  lockAcquire: LuaScript.load('lockAcquire-3'),
  lockEpoch: LuaScript.load('lockEpoch-1'),
  lockForget: LuaScript.load('lockForget-2'),
  lockExtend: LuaScript.load('lockExtend-1'),
  lockRelease: LuaScript.load('lockRelease-1'),
  ttlRefresh: LuaScript.load('ttlRefresh-1'),
} as const;
