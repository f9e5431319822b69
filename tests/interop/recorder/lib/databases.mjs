// Per-database plumbing: scratch databases, the Session table's DDL, the Prisma driver adapter,
// and plain-driver (not Prisma) reads that show how each column is really stored.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';

import { PrismaBetterSqlite3 } from '@prisma/adapter-better-sqlite3';
import { PrismaMariaDb } from '@prisma/adapter-mariadb';
import { PrismaPg } from '@prisma/adapter-pg';
import Database from 'better-sqlite3';
import * as mariadb from 'mariadb';
import pg from 'pg';

import { RECORDER_DIR, checkTableName } from './prisma.mjs';

export const DEFAULT_ADMIN_URLS = {
  postgresql: process.env.INTEROP_POSTGRESQL_ADMIN_URL || 'postgresql://postgres@127.0.0.1:5432/test',
  mariadb: process.env.INTEROP_MARIADB_ADMIN_URL || 'mariadb://root@127.0.0.1:3306/test',
};

// The DDL `prisma migrate` generates for prisma-session-store 3.x's model (no index on expiresAt).
export const DDL = {
  postgresql: [
    `CREATE TABLE "Session" (
    "id" TEXT NOT NULL,
    "sid" TEXT NOT NULL,
    "data" TEXT NOT NULL,
    "expiresAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "Session_pkey" PRIMARY KEY ("id")
)`,
    `CREATE UNIQUE INDEX "Session_sid_key" ON "Session"("sid")`,
  ],
  mariadb: [
    `CREATE TABLE \`Session\` (
    \`id\` VARCHAR(191) NOT NULL,
    \`sid\` VARCHAR(191) NOT NULL,
    \`data\` MEDIUMTEXT NOT NULL,
    \`expiresAt\` DATETIME(3) NOT NULL,

    UNIQUE INDEX \`Session_sid_key\`(\`sid\`),
    PRIMARY KEY (\`id\`)
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`,
  ],
  sqlite: [
    `CREATE TABLE "Session" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "sid" TEXT NOT NULL,
    "data" TEXT NOT NULL,
    "expiresAt" DATETIME NOT NULL
)`,
    `CREATE UNIQUE INDEX "Session_sid_key" ON "Session"("sid")`,
  ],
};

export const DRIVERS = {
  postgresql: { adapter: '@prisma/adapter-pg', driver: 'pg' },
  mariadb: { adapter: '@prisma/adapter-mariadb', driver: 'mariadb' },
  sqlite: { adapter: '@prisma/adapter-better-sqlite3', driver: 'better-sqlite3' },
};

// The installed version of a top-level dependency (read from node_modules, since some packages
// do not export their package.json).
export function packageVersion(name) {
  return JSON.parse(readFileSync(join(RECORDER_DIR, 'node_modules', name, 'package.json'), 'utf8')).version;
}

function scratchName() {
  return `interop_${randomBytes(6).toString('hex')}`;
}

