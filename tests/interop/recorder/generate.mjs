#!/usr/bin/env node
// Generates the three Prisma clients (PostgreSQL, MySQL/MariaDB, SQLite) for the "Session" table
// without any download. record.mjs and read.mjs do this by themselves when a client is missing.
import { PROVIDERS, ensureClient, prismaVersion } from './lib/prisma.mjs';

for (const database of Object.keys(PROVIDERS)) {
  const dir = ensureClient(database, 'Session');
  process.stderr.write(`prisma ${prismaVersion()}: ${database} client in ${dir}\n`);
}
