-- `customer-ratings status`: per configured agency, its load current as of a date (its latest loaded or
-- unchanged file with as-of date <= the date, as the report reads it) and whether that is stale: no loaded or
-- unchanged file for the date itself (its file for the day was rejected, missing, failed or not seen yet).
-- Parameters: %(day)s, %(sources)s (the configured agencies, in the config's order).
WITH current_as_of AS (
    SELECT DISTINCT ON (h.source) h.source, h.data_load_id, h.as_of_date
    FROM load_history h
    WHERE h.source = ANY(%(sources)s)
      AND h.status IN ('loaded', 'unchanged')
      AND h.as_of_date <= %(day)s
    ORDER BY h.source, h.as_of_date DESC, h.load_id DESC
), that_day AS (
    SELECT DISTINCT ON (h.source) h.source, h.status, h.error_code
    FROM load_history h
    WHERE h.source = ANY(%(sources)s) AND h.as_of_date = %(day)s
    ORDER BY h.source, h.load_id DESC
)
SELECT s.source                                            AS source,
       d.load_id                                           AS load_id,
       d.file_uri                                          AS file,
       c.as_of_date                                        AS as_of_date,
       d.finished_at                                       AS finished_at,
       d.rows_loaded                                       AS rows_loaded,
       d.rows_invalid                                      AS rows_invalid,
       CASE WHEN d.load_id IS NULL THEN NULL
            WHEN d.rows_loaded + d.rows_invalid = 0 THEN 0.00
            ELSE round(100.0 * d.rows_invalid / (d.rows_loaded + d.rows_invalid), 2)
       END::numeric(5, 2)                                  AS invalid_percent,
       c.as_of_date IS DISTINCT FROM %(day)s::date         AS stale,
       CASE WHEN c.as_of_date = %(day)s::date THEN NULL
            WHEN t.status IS NULL THEN 'no load for ' || %(day)s::date
            WHEN t.status = 'rejected' THEN 'file for ' || %(day)s::date || ' rejected (' || t.error_code || ')'
            WHEN t.status = 'missing' THEN 'no file for ' || %(day)s::date
            ELSE 'load for ' || %(day)s::date || ' ' || t.status
       END                                                 AS stale_reason
FROM unnest(%(sources)s::text[]) WITH ORDINALITY AS s(source, position)
LEFT JOIN current_as_of c ON c.source = s.source
LEFT JOIN load_history d ON d.load_id = c.data_load_id
LEFT JOIN that_day t ON t.source = s.source
ORDER BY s.position;
