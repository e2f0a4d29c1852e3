-- Invalid rows of the given loads by error code and column: one count per failing column of a row (a row that
-- fails two columns counts under both). Parameters: %(loads)s (load ids).
SELECT i.load_id, e.item ->> 'code' AS code, coalesce(e.item ->> 'column', '') AS column_name, count(*) AS n
FROM file_invalid_rows i
CROSS JOIN LATERAL jsonb_array_elements(i.errors) AS e(item)
WHERE i.load_id = ANY(%(loads)s)
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3;
