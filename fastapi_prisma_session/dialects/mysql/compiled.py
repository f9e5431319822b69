"""mysql's statements as SQLAlchemy compiles them from sql.py, for sqltext.py.

Written by `python -m fastapi_prisma_session.dialects.generate` (edit sql.py, then run it); the tests write
it again and compare.
"""

from typing import Any

from ...rows import DataLimit


STATEMENTS: dict[str, tuple[str, tuple[str, ...], dict[str, Any]]] = {
    'activity': ("SHOW GLOBAL STATUS WHERE Variable_name IN ('Com_select', 'Com_insert', 'Com_update', 'Com_delete', 'Com_replace', 'Com_insert_select', 'Com_update_multi', 'Com_delete_multi', 'Com_replace_select')", (), {}),
    'all_rows': ('SELECT \x00table\x00.sid, \x00table\x00.data, \x00table\x00.\x00expires\x00, \x00table\x00.id \nFROM \x00table\x00', (), {}),
    'clear': ('DELETE FROM \x00table\x00', (), {}),
    'clear_returning': ('SELECT \x00table\x00.sid, \x00table\x00.data, \x00table\x00.id \nFROM \x00table\x00 FOR UPDATE', (), {}),
    'delete': ('DELETE FROM \x00table\x00 WHERE \x00table\x00.sid IN (__[POSTCOMPILE_sids]) AND CAST(\x00table\x00.sid AS BINARY) IN (__[POSTCOMPILE_sids])', ('sids', 'sids'), {'lists': ('sids',)}),
    'delete_ids': ('DELETE FROM \x00table\x00 WHERE \x00table\x00.id IN (__[POSTCOMPILE_ids])', ('ids',), {'lists': ('ids',)}),
    'delete_returning': ('SELECT \x00table\x00.sid, \x00table\x00.data, \x00table\x00.id \nFROM \x00table\x00 \nWHERE \x00table\x00.sid IN (__[POSTCOMPILE_sids]) AND CAST(\x00table\x00.sid AS BINARY) IN (__[POSTCOMPILE_sids]) FOR UPDATE', ('sids', 'sids'), {'lists': ('sids',)}),
    'insert': ('INSERT INTO \x00table\x00 (id, sid, data, \x00expires\x00) VALUES (%s, %s, %s, %s)', ('record_id', 'session_id', 'payload', 'expires'), {}),
    'live_count': ('SELECT count(*) AS count_1 \nFROM \x00table\x00 \nWHERE \x00table\x00.\x00expires\x00 > %s', ('now',), {}),
    'live_ids': ('SELECT \x00table\x00.sid \nFROM \x00table\x00 \nWHERE \x00table\x00.\x00expires\x00 > %s', ('now',), {}),
    'live_rows': ('SELECT \x00table\x00.sid, \x00table\x00.data \nFROM \x00table\x00 \nWHERE \x00table\x00.\x00expires\x00 > %s', ('now',), {}),
    'load': ('SELECT \x00table\x00.data, \x00table\x00.\x00expires\x00 \nFROM \x00table\x00 \nWHERE \x00table\x00.sid = %s AND CAST(\x00table\x00.sid AS BINARY) = %s', ('session_id', 'session_id'), {}),
    'load_many': ('SELECT \x00table\x00.sid, \x00table\x00.data, \x00table\x00.\x00expires\x00 \nFROM \x00table\x00 \nWHERE \x00table\x00.sid IN (__[POSTCOMPILE_sids]) AND CAST(\x00table\x00.sid AS BINARY) IN (__[POSTCOMPILE_sids])', ('sids', 'sids'), {'lists': ('sids',)}),
    'locked_rows_by_ids': ('SELECT \x00table\x00.sid, \x00table\x00.data, \x00table\x00.\x00expires\x00, \x00table\x00.id \nFROM \x00table\x00 \nWHERE \x00table\x00.id IN (__[POSTCOMPILE_ids]) FOR UPDATE', ('ids',), {'lists': ('ids',)}),
    'prune_batch': ('DELETE FROM \x00table\x00 WHERE \x00table\x00.\x00expires\x00 <= %s ORDER BY \x00table\x00.\x00expires\x00 LIMIT %s', ('now', 'batch_size'), {}),
    'prune_batch_returning': ('SELECT \x00table\x00.sid, \x00table\x00.data, \x00table\x00.id \nFROM \x00table\x00 \nWHERE \x00table\x00.\x00expires\x00 <= %s ORDER BY \x00table\x00.\x00expires\x00 \n LIMIT %s FOR UPDATE', ('now', 'batch_size'), {}),
    'prune_lock': ('SELECT get_lock(concat(%s, sha1(concat_ws(%s, database(), %s))), %s) AS get_lock_1', ('concat_1', 'concat_ws_1', 'key', 'get_lock_2'), {'fixed': {'concat_1': 'fastapi_prisma_session:', 'concat_ws_1': '.', 'get_lock_2': 0}}),
    'prune_unlock': ('SELECT release_lock(concat(%s, sha1(concat_ws(%s, database(), %s)))) AS release_lock_1', ('concat_1', 'concat_ws_1', 'key'), {'fixed': {'concat_1': 'fastapi_prisma_session:', 'concat_ws_1': '.'}}),
    'rename': ('UPDATE \x00table\x00 SET id=coalesce(%s, \x00table\x00.id), sid=%s WHERE \x00table\x00.sid = %s AND CAST(\x00table\x00.sid AS BINARY) = %s AND \x00table\x00.\x00expires\x00 > %s', ('record_id', 'new_sid', 'session_id', 'session_id', 'now'), {}),
    'rows_with_keys_like': ("SELECT \x00table\x00.sid, \x00table\x00.data, \x00table\x00.\x00expires\x00, \x00table\x00.id \nFROM \x00table\x00 \nWHERE \x00table\x00.data LIKE %s ESCAPE '\\\\'", ('pattern',), {}),
    'touch': ('UPDATE \x00table\x00 SET \x00expires\x00=%s WHERE \x00table\x00.sid = %s AND CAST(\x00table\x00.sid AS BINARY) = %s', ('expires', 'session_id', 'session_id'), {}),
    'update': ('UPDATE \x00table\x00 SET data=%s, \x00expires\x00=%s WHERE \x00table\x00.sid = %s AND CAST(\x00table\x00.sid AS BINARY) = %s', ('payload', 'expires', 'session_id', 'session_id'), {}),
    'update_if_unchanged': ('UPDATE \x00table\x00 SET data=%s, \x00expires\x00=%s WHERE \x00table\x00.sid = %s AND CAST(\x00table\x00.sid AS BINARY) = %s AND sha2(CAST(\x00table\x00.data AS CHAR CHARACTER SET utf8mb4), 256) = %s', ('payload', 'expires', 'session_id', 'session_id', 'expected'), {}),
    'upsert': ('INSERT INTO \x00table\x00 (id, sid, data, \x00expires\x00) VALUES (%s, %s, %s, %s) ON DUPLICATE KEY UPDATE data = if(CAST(\x00table\x00.sid AS BINARY) = VALUES(sid), VALUES(data), (SELECT 1 UNION ALL SELECT 2)), \x00expires\x00 = VALUES(\x00expires\x00)', ('record_id', 'session_id', 'payload', 'expires'), {}),
}
TRAITS: dict[str, Any] = {
    'name': 'mysql',
    'longest_key': 191,
    'longest_data': DataLimit(most=16711680, escaped='\\\'"\x00\n\r\x1a'),
    'deletes_returning': False,
    'scans_miss_moved_keys': True,
    'sid_clash_error': 1242,
    'sids_as_array': False,
    'own_activity_per_batch': 3,
    'ping_activity': 0,
    'user_key_exact': False,
    'expected_digest': True,
}
