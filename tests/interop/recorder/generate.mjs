#!/usr/bin/env node
// Generates the Prisma clients (PostgreSQL, MySQL/MariaDB, SQLite) for the "Session" table, with
// its expiry column named "expiresAt" (3.x's model) or "expires" (2.x's), without any download.
// record.mjs and read.mjs do this by themselves when a client is missing.
import { PROVIDERS, ensureClient, prismaVersion } from './lib/prisma.mjs';

for (const database of Object.keys(PROVIDERS)) {
  for (const expiresColumn of ['expiresAt', 'expires']) {
    const dir = ensureClient(database, 'Session', { expiresColumn });
    process.stderr.write(`prisma ${prismaVersion()}: ${database} client in ${dir}\n`);
  }
}
