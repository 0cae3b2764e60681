-- server-version: the server's version number (e.g. 150004 for 15.4), checked at start.
-- reply: one row, v (text)
SELECT current_setting('server_version_num') AS v
