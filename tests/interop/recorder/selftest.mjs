#!/usr/bin/env node
// Checks read.mjs end to end: for each database, a scratch database gets rows inserted with plain
// SQL in express-session's format (as another implementation would write them), then read.mjs is
// run as a separate process, as the Python tests run it.
//
//   node --test selftest.mjs            (all three databases; needs PostgreSQL and MariaDB)
//   INTEROP_DATABASES=sqlite node --test selftest.mjs
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import cookieSignature from 'cookie-signature';

import { SECRET } from './lib/app.mjs';
import { DDL, connectPlain, createScratch } from './lib/databases.mjs';
import { RECORDER_DIR } from './lib/prisma.mjs';

const DATABASES = (process.env.INTEROP_DATABASES || 'postgresql,mariadb,sqlite').split(',');
const WEEK = 7 * 24 * 60 * 60 * 1000;

function cookieHeader(sid, secret = SECRET) {
  return `connect.sid=${encodeURIComponent(`s:${cookieSignature.sign(sid, secret)}`)}`;
}

function sessionData(expires, n = 2) {
  return JSON.stringify({ cookie: { originalMaxAge: WEEK, expires: expires.toISOString(), httpOnly: true, path: '/' }, n });
}

// A future instant with milliseconds, and one without.
const LATER = new Date(Math.floor(Date.now() / 1000) * 1000 + WEEK + 123);
const LATER_WHOLE = new Date(Math.floor(Date.now() / 1000) * 1000 + WEEK);
const EARLIER = new Date(Math.floor(Date.now() / 1000) * 1000 - 60 * 60 * 1000);

const naive = (d, ms = true) => d.toISOString().replace('T', ' ').replace(ms ? 'Z' : /\.\d{3}Z$/, '');

function read(args, env = {}) {
  return new Promise((resolve) => {
    execFile(process.execPath, [join(RECORDER_DIR, 'read.mjs'), ...args], { env: { ...process.env, ...env } }, (error, stdout, stderr) => {
      const code = error ? error.code : 0;
      let json = null;
      try {
        json = JSON.parse(stdout);
      } catch {
        // left null: the caller checks
      }
      resolve({ code, json, stdout, stderr });
    });
  });
}

// How each database takes an expiresAt value in plain SQL, per encoding.
const ENCODINGS = {
  postgresql: { 'naive UTC text': (d) => naive(d), 'naive UTC text without ms': (d) => naive(d, false) },
  mariadb: { 'naive UTC text': (d) => naive(d), 'naive UTC text without ms': (d) => naive(d, false) },
  sqlite: {
    "ISO-8601 with '+00:00' (the adapter's default)": (d) => d.toISOString().replace('Z', '+00:00'),
    "ISO-8601 with 'Z'": (d) => d.toISOString(),
    'naive UTC text, space separated': (d) => naive(d),
    'naive UTC text without ms': (d) => naive(d, false),
    "naive ISO-8601 with 'T', without ms": (d) => d.toISOString().slice(0, 19),
    'integer milliseconds (the Rust engine)': (d) => d.getTime(),
  },
};

