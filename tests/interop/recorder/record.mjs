#!/usr/bin/env node
// Records what the real Node system writes: cookies from express-session and Session rows from
// @quixo3/prisma-session-store on Prisma with a driver adapter, one fixture per database.
//
//   node record.mjs --database postgresql|mariadb|sqlite|all [--out DIR] [--admin-url URL]
//                   [--sqlite-timestamp-format iso8601|unixepoch-ms]
//
// Each run makes its own scratch database (or SQLite file) and removes it afterwards.
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

import cookieSignature from 'cookie-signature';

import { COOKIE_NAME, MAX_AGE_MS, SECRET, STORE_OPTIONS, sessionOptions, startApp } from './lib/app.mjs';
import { DDL, DEFAULT_ADMIN_URLS, DRIVERS, createScratch, describeTable, makeAdapter, packageVersion, rawRows, serverInfo } from './lib/databases.mjs';
import { RECORDER_DIR, loadPrismaClient, prismaVersion } from './lib/prisma.mjs';

const DATABASES = ['postgresql', 'mariadb', 'sqlite'];
const SESSIONS = 3;

// Fixed cases (the same as in express-session-fixtures.json) and, below, one per recorded session.
const SIGNATURE_CASES = [
  { sid: 'abc', secret: SECRET },
  { sid: 'rYzbltvST43GEMO9fIw6TprSX6rX21iy', secret: 'old secret' },
  { sid: 'x.y.z', secret: 's3cr3t' },
];

function signature(sid, secret) {
  return { sid, secret, signed: `s:${cookieSignature.sign(sid, secret)}` };
}

// The Cookie header a browser sends back for a Set-Cookie header: its first name=value pair.
function cookieFor(setCookie) {
  return setCookie.split(';', 1)[0];
}

function sidOf(cookie) {
  const value = decodeURIComponent(cookie.slice(cookie.indexOf('=') + 1));
  const sid = cookieSignature.unsign(value.slice(2), SECRET);
  if (!value.startsWith('s:') || sid === false) throw new Error(`cookie ${cookie} does not verify`);
  return sid;
}

// How expiresAt reads as an instant, for each encoding the adapters use.
function expiresAtUtc(database, value) {
  if (typeof value === 'number') return new Date(value).toISOString();
  if (database === 'sqlite') return new Date(value).toISOString(); // ISO-8601 with an offset
  return new Date(`${value.replace(' ', 'T')}Z`).toISOString(); // naive UTC text
}

function describeEncoding(database, rows, sqliteFormat) {
  const sample = rows[0].expiresAt;
  const type = rows[0].expiresAt_type;
  if (database === 'postgresql') {
    return `timestamp(3) without time zone holding UTC; @prisma/adapter-pg sends it as 'YYYY-MM-DD HH:MM:SS.mmm' in UTC (the '.mmm' is left out when the milliseconds are 0); PostgreSQL's text output drops trailing zeros of the fraction ('10:00:00.5', '10:00:00'), e.g. ${JSON.stringify(sample)} (pg_typeof: ${type})`;
  }
  if (database === 'mariadb') {
    return `DATETIME(3) holding UTC; @prisma/adapter-mariadb sends it as 'YYYY-MM-DD HH:MM:SS.mmm' in UTC (the '.mmm' is left out when the milliseconds are 0) and reads it back by appending 'Z'; the server's text always has three fraction digits, e.g. ${JSON.stringify(sample)} (column type: ${type})`;
  }
  if (sqliteFormat === 'unixepoch-ms') {
    return `SQLite storage class ${type}: milliseconds since the Unix epoch, written by @prisma/adapter-better-sqlite3 with timestampFormat 'unixepoch-ms', which Prisma's documentation gives as the option for backward compatibility with its native (Rust) SQLite driver; that engine itself was not run here. E.g. ${JSON.stringify(sample)}`;
  }
  return `SQLite storage class ${type}: ISO-8601 text from Date.toISOString() with the 'Z' replaced by '+00:00' (@prisma/adapter-better-sqlite3's default timestampFormat 'iso8601'), e.g. ${JSON.stringify(sample)}`;
}

