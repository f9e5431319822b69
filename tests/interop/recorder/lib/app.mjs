// The Node side as a Node service would run it: express 5 + express-session + PrismaSessionStore
// on a PrismaClient with a driver adapter, served over real HTTP on 127.0.0.1.
import { once } from 'node:events';

import { PrismaSessionStore } from '@quixo3/prisma-session-store';
import express from 'express';
import session from 'express-session';

export const SECRET = 'a santa at nasa';
export const COOKIE_NAME = 'connect.sid';
export const MAX_AGE_MS = 7 * 24 * 60 * 60 * 1000;

// prisma-session-store's README setup, without the cleanup timer (checkPeriod) so a run does not
// delete rows on its own.
export const STORE_OPTIONS = { dbRecordIdIsSessionId: true };

export function sessionOptions({ secret = SECRET, name = COOKIE_NAME, maxAge = MAX_AGE_MS, rolling = false, resave = false } = {}) {
  return { name, secret, resave, rolling, saveUninitialized: false, cookie: { maxAge } };
}

// The session's user data: everything but express-session's `cookie`.
export function userData(sess) {
  const { cookie, ...data } = JSON.parse(JSON.stringify(sess ?? {}));
  return data;
}

// Starts the app; `prisma` is a PrismaClient built on a driver adapter.
export async function startApp(prisma, { session: sessionConfig = {}, store: storeConfig = {}, touch = true, onRequest } = {}) {
  const store = new PrismaSessionStore(prisma, { ...STORE_OPTIONS, ...storeConfig });
  if (!touch) store.touch = undefined; // express-session then leaves an unmodified session alone
  const app = express();
  app.use(session({ ...sessionOptions(sessionConfig), store }));
  // Increments the counter: after two calls the session's user data is {"n": 2}.
  app.get('/increment', (req, res) => {
    onRequest?.(req);
    req.session.n = (req.session.n || 0) + 1;
    res.json(userData(req.session));
  });
  // Reads the session without changing it.
  app.get('/session', (req, res) => {
    onRequest?.(req);
    res.json({ session_id: req.sessionID, session: JSON.parse(JSON.stringify(req.session)) });
  });
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    store,
    async close() {
      server.closeAllConnections?.();
      await new Promise((done) => server.close(() => done()));
      store.shutdown();
    },
  };
}
