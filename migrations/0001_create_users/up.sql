CREATE TABLE users (
    id BIGINT PRIMARY KEY,
    email TEXT NOT NULL
);

-- Seed 5,000 users so the backfill in 0003 has batches to walk.
WITH RECURSIVE seq(n) AS (
    SELECT 1
    UNION ALL
    SELECT n + 1 FROM seq WHERE n < 5000
)
INSERT INTO users (id, email)
SELECT n, 'user' || n || '@' || CASE n % 3 WHEN 0 THEN 'Example.COM' WHEN 1 THEN 'mail.test' ELSE 'Corp.Example' END
FROM seq;
