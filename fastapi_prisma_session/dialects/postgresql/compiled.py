"""postgresql's statements as SQLAlchemy compiles them from sql.py, for sqltext.py.

Written by `python -m fastapi_prisma_session.dialects.generate` (edit sql.py, then run it); the tests write
it again and compare.
"""

from typing import Any


STATEMENTS: dict[str, tuple[str, tuple[str, ...], dict[str, Any]]] = {
    'activity': ('SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()', (), {}),
    'all_rows': ('SELECT \x00table\x00.sid, \x00table\x00.data, CASE WHEN (isfinite(\x00table\x00.\x00expires\x00) AND EXTRACT(year FROM \x00table\x00.\x00expires\x00) NOT BETWEEN 1 AND 9999) THEN NULL ELSE \x00table\x00.\x00expires\x00 END AS "expiresAt", \x00table\x00.id \nFROM \x00table\x00', (), {}),
    'clear': ('DELETE FROM \x00table\x00', (), {}),
    'clear_returning': ('DELETE FROM \x00table\x00 RETURNING \x00table\x00.sid, \x00table\x00.data', (), {}),
    'delete': ('DELETE FROM \x00table\x00 WHERE \x00table\x00.sid = ANY ($1::TEXT[])', ('sids',), {}),
    'delete_ids': ('DELETE FROM \x00table\x00 WHERE \x00table\x00.id = ANY ($1::TEXT[])', ('ids',), {}),
    'delete_returning': ('DELETE FROM \x00table\x00 WHERE \x00table\x00.sid = ANY ($1::TEXT[]) RETURNING \x00table\x00.sid, \x00table\x00.data', ('sids',), {}),
    'insert': ('INSERT INTO \x00table\x00 (id, sid, data, \x00expires\x00) VALUES ($1::VARCHAR, $2::VARCHAR, $3::VARCHAR, $4::TIMESTAMP WITHOUT TIME ZONE)', ('record_id', 'session_id', 'payload', 'expires'), {}),
    'live_count': ('SELECT count(*) AS count_1 \nFROM \x00table\x00 \nWHERE \x00table\x00.\x00expires\x00 > $1::TIMESTAMP WITHOUT TIME ZONE', ('now',), {}),
    'live_ids': ('SELECT \x00table\x00.sid \nFROM \x00table\x00 \nWHERE \x00table\x00.\x00expires\x00 > $1::TIMESTAMP WITHOUT TIME ZONE', ('now',), {}),
    'live_rows': ('SELECT \x00table\x00.sid, \x00table\x00.data \nFROM \x00table\x00 \nWHERE \x00table\x00.\x00expires\x00 > $1::TIMESTAMP WITHOUT TIME ZONE', ('now',), {}),
    'load': ('SELECT \x00table\x00.data, CASE WHEN (isfinite(\x00table\x00.\x00expires\x00) AND EXTRACT(year FROM \x00table\x00.\x00expires\x00) NOT BETWEEN 1 AND 9999) THEN NULL ELSE \x00table\x00.\x00expires\x00 END AS "expiresAt" \nFROM \x00table\x00 \nWHERE \x00table\x00.sid = $1::VARCHAR', ('session_id',), {}),
    'load_many': ('SELECT \x00table\x00.sid, \x00table\x00.data, CASE WHEN (isfinite(\x00table\x00.\x00expires\x00) AND EXTRACT(year FROM \x00table\x00.\x00expires\x00) NOT BETWEEN 1 AND 9999) THEN NULL ELSE \x00table\x00.\x00expires\x00 END AS "expiresAt" \nFROM \x00table\x00 \nWHERE \x00table\x00.sid = ANY ($1::TEXT[])', ('sids',), {}),
    'locked_rows_by_ids': ('SELECT \x00table\x00.sid, \x00table\x00.data, CASE WHEN (isfinite(\x00table\x00.\x00expires\x00) AND EXTRACT(year FROM \x00table\x00.\x00expires\x00) NOT BETWEEN 1 AND 9999) THEN NULL ELSE \x00table\x00.\x00expires\x00 END AS "expiresAt", \x00table\x00.id \nFROM \x00table\x00 \nWHERE \x00table\x00.id = ANY ($1::TEXT[]) FOR UPDATE', ('ids',), {}),
    'prune_batch': ('DELETE FROM \x00table\x00 WHERE \x00table\x00.id = ANY (array((SELECT \x00table\x00.id \nFROM \x00table\x00 \nWHERE \x00table\x00.\x00expires\x00 <= $1::TIMESTAMP WITHOUT TIME ZONE \n LIMIT $2::INTEGER FOR UPDATE SKIP LOCKED)))', ('now', 'batch_size'), {}),
    'prune_batch_returning': ('DELETE FROM \x00table\x00 WHERE \x00table\x00.id = ANY (array((SELECT \x00table\x00.id \nFROM \x00table\x00 \nWHERE \x00table\x00.\x00expires\x00 <= $1::TIMESTAMP WITHOUT TIME ZONE \n LIMIT $2::INTEGER FOR UPDATE SKIP LOCKED))) RETURNING \x00table\x00.sid, \x00table\x00.data', ('now', 'batch_size'), {}),
    'prune_lock': ('SELECT pg_try_advisory_xact_lock($1::BIGINT) AS pg_try_advisory_xact_lock_1', ('key',), {}),
    'rename': ('UPDATE \x00table\x00 SET id=coalesce($1::VARCHAR, \x00table\x00.id), sid=$2::VARCHAR WHERE \x00table\x00.sid = $3::VARCHAR AND \x00table\x00.\x00expires\x00 > $4::TIMESTAMP WITHOUT TIME ZONE', ('record_id', 'new_sid', 'session_id', 'now'), {}),
    'rows_with_keys_like': ('SELECT \x00table\x00.sid, \x00table\x00.data, CASE WHEN (isfinite(\x00table\x00.\x00expires\x00) AND EXTRACT(year FROM \x00table\x00.\x00expires\x00) NOT BETWEEN 1 AND 9999) THEN NULL ELSE \x00table\x00.\x00expires\x00 END AS "expiresAt", \x00table\x00.id \nFROM \x00table\x00 \nWHERE \x00table\x00.data LIKE $1::VARCHAR ESCAPE \'\\\'', ('pattern',), {}),
    'touch': ('UPDATE \x00table\x00 SET \x00expires\x00=$1::TIMESTAMP WITHOUT TIME ZONE WHERE \x00table\x00.sid = $2::VARCHAR', ('expires', 'session_id'), {}),
    'update': ('UPDATE \x00table\x00 SET data=$1::VARCHAR, \x00expires\x00=$2::TIMESTAMP WITHOUT TIME ZONE WHERE \x00table\x00.sid = $3::VARCHAR', ('payload', 'expires', 'session_id'), {}),
    'update_if_unchanged': ('UPDATE \x00table\x00 SET data=$1::VARCHAR, \x00expires\x00=$2::TIMESTAMP WITHOUT TIME ZONE WHERE \x00table\x00.sid = $3::VARCHAR AND \x00table\x00.data = $4::VARCHAR', ('payload', 'expires', 'session_id', 'expected'), {}),
    'upsert': ('INSERT INTO \x00table\x00 (id, sid, data, \x00expires\x00) VALUES ($1::VARCHAR, $2::VARCHAR, $3::VARCHAR, $4::TIMESTAMP WITHOUT TIME ZONE) ON CONFLICT (sid) DO UPDATE SET data = excluded.data, \x00expires\x00 = excluded.\x00expires\x00', ('record_id', 'session_id', 'payload', 'expires'), {}),
}
TRAITS: dict[str, Any] = {
    'name': 'postgresql',
    'longest_key': None,
    'longest_data': None,
    'deletes_returning': True,
    'scans_miss_moved_keys': False,
    'sid_clash_error': None,
    'sids_as_array': True,
    'own_activity_per_batch': 1,
    'ping_activity': 1,
    'user_key_exact': True,
    'expected_digest': False,
}
