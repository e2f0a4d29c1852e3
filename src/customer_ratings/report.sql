-- The aggregate report for a date: per configured agency, the numbers of its load current as of that date
-- (its latest loaded or unchanged file with as-of date <= the report date), read from the history, where each
-- load's numbers were committed with its rows. No scan of the data: a report for any past date is the same
-- whenever it is written. Parameters: %(day)s, %(sources)s (the configured agencies).
WITH current_as_of AS (
    SELECT DISTINCT ON (h.source) h.source, h.data_load_id, h.as_of_date
    FROM load_history h
    WHERE h.source = ANY(%(sources)s)
      AND h.status IN ('loaded', 'unchanged')
      AND h.as_of_date <= %(day)s
    ORDER BY h.source, h.as_of_date DESC, h.load_id DESC
)
SELECT c.source                                   AS customer,
       d.rows_loaded                              AS count_customer_number,
       d.sum_customer_rating                      AS sum_customer_rating,
       d.high_value_count                         AS high_value_count,
       d.rows_invalid                             AS invalid_customer_number_count,
       CASE WHEN d.rows_loaded + d.rows_invalid = 0 THEN 0.00
            -- numeric round() rounds half away from zero, as the report requires
            ELSE round(100.0 * d.rows_invalid / (d.rows_loaded + d.rows_invalid), 2)
       END::numeric(5, 2)                         AS invalid_customer_number_percent,
       c.as_of_date                               AS as_of_date,
       d.load_id                                  AS load_id
FROM current_as_of c
JOIN load_history d ON d.load_id = c.data_load_id
ORDER BY c.source COLLATE "C";
