#!/usr/bin/env node
// Proves the Node system reads a session someone else (fastapi_prisma_session) wrote: runs the
// same express + express-session + PrismaSessionStore app as record.mjs against an EXISTING
// database and table, sends one request per given Cookie header, and prints JSON.
//
//   node read.mjs --database postgresql|mariadb|sqlite --url URL --cookie 'connect.sid=s%3A...'...
//                 [--table Session] [--expires-column expiresAt] [--secret S]... [--cookie-name connect.sid]
//                 [--increment] [--no-touch] [--sqlite-timestamp-format iso8601|unixepoch-ms]
//                 [--serializer FILE [--plain KEY]...] [--rolling] [--resave] [--age-ms N]
//
// --serializer: a module whose encryptedSerializer(keys, {plain}) (docs/encryption.md) becomes the
// store's serializer, with the keys in $SESSION_ENCRYPTION_KEYS (comma-separated, newest first).
// stdout: one JSON object per --cookie, one a line, in order (see README.md). Exit status: 0 every
// session was found and loaded, 3 one was not (JSON still printed), 2 bad arguments, 1 any other
// failure (message on stderr).
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

import cookieSignature from 'cookie-signature';

import { COOKIE_NAME, MAX_AGE_MS, SECRET, startApp, userData } from './lib/app.mjs';
import { makeAdapter, normalizeUrl } from './lib/databases.mjs';
import { checkTableName, loadPrismaClient } from './lib/prisma.mjs';

const USAGE = `usage: node read.mjs --database postgresql|mariadb|sqlite --url URL --cookie 'NAME=VALUE[; ...]'...
                    [--table Session] [--expires-column expiresAt] [--secret S]... [--cookie-name connect.sid]
                    [--increment] [--no-touch] [--sqlite-timestamp-format iso8601|unixepoch-ms]
                    [--serializer FILE [--plain KEY]...] [--rolling] [--resave] [--age-ms N]
`;

class UsageError extends Error {}

// The session id in the Cookie header, as express-session finds it: the named cookie, URL-decoded,
// "s:" + a signature that verifies with one of the secrets. null when there is none.
function cookieSid(header, name, secrets) {
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0 || part.slice(0, eq).trim() !== name) continue;
    let value = part.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    try {
      value = decodeURIComponent(value);
    } catch {
      // express-session keeps a value that does not decode as it is
    }
    if (!value.startsWith('s:')) return null;
    for (const secret of secrets) {
      const sid = cookieSignature.unsign(value.slice(2), secret);
      if (sid !== false) return sid;
    }
    return null;
  }
  return null;
}

function parse() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        database: { type: 'string', short: 'd' },
        url: { type: 'string' },
        table: { type: 'string', default: 'Session' },
        'expires-column': { type: 'string', default: 'expiresAt' },
        cookie: { type: 'string', multiple: true },
        secret: { type: 'string', multiple: true },
        'cookie-name': { type: 'string', default: COOKIE_NAME },
        'max-age-ms': { type: 'string', default: String(MAX_AGE_MS) },
        increment: { type: 'boolean', default: false },
        'no-touch': { type: 'boolean', default: false },
        rolling: { type: 'boolean', default: false },
        resave: { type: 'boolean', default: false },
        'age-ms': { type: 'string', default: '0' },
        'sqlite-timestamp-format': { type: 'string' },
        serializer: { type: 'string' },
        plain: { type: 'string', multiple: true },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    throw new UsageError(error.message);
  }
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  for (const required of ['database', 'url', 'cookie']) {
    if (!values[required]) throw new UsageError(`--${required} is required`);
  }
  if (!['postgresql', 'mariadb', 'sqlite'].includes(values.database)) {
    throw new UsageError(`unknown --database ${JSON.stringify(values.database)}`);
  }
  try {
    checkTableName(values.table);
    checkTableName(values['expires-column']);
  } catch (error) {
    throw new UsageError(error.message);
  }
  const maxAge = Number(values['max-age-ms']);
  if (!Number.isSafeInteger(maxAge) || maxAge <= 0) throw new UsageError('--max-age-ms must be a positive integer');
  const ageMs = Number(values['age-ms']);
  if (!Number.isSafeInteger(ageMs) || ageMs < 0) throw new UsageError('--age-ms must be a whole number, 0 or more');
  const format = values['sqlite-timestamp-format'];
  if (format && (values.database !== 'sqlite' || !['iso8601', 'unixepoch-ms'].includes(format))) {
    throw new UsageError('--sqlite-timestamp-format is iso8601 or unixepoch-ms, and only for --database sqlite');
  }
  const url = normalizeUrl(values.database, values.url);
  if (values.database === 'sqlite' && !existsSync(url)) throw new UsageError(`no SQLite file at ${url}`);
  return { ...values, url, maxAge, ageMs, secrets: values.secret?.length ? values.secret : [SECRET] };
}