for (const database of DATABASES) {
  describe(database, () => {
    let scratch;
    let plain;
    const q = (name) => (database === 'mariadb' ? `\`${name}\`` : `"${name}"`);
    const p = (i) => (database === 'postgresql' ? `$${i}` : '?');
    const insert = (table, id, sid, data, expiresAt) =>
      plain.query(`INSERT INTO ${q(table)} (${q('id')}, ${q('sid')}, ${q('data')}, ${q('expiresAt')}) VALUES (${p(1)}, ${p(2)}, ${p(3)}, ${p(4)})`, [id, sid, data, expiresAt]);
    const row = async (sid, table = 'Session') =>
      (await plain.query(`SELECT * FROM ${q(table)} WHERE ${q('sid')} = ${p(1)}`, [sid]))[0] ?? null;
    const base = () => ['--database', database, '--url', scratch.url];
    const first = Object.values(ENCODINGS[database])[0];

    before(async () => {
      scratch = await createScratch(database);
      plain = await connectPlain(database, scratch.url);
      for (const statement of DDL[database]) await plain.exec(statement.replaceAll('Session', 'py_sessions'));
    });
    after(async () => {
      await plain?.close();
      await scratch?.drop();
    });

    for (const [name, encode] of Object.entries(ENCODINGS[database])) {
      test(`reads a row whose expiresAt is ${name}`, async () => {
        const when = name.includes('without ms') ? LATER_WHOLE : LATER;
        const sid = `enc-${Object.keys(ENCODINGS[database]).indexOf(name)}`;
        await insert('Session', `id-${sid}`, sid, sessionData(when), encode(when));
        for (const TZ of ['UTC', 'America/New_York']) {
          const { code, json, stderr } = await read([...base(), '--cookie', cookieHeader(sid), '--no-touch'], { TZ });
          assert.equal(code, 0, stderr);
          assert.equal(json.found, true);
          assert.equal(json.row_id, `id-${sid}`);
          assert.equal(json.row_expires_at, when.toISOString(), `TZ=${TZ}`);
          assert.deepEqual(json.data, { n: 2 });
          assert.equal(json.session.cookie.expires, when.toISOString());
        }
      });
    }

    test('a plain read touches the row (express-session calls store.touch)', async () => {
      await insert('Session', 'id-touch', 'touch', sessionData(LATER), first(LATER));
      const { code, json, stderr } = await read([...base(), '--cookie', cookieHeader('touch')]);
      assert.equal(code, 0, stderr);
      assert.deepEqual(json.data_after_request, { n: 2 });
      assert.deepEqual(json.set_cookie, []);
      const stored = await row('touch');
      assert.equal(JSON.parse(stored.data).n, 2);
      assert.notEqual(JSON.parse(stored.data).cookie.expires, LATER.toISOString());
    });

    test('--no-touch leaves the row byte for byte', async () => {
      await insert('Session', 'id-still', 'still', sessionData(LATER), first(LATER));
      const before = await row('still');
      const { code } = await read([...base(), '--cookie', cookieHeader('still'), '--no-touch']);
      assert.equal(code, 0);
      assert.deepEqual(await row('still'), before);
    });

    test('several --cookie options: one process, one JSON line each, in order', async () => {
      await insert('Session', 'id-many1', 'many1', sessionData(LATER, 5), first(LATER));
      await insert('Session', 'id-many2', 'many2', sessionData(LATER, 6), first(LATER));
      const cookies = [cookieHeader('many2'), cookieHeader('nobody-here'), cookieHeader('many1')];
      const { code, stdout, stderr } = await read([...base(), '--no-touch', ...cookies.flatMap((c) => ['--cookie', c])]);
      assert.equal(code, 3, stderr); // one of them was not found
      const lines = stdout.trim().split('\n').map((line) => JSON.parse(line));
      assert.deepEqual(lines.map((line) => [line.cookie_sid, line.found, line.data]), [
        ['many2', true, { n: 6 }],
        ['nobody-here', false, null],
        ['many1', true, { n: 5 }],
      ]);
      const all = await read([...base(), '--no-touch', '--cookie', cookies[0], '--cookie', cookies[2]]);
      assert.equal(all.code, 0);
    });

    test('--increment writes n + 1 back through PrismaSessionStore', async () => {
      await insert('Session', 'id-inc', 'inc', sessionData(LATER), first(LATER));
      const { code, json } = await read([...base(), '--cookie', cookieHeader('inc'), '--increment']);
      assert.equal(code, 0);
      assert.deepEqual(json.data, { n: 2 });
      assert.deepEqual(json.data_after_request, { n: 3 });
      assert.equal(json.set_cookie.length, 1);
      assert.ok(json.set_cookie[0].startsWith(`${cookieHeader('inc')}; Path=/; Expires=`));
      const stored = await row('inc');
      assert.equal(stored.id, 'id-inc');
      assert.equal(JSON.parse(stored.data).n, 3);
    });

    test('--table reads another table', async () => {
      await insert('py_sessions', 'id-other', 'other', sessionData(LATER), first(LATER));
      const { code, json } = await read([...base(), '--table', 'py_sessions', '--cookie', cookieHeader('other'), '--no-touch']);
      assert.equal(code, 0);
      assert.deepEqual(json.data, { n: 2 });
    });

    test('a cookie signed with another secret is not found (exit 3)', async () => {
      await insert('Session', 'id-forged', 'forged', sessionData(LATER), first(LATER));
      const { code, json } = await read([...base(), '--cookie', cookieHeader('forged', 'another secret')]);
      assert.equal(code, 3);
      assert.equal(json.found, false);
      assert.equal(json.cookie_sid, null);
      assert.ok(await row('forged'));
      const rotated = await read([...base(), '--cookie', cookieHeader('forged', 'another secret'), '--secret', 'new', '--secret', 'another secret', '--no-touch']);
      assert.equal(rotated.code, 0);
      assert.equal(rotated.json.found, true);
    });

    test('an unknown session id is not found and nothing is written (exit 3)', async () => {
      const { code, json } = await read([...base(), '--cookie', cookieHeader('nobody')]);
      assert.equal(code, 3);
      assert.equal(json.found, false);
      assert.equal(json.row_found, false);
      assert.equal(await row('nobody'), null);
    });

    test('an expired row is not found, and PrismaSessionStore deletes it (exit 3)', async () => {
      await insert('Session', 'id-old', 'old', sessionData(EARLIER), first(EARLIER));
      const { code, json } = await read([...base(), '--cookie', cookieHeader('old')]);
      assert.equal(code, 3);
      assert.equal(json.found, false);
      assert.equal(json.row_found, true);
      assert.equal(json.row_expires_at, EARLIER.toISOString());
      assert.equal(await row('old'), null);
    });

    test('bad arguments exit 2', async () => {
      assert.equal((await read([...base()])).code, 2);
      assert.equal((await read([...base(), '--cookie', 'x=y', '--table', 'no such'])).code, 2);
    });
  });
}
