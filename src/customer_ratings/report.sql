-- The aggregate report: one row per agency with a loaded file, from its current load only.
-- Reads the consolidated table (never the agency tables) in one statement, so one snapshot.
WITH loaded AS (
    SELECT customer,
           count(*)                                                  AS n,
           sum(customer_rating)                                      AS rating_sum,
           count(*) FILTER (WHERE customer_status = 'high-value')    AS high_value
    FROM customer_rating
    GROUP BY customer
), invalid AS (
    -- The load's own count, committed with its rows of file_invalid_rows (and equal to their number): read
    -- from the history so that the report does not scan every invalid row ever kept.
    SELECT h.load_id, h.rows_invalid AS n
    FROM load_history h
    JOIN source_current c ON c.load_id = h.load_id
)
SELECT c.source                                   AS customer,
       coalesce(l.n, 0)                           AS count_customer_number,
       coalesce(l.rating_sum, 0)                  AS sum_customer_rating,
       coalesce(l.high_value, 0)                  AS high_value_count,
       coalesce(i.n, 0)                           AS invalid_customer_number_count,
       CASE WHEN coalesce(l.n, 0) + coalesce(i.n, 0) = 0 THEN 0.00
            -- numeric round() rounds half away from zero, as the report requires
            ELSE round(100.0 * coalesce(i.n, 0) / (coalesce(l.n, 0) + coalesce(i.n, 0)), 2)
       END::numeric(5, 2)                         AS invalid_customer_number_percent
FROM source_current c
LEFT JOIN loaded  l ON l.customer = c.source
LEFT JOIN invalid i ON i.load_id = c.load_id
ORDER BY c.source COLLATE "C";
