CREATE INDEX users_email_domain ON users (email_domain);
