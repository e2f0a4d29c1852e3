-- `customer-ratings history`: load history rows, newest first. Parameters: %(source)s (NULL: every agency),
-- %(limit)s.
SELECT h.load_id                                                        AS load_id,
       h.source                                                         AS source,
       h.as_of_date                                                     AS as_of_date,
       h.status                                                         AS status,
       h.file_uri                                                       AS file,
       h.rows_read                                                      AS rows_read,
       h.rows_loaded                                                    AS rows_loaded,
       h.rows_invalid                                                   AS rows_invalid,
       h.error_code                                                     AS error_code,
       h.error                                                          AS error,
       h.started_at                                                     AS started_at,
       h.finished_at                                                    AS finished_at,
       round(extract(epoch FROM h.finished_at - h.started_at), 3)::float8 AS seconds
FROM load_history h
WHERE %(source)s::text IS NULL OR h.source = %(source)s
ORDER BY h.load_id DESC
LIMIT %(limit)s;