function withDatabase(url, database) {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

function sqlitePath(url) {
  const path = url.replace(/^file:/, '');
  return isAbsolute(path) ? path : resolve(path);
}

// Accepts the URL spellings a caller is likely to have: SQLAlchemy's (postgresql+asyncpg://,
// mysql+asyncmy://, sqlite+aiosqlite:///relative.db, sqlite:////absolute.db), mysql://, file:
// URLs and plain SQLite paths. Returns what the drivers here take.
export function normalizeUrl(database, url) {
  if (database === 'postgresql') return url.replace(/^postgres(?:ql)?\+[A-Za-z0-9_]+:/, 'postgresql:');
  if (database === 'mariadb') return url.replace(/^(?:mysql|mariadb)(?:\+[A-Za-z0-9_]+)?:/, 'mariadb:');
  if (database === 'sqlite') {
    const sqlalchemy = /^sqlite(?:\+[A-Za-z0-9_]+)?:\/\/\/(.*)$/.exec(url);
    return sqlitePath(sqlalchemy ? sqlalchemy[1] : url);
  }
  throw new Error(`unknown database ${JSON.stringify(database)}`);
}

// A connection to the database at `url` through the plain driver.
export async function connectPlain(database, url) {
  if (database === 'postgresql') {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    // Every value as the text the server sent, untouched by pg's type parsers.
    const raw = { getTypeParser: () => (value) => value };
    return {
      async exec(sql) {
        await client.query(sql);
      },
      async query(sql, params = []) {
        return (await client.query({ text: sql, values: params, types: raw })).rows;
      },
      async close() {
        await client.end();
      },
    };
  }
  if (database === 'mariadb') {
    // dateStrings: DATETIME columns come back as the server's text, not as JS Dates.
    const conn = await mariadb.createConnection(`${url}${url.includes('?') ? '&' : '?'}dateStrings=true`);
    return {
      async exec(sql) {
        await conn.query(sql);
      },
      async query(sql, params = []) {
        const result = await conn.query(sql, params);
        return Array.isArray(result) ? [...result] : [];
      },
      async close() {
        await conn.end();
      },
    };
  }
  if (database === 'sqlite') {
    const db = new Database(sqlitePath(url), { fileMustExist: true });
    return {
      async exec(sql) {
        db.exec(sql);
      },
      async query(sql, params = []) {
        const statement = db.prepare(sql);
        if (statement.reader) return statement.all(...params);
        statement.run(...params);
        return [];
      },
      async close() {
        db.close();
      },
    };
  }
  throw new Error(`unknown database ${JSON.stringify(database)}`);
}

// The Prisma driver adapter for `url`. `options` goes to the adapter (e.g. SQLite's timestampFormat).
export function makeAdapter(database, url, options = undefined) {
  if (database === 'postgresql') return new PrismaPg({ connectionString: url }, options);
  if (database === 'mariadb') return new PrismaMariaDb(url, options);
  if (database === 'sqlite') return new PrismaBetterSqlite3({ url: `file:${sqlitePath(url)}` }, options);
  throw new Error(`unknown database ${JSON.stringify(database)}`);
}

// Creates an empty scratch database (a new PostgreSQL/MariaDB database, or a new SQLite file in a
// new temporary folder) with the Session table. `drop()` removes it again.
export async function createScratch(database, adminUrl = DEFAULT_ADMIN_URLS[database]) {
  if (database === 'sqlite') {
    const folder = mkdtempSync(join(tmpdir(), 'interop-'));
    const path = join(folder, `${scratchName()}.db`);
    new Database(path).close();
    const plain = await connectPlain('sqlite', path);
    for (const statement of DDL.sqlite) await plain.exec(statement);
    await plain.close();
    return { url: path, name: path, drop: async () => rmSync(folder, { recursive: true, force: true }) };
  }
  const name = scratchName();
  const admin = await connectPlain(database, adminUrl);
  try {
    if (database === 'postgresql') await admin.exec(`CREATE DATABASE "${name}"`);
    else await admin.exec(`CREATE DATABASE \`${name}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`);
  } finally {
    await admin.close();
  }
  const url = withDatabase(adminUrl, name);
  const drop = async () => {
    const again = await connectPlain(database, adminUrl);
    try {
      if (database === 'postgresql') await again.exec(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      else await again.exec(`DROP DATABASE IF EXISTS \`${name}\``);
    } finally {
      await again.close();
    }
  };
  try {
    const plain = await connectPlain(database, url);
    try {
      for (const statement of DDL[database]) await plain.exec(statement);
    } finally {
      await plain.close();
    }
  } catch (error) {
    await drop();
    throw error;
  }
  return { url, name, drop };
}

// What the server is and how it is set up where that changes how a DATETIME reads back.
export async function serverInfo(database, url) {
  const plain = await connectPlain(database, url);
  try {
    if (database === 'postgresql') {
      const [row] = await plain.query(
        `SELECT version() AS version, current_setting('server_version') AS server_version,
                current_setting('TimeZone') AS "TimeZone", current_setting('DateStyle') AS "DateStyle"`,
      );
      return { version: row.version, server_version: row.server_version, settings: { TimeZone: row.TimeZone, DateStyle: row.DateStyle } };
    }
    if (database === 'mariadb') {
      const [row] = await plain.query(
        'SELECT VERSION() AS version, @@session.time_zone AS time_zone, @@system_time_zone AS system_time_zone',
      );
      return { version: row.version, server_version: row.version, settings: { time_zone: row.time_zone, system_time_zone: row.system_time_zone } };
    }
    const [row] = await plain.query('SELECT sqlite_version() AS version');
    return { version: `SQLite ${row.version} (bundled in better-sqlite3 ${packageVersion('better-sqlite3')})`, server_version: row.version, settings: {} };
  } finally {
    await plain.close();
  }
}

// The table as the database describes it.
export async function describeTable(database, url, table = 'Session') {
  checkTableName(table);
  const plain = await connectPlain(database, url);
  try {
    if (database === 'postgresql') {
      const columns = await plain.query(
        `SELECT column_name, data_type, datetime_precision, is_nullable
           FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1
          ORDER BY ordinal_position`,
        [table],
      );
      const indexes = await plain.query(
        'SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = $1 ORDER BY indexname',
        [table],
      );
      return { columns, indexes: indexes.map((i) => i.indexdef) };
    }
    if (database === 'mariadb') {
      const columns = await plain.query(
        `SELECT COLUMN_NAME AS column_name, COLUMN_TYPE AS column_type, IS_NULLABLE AS is_nullable,
                CHARACTER_SET_NAME AS character_set, COLLATION_NAME AS collation
           FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?
          ORDER BY ORDINAL_POSITION`,
        [table],
      );
      const [create] = await plain.query(`SHOW CREATE TABLE \`${table}\``);
      return { columns, show_create_table: create['Create Table'] };
    }
    const columns = await plain.query(`SELECT name, type, "notnull", pk FROM pragma_table_info(?)`, [table]);
    const sql = await plain.query(`SELECT type, name, sql FROM sqlite_master WHERE tbl_name = ? ORDER BY type DESC, name`, [table]);
    return { columns, schema: sql };
  } finally {
    await plain.close();
  }
}

// The rows for `sids`, in that order, each column exactly as the plain driver hands it over,
// plus the storage type of expiresAt as the database reports it.
export async function rawRows(database, url, sids, table = 'Session') {
  checkTableName(table);
  const plain = await connectPlain(database, url);
  try {
    const rows = [];
    for (const sid of sids) {
      let found;
      if (database === 'postgresql') {
        found = await plain.query(
          `SELECT "id", "sid", "data", "expiresAt", pg_typeof("expiresAt")::text AS "expiresAt_type"
             FROM "${table}" WHERE "sid" = $1`,
          [sid],
        );
      } else if (database === 'mariadb') {
        found = await plain.query(
          `SELECT id, sid, data, expiresAt,
                  (SELECT COLUMN_TYPE FROM information_schema.COLUMNS
                    WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLUMN_NAME = 'expiresAt') AS expiresAt_type
             FROM \`${table}\` WHERE sid = ?`,
          [table, sid],
        );
      } else {
        found = await plain.query(
          `SELECT "id", "sid", "data", "expiresAt", typeof("expiresAt") AS "expiresAt_type" FROM "${table}" WHERE "sid" = ?`,
          [sid],
        );
      }
      if (found.length !== 1) throw new Error(`expected one row for sid ${sid}, found ${found.length}`);
      rows.push(found[0]);
    }
    return rows;
  } finally {
    await plain.close();
  }
}
