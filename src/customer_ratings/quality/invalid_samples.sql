-- The first invalid rows (by line number) of each of the given loads, with the load's count of invalid rows.
-- Parameters: %(loads)s, %(limit)s, %(shown)s (characters of a raw line shown: the page stays small and a
-- 100 MB line never reaches the client whole; the reconciliation file has the whole line).
SELECT s.load_id, s.line_number, s.error,
       CASE WHEN length(s.raw_line) > %(shown)s THEN left(s.raw_line, %(shown)s) || '…' ELSE s.raw_line END,
       s.total
FROM (SELECT i.load_id, i.line_number, i.error, i.raw_line,
             row_number() OVER (PARTITION BY i.load_id ORDER BY i.line_number, i.record_number) AS rn,
             count(*) OVER (PARTITION BY i.load_id) AS total
      FROM file_invalid_rows i
      WHERE i.load_id = ANY(%(loads)s)) s
WHERE s.rn <= %(limit)s
ORDER BY s.load_id, s.line_number;
