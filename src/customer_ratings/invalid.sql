-- `customer-ratings invalid` and the reconciliation files: the invalid rows of the given loads, ordered by
-- source and line number. Parameters: %(loads)s (load ids), %(limit)s (NULL: all).
SELECT r.source        AS source,
       r.load_id       AS load_id,
       r.file_uri      AS file,
       r.line_number   AS line_number,
       r.record_number AS record_number,
       r.error         AS error,
       r.errors        AS errors,
       r.raw_line      AS raw_line
FROM file_invalid_rows r
WHERE r.load_id = ANY(%(loads)s)
ORDER BY r.source COLLATE "C", r.load_id, r.line_number
LIMIT %(limit)s;
