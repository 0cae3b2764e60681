// Copies the non-TypeScript files the build needs (SQL migrations, Lua scripts, console) into dist/.
import { cpSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

const ASSET = /\.(sql|lua|html|css|js)$/;

function copy(dir) {
  for (const name of readdirSync(dir)) {
    const from = path.join(dir, name);
    if (statSync(from).isDirectory()) copy(from);
    else if (ASSET.test(name) && !name.endsWith('.ts')) {
      const to = path.join('dist', path.relative('src', from));
      cpSync(from, to);
    }
  }
}

copy('src');
