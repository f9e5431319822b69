"""sqlite's statements as SQLAlchemy compiles them from sql.py, for sqltext.py.

Written by `python -m fastapi_prisma_session.dialects.generate` (edit sql.py, then run it); the tests write
it again and compare.
"""

from typing import Any


STATEMENTS: dict[str, tuple[str, tuple[str, ...], dict[str, Any]]] = {
    'all_rows': ('SELECT \x00table\x00.sid, \x00table\x00.data, \x00table\x00.\x00expires\x00, \x00table\x00.id \nFROM \x00table\x00', (), {'results': (None, None, 'sqlite_datetime', None)}),
    'clear': ('DELETE FROM \x00table\x00', (), {}),
    'clear_returning': ('DELETE FROM \x00table\x00 RETURNING sid, data', (), {}),
    'delete': ('DELETE FROM \x00table\x00 WHERE \x00table\x00.sid IN (__[POSTCOMPILE_sids])', ('sids',), {'lists': ('sids',)}),
    'delete_ids': ('DELETE FROM \x00table\x00 WHERE \x00table\x00.id IN (__[POSTCOMPILE_ids])', ('ids',), {'lists': ('ids',)}),
    'delete_returning': ('DELETE FROM \x00table\x00 WHERE \x00table\x00.sid IN (__[POSTCOMPILE_sids]) RETURNING sid, data', ('sids',), {'lists': ('sids',)}),
    'insert': ('INSERT INTO \x00table\x00 (id, sid, data, \x00expires\x00) VALUES (?, ?, ?, ?)', ('record_id', 'session_id', 'payload', 'expires'), {'binds': {'expires': 'sqlite_datetime'}}),
    'live_count': ("SELECT count(*) AS count_1 \nFROM \x00table\x00 \nWHERE CASE WHEN (typeof(\x00table\x00.\x00expires\x00) IN ('integer', 'real')) THEN \x00table\x00.\x00expires\x00 ELSE round((julianday(\x00table\x00.\x00expires\x00) - 2440587.5) * 86400000) END > round((julianday(?) - 2440587.5) * 86400000)", ('now',), {'binds': {'now': 'sqlite_datetime'}}),
    'live_ids': ("SELECT \x00table\x00.sid \nFROM \x00table\x00 \nWHERE CASE WHEN (typeof(\x00table\x00.\x00expires\x00) IN ('integer', 'real')) THEN \x00table\x00.\x00expires\x00 ELSE round((julianday(\x00table\x00.\x00expires\x00) - 2440587.5) * 86400000) END > round((julianday(?) - 2440587.5) * 86400000)", ('now',), {'binds': {'now': 'sqlite_datetime'}}),
    'live_rows': ("SELECT \x00table\x00.sid, \x00table\x00.data \nFROM \x00table\x00 \nWHERE CASE WHEN (typeof(\x00table\x00.\x00expires\x00) IN ('integer', 'real')) THEN \x00table\x00.\x00expires\x00 ELSE round((julianday(\x00table\x00.\x00expires\x00) - 2440587.5) * 86400000) END > round((julianday(?) - 2440587.5) * 86400000)", ('now',), {'binds': {'now': 'sqlite_datetime'}}),
    'load': ('SELECT \x00table\x00.data, \x00table\x00.\x00expires\x00 \nFROM \x00table\x00 \nWHERE \x00table\x00.sid = ?', ('session_id',), {'results': (None, 'sqlite_datetime')}),
    'load_many': ('SELECT \x00table\x00.sid, \x00table\x00.data, \x00table\x00.\x00expires\x00 \nFROM \x00table\x00 \nWHERE \x00table\x00.sid IN (__[POSTCOMPILE_sids])', ('sids',), {'results': (None, None, 'sqlite_datetime'), 'lists': ('sids',)}),
    'locked_rows_by_ids': ('SELECT \x00table\x00.sid, \x00table\x00.data, \x00table\x00.\x00expires\x00, \x00table\x00.id \nFROM \x00table\x00 \nWHERE \x00table\x00.id IN (__[POSTCOMPILE_ids])', ('ids',), {'results': (None, None, 'sqlite_datetime', None), 'lists': ('ids',)}),
    'prune_batch': ("DELETE FROM \x00table\x00 WHERE \x00table\x00.id IN (SELECT \x00table\x00.id \nFROM \x00table\x00 \nWHERE (\x00table\x00.\x00expires\x00 <= round((julianday(?) - 2440587.5) * 86400000) OR \x00table\x00.\x00expires\x00 >= '' AND \x00table\x00.\x00expires\x00 < date(?, '+1 day')) AND CASE WHEN (typeof(\x00table\x00.\x00expires\x00) IN ('integer', 'real')) THEN \x00table\x00.\x00expires\x00 ELSE round((julianday(\x00table\x00.\x00expires\x00) - 2440587.5) * 86400000) END <= round((julianday(?) - 2440587.5) * 86400000)\n LIMIT ? OFFSET ?) AND CASE WHEN (typeof(\x00table\x00.\x00expires\x00) IN ('integer', 'real')) THEN \x00table\x00.\x00expires\x00 ELSE round((julianday(\x00table\x00.\x00expires\x00) - 2440587.5) * 86400000) END <= round((julianday(?) - 2440587.5) * 86400000)", ('now', 'now', 'now', 'batch_size', 'param_1', 'now'), {'fixed': {'param_1': 0}, 'binds': {'now': 'sqlite_datetime'}}),
    'prune_batch_returning': ("DELETE FROM \x00table\x00 WHERE \x00table\x00.id IN (SELECT \x00table\x00.id \nFROM \x00table\x00 \nWHERE (\x00table\x00.\x00expires\x00 <= round((julianday(?) - 2440587.5) * 86400000) OR \x00table\x00.\x00expires\x00 >= '' AND \x00table\x00.\x00expires\x00 < date(?, '+1 day')) AND CASE WHEN (typeof(\x00table\x00.\x00expires\x00) IN ('integer', 'real')) THEN \x00table\x00.\x00expires\x00 ELSE round((julianday(\x00table\x00.\x00expires\x00) - 2440587.5) * 86400000) END <= round((julianday(?) - 2440587.5) * 86400000)\n LIMIT ? OFFSET ?) AND CASE WHEN (typeof(\x00table\x00.\x00expires\x00) IN ('integer', 'real')) THEN \x00table\x00.\x00expires\x00 ELSE round((julianday(\x00table\x00.\x00expires\x00) - 2440587.5) * 86400000) END <= round((julianday(?) - 2440587.5) * 86400000) RETURNING sid, data", ('now', 'now', 'now', 'batch_size', 'param_1', 'now'), {'fixed': {'param_1': 0}, 'binds': {'now': 'sqlite_datetime'}}),
    'rename': ("UPDATE \x00table\x00 SET id=coalesce(?, \x00table\x00.id), sid=? WHERE \x00table\x00.sid = ? AND CASE WHEN (typeof(\x00table\x00.\x00expires\x00) IN ('integer', 'real')) THEN \x00table\x00.\x00expires\x00 ELSE round((julianday(\x00table\x00.\x00expires\x00) - 2440587.5) * 86400000) END > round((julianday(?) - 2440587.5) * 86400000)", ('record_id', 'new_sid', 'session_id', 'now'), {'binds': {'now': 'sqlite_datetime'}}),
    'rows_with_keys_like': ("SELECT \x00table\x00.sid, \x00table\x00.data, \x00table\x00.\x00expires\x00, \x00table\x00.id \nFROM \x00table\x00 \nWHERE \x00table\x00.data LIKE ? ESCAPE '\\'", ('pattern',), {'results': (None, None, 'sqlite_datetime', None)}),
    'touch': ('UPDATE \x00table\x00 SET \x00expires\x00=? WHERE \x00table\x00.sid = ?', ('expires', 'session_id'), {'binds': {'expires': 'sqlite_datetime'}}),
    'update': ('UPDATE \x00table\x00 SET data=?, \x00expires\x00=? WHERE \x00table\x00.sid = ?', ('payload', 'expires', 'session_id'), {'binds': {'expires': 'sqlite_datetime'}}),
    'update_if_unchanged': ('UPDATE \x00table\x00 SET data=?, \x00expires\x00=? WHERE \x00table\x00.sid = ? AND \x00table\x00.data = ?', ('payload', 'expires', 'session_id', 'expected'), {'binds': {'expires': 'sqlite_datetime'}}),
    'upsert': ('INSERT INTO \x00table\x00 (id, sid, data, \x00expires\x00) VALUES (?, ?, ?, ?) ON CONFLICT (sid) DO UPDATE SET data = excluded.data, \x00expires\x00 = excluded.\x00expires\x00', ('record_id', 'session_id', 'payload', 'expires'), {'binds': {'expires': 'sqlite_datetime'}}),
}
TRAITS: dict[str, Any] = {
    'name': 'sqlite',
    'longest_key': None,
    'longest_data': None,
    'deletes_returning': True,
    'scans_miss_moved_keys': False,
    'sid_clash_error': None,
    'sids_as_array': False,
    'own_activity_per_batch': 0,
    'ping_activity': 0,
    'user_key_exact': False,
    'expected_digest': False,
}
