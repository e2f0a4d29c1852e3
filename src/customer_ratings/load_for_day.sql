-- The load whose rows are current as of a date for each of some agencies (the report's choice: the latest
-- loaded or unchanged file with as-of date <= the date; an unchanged file stands for the load it repeats).
-- Parameters: %(day)s, %(sources)s.
SELECT DISTINCT ON (h.source) h.source, h.data_load_id
FROM load_history h
WHERE h.source = ANY(%(sources)s)
  AND h.status IN ('loaded', 'unchanged')
  AND h.as_of_date <= %(day)s
ORDER BY h.source, h.as_of_date DESC, h.load_id DESC;
