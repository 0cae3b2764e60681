// Copies the non-TypeScript files the build needs (SQL migrations and statements, Lua scripts,
// console) from src/ into the build output: dist/, or the directory given as the argument (the
// tests build into a temporary directory, so they never race over dist/).
import { cpSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

const ASSET = /\.(sql|lua|html|css|js)$/;
const outDir = process.argv[2] ?? 'dist';

function copy(dir) {
  for (const name of readdirSync(dir)) {
    const from = path.join(dir, name);
    if (statSync(from).isDirectory()) copy(from);
    else if (ASSET.test(name)) cpSync(from, path.join(outDir, path.relative('src', from)));
  }
}

copy('src');