async function record(database, { adminUrl, sqliteFormat }) {
  const PrismaClient = loadPrismaClient(database);
  const scratch = await createScratch(database, adminUrl);
  process.stderr.write(`${database}: scratch database ${scratch.name}\n`);
  try {
    const adapterOptions = database === 'sqlite' && sqliteFormat ? { timestampFormat: sqliteFormat } : undefined;
    const prisma = new PrismaClient({ adapter: makeAdapter(database, scratch.url, adapterOptions) });
    const app = await startApp(prisma);
    const sessions = [];
    try {
      for (let i = 0; i < SESSIONS; i += 1) {
        const first = await fetch(`${app.url}/increment`);
        if (first.status !== 200) throw new Error(`first request: HTTP ${first.status}`);
        const [setCookie] = first.headers.getSetCookie();
        if (!setCookie) throw new Error('first response set no cookie');
        await first.json();
        const cookie = cookieFor(setCookie);
        const second = await fetch(`${app.url}/increment`, { headers: { cookie } });
        if (second.status !== 200) throw new Error(`second request: HTTP ${second.status}`);
        const body = await second.json();
        const [setCookieAgain = null] = second.headers.getSetCookie();
        sessions.push({
          sid: sidOf(cookie),
          set_cookie: setCookie,
          cookie,
          body_after_two_writes: body,
          set_cookie_after_second_write: setCookieAgain,
        });
      }
    } finally {
      await app.close();
      await prisma.$disconnect();
    }

    const raw = await rawRows(database, scratch.url, sessions.map((s) => s.sid));
    const rows = raw.map(({ id, sid, data, expiresAt }) => ({ id, sid, data, expiresAt }));
    const details = raw.map((row) => ({
      sid: row.sid,
      expiresAt: row.expiresAt,
      expiresAt_type: row.expiresAt_type,
      expiresAt_js_type: typeof row.expiresAt,
      expiresAt_utc: expiresAtUtc(database, row.expiresAt),
    }));
    for (const s of sessions) {
      if (JSON.stringify(s.body_after_two_writes) !== '{"n":2}') throw new Error(`unexpected body ${JSON.stringify(s.body_after_two_writes)}`);
    }
    const info = await serverInfo(database, scratch.url);
    const table = await describeTable(database, scratch.url);
    const { adapter, driver } = DRIVERS[database];
    return {
      description:
        'Recorded by tests/interop/recorder/record.mjs: express-session cookies and the Session rows @quixo3/prisma-session-store wrote through Prisma with a driver adapter. rows[] are read back with the plain driver, each column exactly as the database returned it.',
      database,
      recorded_at: new Date().toISOString(),
      versions: {
        node: process.versions.node,
        express: packageVersion('express'),
        'express-session': packageVersion('express-session'),
        '@quixo3/prisma-session-store': packageVersion('@quixo3/prisma-session-store'),
        prisma: prismaVersion(),
        '@prisma/client': packageVersion('@prisma/client'),
        adapter: { name: adapter, version: packageVersion(adapter) },
        driver: { name: driver, version: packageVersion(driver) },
        'cookie-signature': packageVersion('cookie-signature'),
      },
      database_server: info,
      node_time_zone: Intl.DateTimeFormat().resolvedOptions().timeZone,
      adapter_options: adapterOptions ?? {},
      prisma_client: 'prisma-client-js generator, query compiler (no Rust query engine), driver adapter',
      table_created_with: 'plain SQL equal to the DDL `prisma migrate` generates for the model (see table.ddl)',
      table: { ddl: DDL[database], ...table },
      secret: SECRET,
      cookie_name: COOKIE_NAME,
      max_age_ms: MAX_AGE_MS,
      session_options: { ...sessionOptions(), secret: undefined, store: 'PrismaSessionStore' },
      store_options: STORE_OPTIONS,
      signatures: [...SIGNATURE_CASES, ...sessions.map((s) => ({ sid: s.sid, secret: SECRET }))].map((c) => signature(c.sid, c.secret)),
      sessions,
      rows,
      expires_at_encoding: describeEncoding(database, raw, adapterOptions?.timestampFormat ?? 'iso8601'),
      rows_expires_at: details,
    };
  } finally {
    await scratch.drop();
    process.stderr.write(`${database}: scratch database dropped\n`);
  }
}

async function main() {
  const { values } = parseArgs({
    options: {
      database: { type: 'string', short: 'd' },
      out: { type: 'string', default: join(RECORDER_DIR, '..', 'fixtures') },
      'admin-url': { type: 'string' },
      'sqlite-timestamp-format': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || !values.database) {
    process.stdout.write('usage: node record.mjs --database postgresql|mariadb|sqlite|all [--out DIR] [--admin-url URL] [--sqlite-timestamp-format iso8601|unixepoch-ms]\n');
    process.exit(values.help ? 0 : 2);
  }
  const databases = values.database === 'all' ? DATABASES : [values.database];
  for (const database of databases) {
    if (!DATABASES.includes(database)) {
      process.stderr.write(`unknown database ${JSON.stringify(database)}\n`);
      process.exit(2);
    }
  }
  const format = values['sqlite-timestamp-format'];
  if (format && !['iso8601', 'unixepoch-ms'].includes(format)) {
    process.stderr.write(`unknown --sqlite-timestamp-format ${JSON.stringify(format)}\n`);
    process.exit(2);
  }
  for (const database of databases) {
    const fixture = await record(database, {
      adminUrl: values['admin-url'] ?? DEFAULT_ADMIN_URLS[database],
      sqliteFormat: database === 'sqlite' ? format : undefined,
    });
    const suffix = database === 'sqlite' && format === 'unixepoch-ms' ? '-unixepoch-ms' : '';
    const path = resolve(values.out, `node-${database}${suffix}.json`);
    writeFileSync(path, `${JSON.stringify(fixture, null, 2)}\n`);
    process.stderr.write(`${database}: wrote ${path}\n`);
  }
}

main().catch((error) => {
  process.stderr.write(`${error.stack ?? error}\n`);
  process.exit(1);
});
