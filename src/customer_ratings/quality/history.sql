-- The quality page's history: every load_history row of the configured agencies with an as-of date in the
-- page's window, oldest first (the page takes each day's last row as that day's status, and the day's last
-- loaded or unchanged row for its numbers). Parameters: %(sources)s, %(start)s, %(day)s.
SELECT h.source, h.as_of_date, h.load_id, h.status, h.error_code, h.error, h.data_load_id,
       h.rows_read, h.rows_loaded, h.rows_invalid, h.file_uri
FROM load_history h
WHERE h.source = ANY(%(sources)s) AND h.as_of_date BETWEEN %(start)s AND %(day)s
ORDER BY h.source, h.as_of_date, h.load_id;
