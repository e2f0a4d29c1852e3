-- What happened to each configured agency on the report's day itself: its last history row with that as-of
-- date (loaded, unchanged, rejected, failed or missing), for the notes that go with a report.
SELECT DISTINCT ON (h.source) h.source, h.status, h.error_code, h.error
FROM load_history h
WHERE h.source = ANY(%(sources)s) AND h.as_of_date = %(day)s
ORDER BY h.source, h.load_id DESC;
