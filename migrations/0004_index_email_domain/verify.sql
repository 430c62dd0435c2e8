-- Every user's domain is lower case after the backfill.
SELECT count(*) = 0 FROM users WHERE email_domain <> lower(email_domain) OR email_domain IS NULL;
