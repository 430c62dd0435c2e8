"""The Alembic-style peer for benches/backfill.rs: the best plain-Python data migration.

Fetches a batch of users by key, lower-cases the emails in Python, writes them back with one
`UPDATE ... FROM (VALUES ...)` through psycopg2's execute_values, and commits, batch after
batch. Prints the seconds the loop took.

    python alembic_backfill.py URL BATCH
"""

import sys
import time

import psycopg2
from psycopg2.extras import execute_values


def main() -> None:
    url, batch = sys.argv[1], int(sys.argv[2])
    connection = psycopg2.connect(url)
    cursor = connection.cursor()
    started = time.perf_counter()
    after = -(2**63)
    while True:
        cursor.execute("SELECT id, email FROM users WHERE id > %s ORDER BY id LIMIT %s", (after, batch))
        rows = cursor.fetchall()
        if not rows:
            connection.commit()
            break
        execute_values(
            cursor,
            "UPDATE users SET email_lower = v.email_lower FROM (VALUES %s) AS v(id, email_lower) "
            "WHERE users.id = v.id",
            [(row_id, email.lower()) for row_id, email in rows],
            page_size=batch,
        )
        connection.commit()
        after = rows[-1][0]
        if len(rows) < batch:
            break
    print(f"{time.perf_counter() - started:.6f}")


if __name__ == "__main__":
    main()
