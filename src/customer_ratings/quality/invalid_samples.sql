-- The first invalid rows (by line number) of each of the given loads, with the load's count of invalid rows.
-- Parameters: %(loads)s, %(limit)s.
SELECT s.load_id, s.line_number, s.error, s.raw_line, s.total
FROM (SELECT i.load_id, i.line_number, i.error, i.raw_line,
             row_number() OVER (PARTITION BY i.load_id ORDER BY i.line_number, i.record_number) AS rn,
             count(*) OVER (PARTITION BY i.load_id) AS total
      FROM file_invalid_rows i
      WHERE i.load_id = ANY(%(loads)s)) s
WHERE s.rn <= %(limit)s
ORDER BY s.load_id, s.line_number;
