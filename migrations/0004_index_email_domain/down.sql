DROP INDEX users_email_domain;