// One request with the Cookie header `cookie`; what express-session and Prisma made of it.
async function readOne(app, prisma, options, cookie, seen) {
  const sid = cookieSid(cookie, options['cookie-name'], options.secrets);
  seen.sid = sid;
  seen.found = false;
  seen.before = null;
  // The row as Prisma reads it, before the request (a touch or a write changes it).
  let row = null;
  let rowError = null;
  try {
    row = sid === null ? null : await prisma.session.findUnique({ where: { sid } });
    if (row !== null && options.ageMs > 0) {
      // Moved back first, so that whether the request moves it shows however fast the request is.
      const expiresAt = new Date(row.expiresAt.getTime() - options.ageMs);
      row = await prisma.session.update({ where: { sid }, data: { expiresAt } });
    }
  } catch (error) {
    rowError = String(error?.message ?? error);
  }
  const response = await fetch(`${app.url}${options.increment ? '/increment' : '/session'}`, {
    headers: { cookie },
  });
  const body = await response.json();
  if (response.status !== 200) throw new Error(`HTTP ${response.status}: ${JSON.stringify(body)}`);
  const { found, before } = seen;
  const after = row === null ? null : await prisma.session.findUnique({ where: { sid } });
  return {
    found,
    cookie_sid: sid,
    row_found: row !== null, // a row with the cookie's sid exists (it may have expired)
    row_id: row?.id ?? null,
    row_expires_at: row ? row.expiresAt.toISOString() : null, // expiresAt as Prisma reads it, ISO-8601 UTC
    row_error: rowError, // why Prisma could not read that row, if it could not
    row_expires_at_after: after ? after.expiresAt.toISOString() : null, // the same row after the request
    session: before, // the session as loaded from the store (with its cookie), null if not found
    data: found ? userData(before) : null, // the user data as loaded
    data_after_request: options.increment ? body : found ? userData(before) : null,
    status: response.status,
    set_cookie: response.headers.getSetCookie(),
  };
}

async function main() {
  const options = parse();
  const PrismaClient = loadPrismaClient(options.database, options.table, options['expires-column']);
  const adapterOptions = options['sqlite-timestamp-format'] ? { timestampFormat: options['sqlite-timestamp-format'] } : undefined;
  const prisma = new PrismaClient({ adapter: makeAdapter(options.database, options.url, adapterOptions) });
  // The request in flight: its cookie's id, and what express-session loaded for it.
  const seen = { sid: null, found: false, before: null };
  const store = {};
  if (options.serializer) {
    const { encryptedSerializer } = await import(pathToFileURL(resolve(options.serializer)).href);
    const keys = (process.env.SESSION_ENCRYPTION_KEYS ?? '').split(',').filter(Boolean);
    store.serializer = encryptedSerializer(keys, { plain: options.plain ?? [] });
  }
  const app = await startApp(prisma, {
    store,
    session: {
      secret: options.secrets,
      name: options['cookie-name'],
      maxAge: options.maxAge,
      rolling: options.rolling,
      resave: options.resave,
    },
    touch: !options['no-touch'],
    onRequest(req) {
      // express-session keeps the cookie's id only when the store returned a session for it;
      // otherwise it has already made a new, empty session with a new id.
      seen.found = seen.sid !== null && req.sessionID === seen.sid;
      seen.before = seen.found ? JSON.parse(JSON.stringify(req.session)) : null;
    },
  });
  const results = [];
  try {
    // One after another, on one app and one client: a process start costs far more than a request.
    for (const cookie of options.cookie) results.push(await readOne(app, prisma, options, cookie, seen));
  } finally {
    await app.close();
    await prisma.$disconnect();
  }
  process.stdout.write(results.map((result) => `${JSON.stringify(result)}\n`).join(''));
  return results.every((result) => result.found) ? 0 : 3;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    process.stderr.write(error instanceof UsageError ? `${error.message}\n${USAGE}` : `${error.stack ?? error}\n`);
    process.exit(error instanceof UsageError ? 2 : 1);
  },
);
